/* Queue browsing over STOMP (ActiveMQ's SUBSCRIBE browser:true): the
 * subscription is sent its queue's pending messages, in the order a
 * consumer would get them, without taking them; then a MESSAGE with the
 * header browser:end and no body. Nothing it is sent is acknowledged; the
 * subscription stays (sending nothing more) until UNSUBSCRIBE.
 * Messages go page by page while the connection's output has room, so a
 * deep queue (paged out to the store) costs a page of memory at a time. */
#ifndef STOMPD_BROWSE_H
#define STOMPD_BROWSE_H

#include <stdbool.h>

struct conn;
struct selector;

/* Start browsing queue (a name) for subscription id of c; sel (taken
 * over, may be NULL) filters what is sent. */
void browse_start(struct conn *c, const char *id, const char *queue, struct selector *sel);
/* Is id one of c's browsing subscriptions? */
bool browse_has(const struct conn *c, const char *id);
/* A browse of c's still sending whose queue c's user may no longer read
 * (after a reload, access.c): its id, and its queue in *queue; or NULL. */
const char *browse_unreadable(const struct conn *c, const char **queue);
/* UNSUBSCRIBE: stop browsing for id; false when id is no browse of c. */
bool browse_stop(struct conn *c, const char *id);
/* c's output drained: its browses go on. */
void browse_wake(struct conn *c);
/* c closes: its browses end. */
void browse_conn_gone(struct conn *c);
/* The loop, before it sleeps: browses with room go on. True while some
 * could go on at once (the loop should not sleep). */
bool browse_run(void);
bool browse_waiting(void);

#endif
