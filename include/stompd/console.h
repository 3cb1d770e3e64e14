/* The console (DESIGN §9): pages, JSON API, metrics and actions on
 * http.listen, served through the HTTP transport of http.c. */
#ifndef STOMPD_CONSOLE_H
#define STOMPD_CONSOLE_H

#include <stddef.h>

int console_start(char *err, size_t errlen) __attribute__((warn_unused_result));
void console_stop(void);

#endif
