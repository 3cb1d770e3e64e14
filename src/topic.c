/* Topic fan-out: the one refcounted message goes to each subscription's
 * backlog, which delivers at once when the subscriber is ready. Selectors
 * the message's budget does not reach are run later, on the backlog. */
#include "config.h"

#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/sub.h"
#include "stompd/topic.h"

void topic_publish(struct dest *d, struct msg *m)
{
    /* One budget for every selector this message meets (see sub.h). */
    struct sub_pass pass;
    sub_pass_begin(&pass);
    struct sub *s, *next;
    for (s = TAILQ_FIRST(&d->subscribers); s; s = next) {
        next = TAILQ_NEXT(s, topic_link);
        sub_publish(s, m);
    }
    durable_publish(d, m);
    sub_pass_end(&pass);
}
