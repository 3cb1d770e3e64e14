/* Topics: publish one message to every current subscriber whose selector
 * accepts it, and to every durable subscription of the topic. */
#ifndef STOMPD_TOPIC_H
#define STOMPD_TOPIC_H

struct dest;
struct msg;

void topic_publish(struct dest *d, struct msg *m);

#endif
