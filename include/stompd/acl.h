/* Authorization: the ACL file (auth.acl). One entry a line,
 *     queue:PATTERN  read=G,G write=G admin=G
 *     topic:PATTERN  ...
 * PATTERN in ActiveMQ's wildcards (dname.h); for a destination the most
 * specific matching entry of its kind decides (the earlier line on a
 * tie), and a destination no entry covers is denied. A group "*" is every
 * authenticated user (not the anonymous one). read = SUBSCRIBE (a durable
 * subscription too, and removing or replacing one), write = SEND (STOMP and the console), admin =
 * creating a destination on first use, purging and deleting it. Without an
 * ACL file everything is allowed. Temporary destinations are outside the
 * ACL: they belong to their connection. The broker's own producers (no
 * principal) are never refused. The checks for what a frame names
 * (composites, wildcards, virtual topics) are route.c's (route_allowed). */
#ifndef STOMPD_ACL_H
#define STOMPD_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/principal.h"

struct config;

enum acl_kind { ACL_QUEUE, ACL_TOPIC };
enum acl_perm { ACL_READ, ACL_WRITE, ACL_ADMIN };

const char *acl_perm_name(enum acl_perm perm);

/* A parsed ACL file. Errors name file:line. */
struct acl;
int acl_load(const char *path, struct acl **out, char *err, size_t errlen) __attribute__((warn_unused_result));
void acl_free(struct acl *a);
size_t acl_entries(const struct acl *a);
/* The rule itself, against a given ACL (NULL: everything allowed). The
 * ACL remembers which entry decides for each name it was asked about. */
bool acl_check(struct acl *a, const struct principal *who, enum acl_kind kind, const char *name,
               enum acl_perm perm);

/* The running ACL: auth.acl of cfg (start, --check-config, SIGHUP; an
 * invalid file keeps the old one). */
int acl_check_config(const struct config *cfg, char *err, size_t errlen) __attribute__((warn_unused_result));
int acl_configure(const struct config *cfg, char *err, size_t errlen) __attribute__((warn_unused_result));
int acl_reload(const struct config *next, char *err, size_t errlen) __attribute__((warn_unused_result));
void acl_stop(void);
bool acl_active(void);

/* May who do perm on the destination kind:name (name without its
 * /queue/ or /topic/ prefix)? For a wildcard subscription, ask for each
 * destination it matches. */
bool acl_allows(const struct principal *who, enum acl_kind kind, const char *name, enum acl_perm perm);
/* The same for a full destination name (/queue/..., /topic/...);
 * temporary destinations are always allowed here (their owner rules
 * apply). A refusal is counted and logged at debug level. */
bool acl_allows_dest(const struct principal *who, const char *dest, enum acl_perm perm);
/* The ERROR for a refusal: message names the permission and the
 * destination, detail the user. */
void acl_explain(const struct principal *who, const char *dest, enum acl_perm perm, char *message, size_t mlen,
                 char *detail, size_t dlen);
/* Frames and console actions refused so far. */
uint64_t acl_denials(void);

#endif
