/* Recording stubs for the commit module's unit test (see stub_conn.c). */
#ifndef STUB_CONN_H
#define STUB_CONN_H

#include <stdint.h>

struct dest;

/* What happened, as "event;event;..." */
extern char transcript[4096];
extern int64_t stub_reserved;
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct dest *stub_dest(int i);

#endif
