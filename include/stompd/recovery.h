/* Rebuilding the broker's state from the store (DESIGN §4): at the start
 * of a standalone node, and on becoming master. */
#ifndef STOMPD_RECOVERY_H
#define STOMPD_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

/* Recreate destinations, durable subscriptions, queued messages and the
 * duplicate window from the store; *max_seq is the highest message seq
 * found. -EIO with err filled when the store cannot be read. */
int recovery_rebuild(uint64_t *max_seq, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
