/* Recording stubs for the commit module's unit test (see stub_conn.c). */
#ifndef STUB_CONN_H
#define STUB_CONN_H

#include <stdint.h>

struct dest;

extern int64_t stub_reserved;
struct dest *stub_dest(int i);

#endif
