/* Topics: publish one message to every current subscriber whose selector
 * accepts it, and to every durable subscription of the topic, including
 * those of every wildcard topic that matches it (route.h). */
#ifndef STOMPD_TOPIC_H
#define STOMPD_TOPIC_H

struct dest;
struct durable;
struct msg;

void topic_publish(struct dest *d, struct msg *m);
/* Every durable subscription a message published to topic d goes to
 * (its own and its wildcards', selectors applied): what the message's
 * journal entry names. */
void topic_foreach_durable(struct dest *d, const struct msg *m, void (*fn)(struct durable *du, void *arg), void *arg);

#endif
