/* stompd.conf(5), written from the configuration table so the manual page
 * cannot drift from the keys the broker takes (stompd --help-config=man). */
#ifndef STOMPD_CONFDOC_H
#define STOMPD_CONFDOC_H

#include <stdio.h>

void confdoc_print_man(FILE *out);

#endif
