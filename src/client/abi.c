/* libstompc's binary interface across versions: the structs a program
 * passes, taken at the size it was compiled with (see "ABI" in stompc.h),
 * the functions under their 0.1 names for programs built before the sized
 * calls, and the library's version.
 *
 * Copyright (c) 2026 the stompd authors. SPDX-License-Identifier: MIT */
#include "config.h"

#include <stddef.h>
#include <string.h>

#include "client.h"

#if STOMPC_VERSION_MAJOR != PACKAGE_VERSION_MAJOR || STOMPC_VERSION_MINOR != PACKAGE_VERSION_MINOR || \
    STOMPC_VERSION_PATCH != PACKAGE_VERSION_PATCH
#error "include/stompc.h's STOMPC_VERSION_* differ from the version in configure.ac: change them together"
#endif

const char *stompc_version(void)
{
    return STOMPC_VERSION;
}

int abi_in(void *mine, size_t mine_size, const void *given, size_t given_size)
{
    if (given_size > mine_size) {
        const unsigned char *extra = (const unsigned char *)given + mine_size;
        for (size_t i = 0; i < given_size - mine_size; i++)
            if (extra[i])
                return -1;
        given_size = mine_size;
    }
    memcpy(mine, given, given_size);
    memset((char *)mine + given_size, 0, mine_size - given_size);
    return 0;
}

void abi_out(void *given, size_t given_size, const void *mine, size_t mine_size)
{
    size_t n = given_size < mine_size ? given_size : mine_size;
    memcpy(given, mine, n);
    if (given_size > n)
        memset((char *)given + n, 0, given_size - n);
}

/* The sizes of the 0.1 structs. When a field is added to one, its entry
 * here becomes offsetof(struct ..., the new field). */
#define OPTIONS_0_1 offsetof(struct stompc_options, tls_ca_file)
#define SEND_OPTS_0_1 sizeof(struct stompc_send_opts)
#define SUB_OPTS_0_1 sizeof(struct stompc_sub_opts)
#define CALLBACKS_0_1 sizeof(struct stompc_callbacks)
#define STATS_0_1 sizeof(struct stompc_stats)

#undef stompc_connect
#undef stompc_send
#undef stompc_subscribe
#undef stompc_set_callbacks
#undef stompc_get_stats

int stompc_connect(struct stompc *c, const char *uri, const struct stompc_options *opts)
{
    return stompc_connect_sized(c, uri, opts, OPTIONS_0_1);
}

int stompc_send(struct stompc *c, const char *destination, const void *body, size_t len,
                const struct stompc_send_opts *opts)
{
    return stompc_send_sized(c, destination, body, len, opts, SEND_OPTS_0_1);
}

int stompc_subscribe(struct stompc *c, const char *destination, const struct stompc_sub_opts *opts)
{
    return stompc_subscribe_sized(c, destination, opts, SUB_OPTS_0_1);
}

int stompc_set_callbacks(struct stompc *c, const struct stompc_callbacks *cb, void *ud)
{
    return stompc_set_callbacks_sized(c, cb, ud, CALLBACKS_0_1);
}

int stompc_get_stats(const struct stompc *c, struct stompc_stats *out)
{
    return stompc_get_stats_sized(c, out, STATS_0_1);
}
