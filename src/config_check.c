/* Rules across configuration keys, checked before anything starts (at
 * start, by --check-config and for a reload): a value that would stop the
 * broker later, or quietly lose messages, is refused now with the message
 * the broker would have given. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "stompd/config.h"
#include "stompd/dname.h"
#include "stompd/quorum.h"

static int dlq_ok(const struct config *c, char *err, size_t errlen)
{
    const char *d = c->dlq;
    const char *name = strncmp(d, "/queue/", 7) == 0 ? d + 7 : NULL;
    const char *why = !name ? "is not a /queue/ destination (dead letters must go to a queue)"
                      : !*name ? "names no queue"
                      : strchr(name, ',') ? "is a list of destinations, not one queue"
                      : dname_is_pattern(name) ? "has a wildcard segment ('*' or '>')"
                      : strlen(d) > 1024 ? "is longer than 1024 bytes"
                      : NULL;
    if (!why)
        return 0;
    snprintf(err, errlen, "broker.dlq '%s' %s: every dead-lettered message would be lost", d, why);
    return -1;
}

/* zookeeper.address: host:port[,host:port...], as the ZooKeeper client
 * takes it (and an optional /chroot after the last); the client itself
 * would take a bad one as a retry for ever. */
static int zk_address_ok(const char *list, char *err, size_t errlen)
{
    char item[300];
    const char *p = list;
    size_t end = strcspn(list, "/");
    while ((size_t)(p - list) < end) {
        size_t n = strcspn(p, ",");
        if ((size_t)(p - list) + n > end)
            n = end - (size_t)(p - list);
        char host[256];
        int port;
        snprintf(item, sizeof item, "%.*s", (int)n, p);
        if (n >= sizeof item || config_split_hostport(item, host, sizeof host, &port) != 0 || !host[0] ||
            port == 0) {
            snprintf(err, errlen, "zookeeper.address: '%s' is not host:port (a comma list of them, each port "
                                  "1-65535)", item);
            return -1;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

int config_validate(const struct config *c, char *err, size_t errlen)
{
    if (dlq_ok(c, err, errlen) != 0)
        return -1;
    if (!c->stomp_listen[0]) {
        snprintf(err, errlen, "stomp.listen is empty: a master or standalone node needs its STOMP listener");
        return -1;
    }
    bool replicated = !strcmp(c->store_type, "replicated-leveldb");
    const char *sync = c->store_sync[0] ? c->store_sync : replicated ? "quorum_mem" : "local_disk";
    unsigned modes;
    char e2[256];
    if (quorum_parse_modes(sync, &modes, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "store.sync: %s", e2);
        return -1;
    }
    if (!replicated && (modes & ~(unsigned)(SYNC_LOCAL_MEM | SYNC_LOCAL_DISK))) {
        snprintf(err, errlen, "store.sync = %s needs store.type = replicated-leveldb (a standalone store has only "
                              "local_mem and local_disk)", sync);
        return -1;
    }
    if (c->zk_address[0] && zk_address_ok(c->zk_address, err, errlen) != 0)
        return -1;
    if (c->max_output_buffers < c->output_limit) {
        /* one busy consumer alone would go over, and be served one
         * message at a time (helper-116) */
        snprintf(err, errlen, "stomp.max_output_buffers (%lld bytes) is below stomp.output_limit (%lld bytes): the "
                              "output of all connections together must have room for one connection's",
                 (long long)c->max_output_buffers, (long long)c->output_limit);
        return -1;
    }
    if (!strcmp(c->store_type, "memory"))
        return 0;
    if (!replicated)
        return 0;
    if (!strcmp(c->store_role, "auto") && !c->zk_address[0]) {
        snprintf(err, errlen, "store.role = auto needs [zookeeper] address; without ZooKeeper set store.role "
                              "to master or slave");
        return -1;
    }
    if (!strcmp(c->store_role, "slave") && !c->store_master[0]) {
        snprintf(err, errlen, "store.role = slave needs store.master = host:port (the master's store.bind)");
        return -1;
    }
    return 0;
}
