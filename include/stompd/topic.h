/* Topics: publish one message to every current subscriber whose selector
 * accepts it, and to every durable subscription of the topic, including
 * those of every wildcard topic that matches it (route.h). */
#ifndef STOMPD_TOPIC_H
#define STOMPD_TOPIC_H

struct dest;
struct durable;
struct msg;

void topic_publish(struct dest *d, struct msg *m);
/* Every durable subscription of topic d and of every wildcard topic that
 * matches it (no selector applied: persist_enqueue judges them). */
void topic_foreach_durable(struct dest *d, void (*fn)(struct durable *du, void *arg), void *arg);

#endif
