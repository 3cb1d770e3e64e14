/* Dead letters: a message that failed too often (or expired, when
 * persistent) moves to the dead-letter queue with original-destination and
 * the reason, in one journal entry when it is persistent. */
#ifndef STOMPD_DLQ_H
#define STOMPD_DLQ_H

#include <stdbool.h>
#include <stddef.h>

struct dest;
struct qentry;

bool dlq_is_dlq(const struct dest *d);
/* Name of the DLQ for messages from d. */
void dlq_name_for(const struct dest *d, char *out, size_t len);
/* e is in no list; it is consumed. Returns true when the move was
 * journaled. */
bool dlq_move(struct qentry *e, const char *reason);

#endif
