/* After a reload of the users file or the ACL, open sessions are held to
 * the files as they are now, as new ones are (access.c). */
#ifndef STOMPD_ACCESS_H
#define STOMPD_ACCESS_H

/* Check every open STOMP connection against the users file and the ACL
 * now in force: a connection whose user is gone (or an anonymous one no
 * longer accepted) is closed with an ERROR saying so; the others take
 * their user's groups as the file has them now; a subscription whose
 * destination its user may no longer read closes its connection with an
 * ERROR naming it, and a wildcard queue subscription lets go of the
 * queues its user may no longer read (it would not have taken them at
 * SUBSCRIBE). A wildcard topic subscription needs nothing: each publish
 * is checked (topic.c). Durable subscriptions' stored readers take the
 * users file as it is now. */
void access_recheck(void);

#endif
