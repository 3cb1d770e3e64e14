/* The configuration table and its loaders. Every key lives in one table
 * with its type, default, bounds and help line; --help-config prints it,
 * stompd.conf(5) is generated from it, and conf/stompd.conf documents the
 * same keys. A SIGHUP loads a second copy to compare (config_load). */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "stompd/config.h"

struct config config;

enum cfg_type { CFG_STR, CFG_INT, CFG_SIZE, CFG_DURATION, CFG_BOOL, CFG_ADDR, CFG_CHOICE };

struct cfg_key {
    const char *name;
    enum cfg_type type;
    const char *def;
    int64_t min, max;      /* for numeric types */
    const char *choices;   /* for CFG_CHOICE: "a|b|c" */
    size_t offset;
    const char *help;
};

#define OFF(f) offsetof(struct config, f)

/* The state directory (Makefile.am passes $(localstatedir)/lib/stompd), so
 * a service started from / does not write /data; systemd's
 * StateDirectory= (the unit's /var/lib/stompd) wins when it is set. */
#ifndef STOMPD_DATA_DIR
#define STOMPD_DATA_DIR "/var/lib/stompd"
#endif
#define KB 1024LL
#define MB (1024LL * 1024)
#define GB (1024LL * 1024 * 1024)

static const struct cfg_key keys[] = {
    /* [broker] */
    {"broker.name", CFG_STR, "localhost", 0, 0, NULL, OFF(broker_name),
     "name of this broker (or cluster); nodes of one cluster share it"},
    {"broker.data_dir", CFG_STR, STOMPD_DATA_DIR, 0, 0, NULL, OFF(data_dir),
     "directory holding the LevelDB store (created if missing), relative to the working directory unless "
     "absolute; $STATE_DIRECTORY (systemd's StateDirectory=) replaces the default"},
    {"broker.memory_limit", CFG_SIZE, "1GiB", 1 * MB, INT64_MAX, NULL, OFF(memory_limit),
     "memory for messages across all destinations; producers are paused above it"},
    {"broker.dest_memory_limit", CFG_SIZE, "64MiB", 64 * KB, INT64_MAX, NULL, OFF(dest_memory_limit),
     "memory for messages per destination; producers to a full destination are paused"},
    {"broker.max_connections", CFG_INT, "10000", 1, 1000000, NULL, OFF(max_connections),
     "client connections accepted at once; further ones are refused with an ERROR"},
    {"broker.reserved_connections", CFG_INT, "16", 0, 1000000, NULL, OFF(reserved_connections),
     "slots of broker.max_connections (a quarter of them at most) kept for clients that log in: beyond the "
     "others, and at the limit, a connection that has not logged in yet is closed to make room, the oldest of "
     "the address with the most waiting, else the oldest"},
    {"broker.max_consumers", CFG_INT, "1000000", 1, 100000000, NULL, OFF(broker_max_consumers),
     "destinations all subscriptions take from in all, across connections (stomp.max_consumers counts them "
     "per connection)"},
    {"broker.max_destinations", CFG_INT, "10000", 0, 100000000, NULL, OFF(max_destinations),
     "destinations held at once; a SEND or SUBSCRIBE that would create one more gets ERROR; 0 = no limit"},
    {"broker.max_queue_depth", CFG_INT, "0", 0, INT64_MAX, NULL, OFF(max_queue_depth),
     "pending messages per queue above which its producers are paused; 0 = no limit (broker.store_limit bounds "
     "persistent backlogs)"},
    {"broker.queue_window", CFG_SIZE, "4MiB", 4 * KB, 1 * GB, NULL, OFF(queue_window),
     "bytes of persistent messages a queue keeps in memory; the rest of its backlog stays in the store and is "
     "read back in order as consumers need it (256 KiB while the messages held reach half of "
     "broker.memory_limit)"},
    {"broker.scheduler_window", CFG_SIZE, "4MiB", 4 * KB, 1 * GB, NULL, OFF(scheduler_window),
     "bytes of scheduled persistent messages (AMQ_SCHEDULED_*) kept in memory, those due first; the rest stay in "
     "the store, indexed by due time, and are read back as their time nears"},
    {"broker.store_limit", CFG_SIZE, "100GiB", 1 * MB, INT64_MAX, NULL, OFF(store_limit),
     "disk the store may take (log and index); producers of persistent messages are paused above it"},
    {"broker.max_redeliveries", CFG_INT, "6", -1, 1000000, NULL, OFF(max_redeliveries),
     "redeliveries before a message goes to the DLQ; 0 = first NACK dead-letters; -1 = never"},
    {"broker.dlq", CFG_STR, "/queue/ActiveMQ.DLQ", 0, 0, NULL, OFF(dlq),
     "the shared dead-letter queue"},
    {"broker.per_destination_dlq", CFG_BOOL, "false", 0, 0, NULL, OFF(per_destination_dlq),
     "dead-letter into /queue/ActiveMQ.DLQ.Queue.NAME (or .Topic.NAME) instead of broker.dlq"},
    {"broker.max_message_groups", CFG_INT, "1024", 1, 10000000, NULL, OFF(max_message_groups),
     "message groups (JMSXGroupID) a queue remembers the consumer of; beyond, the least recently used one is "
     "forgotten and its next message may go to another consumer (ActiveMQ's default too)"},
    {"broker.dup_window", CFG_INT, "20000", 0, 10000000, NULL, OFF(dup_window),
     "ids of recent SENDs (header _AMQ_DUPL_ID) remembered to drop resent duplicates; 0 = off"},
    {"broker.expiry_check_interval", CFG_DURATION, "30s", 10, 86400000, NULL, OFF(expiry_check_interval),
     "how often queues are swept for expired messages (also checked at dispatch; a deep queue's or durable "
     "backlog's messages in the store only: 20,000 index entries a sweep over all, reading a 32nd of broker.memory_limit of "
     "expired messages at most) and idle destinations removed"},
    {"broker.prefetch_queue", CFG_INT, "1000", 1, 1000000, NULL, OFF(prefetch_queue),
     "default unacked messages per queue subscription (activemq.prefetchSize overrides)"},
    {"broker.prefetch_topic", CFG_INT, "32767", 1, 1000000, NULL, OFF(prefetch_topic),
     "default unacked messages per topic subscription"},
    {"broker.prefetch_durable", CFG_INT, "100", 1, 1000000, NULL, OFF(prefetch_durable),
     "default unacked messages per durable topic subscription"},
    {"broker.topic_pending_limit", CFG_INT, "0", 0, 100000000, NULL, OFF(topic_pending_limit),
     "messages a non-durable topic subscription may have waiting beyond its prefetch; a subscriber that reads "
     "slower has its oldest waiting messages (of the lowest priority) discarded (counted as dropped); 0 = no "
     "limit: its backlog fills broker.dest_memory_limit and pauses the topic's producers"},
    /* [stomp] */
    {"stomp.listen", CFG_ADDR, "127.0.0.1:61613", 0, 0, NULL, OFF(stomp_listen),
     "address:port the STOMP listener binds (master and standalone only)"},
    {"stomp.tls_listen", CFG_ADDR, "", 0, 0, NULL, OFF(stomp_tls_listen),
     "address:port of a second STOMP listener speaking TLS (ActiveMQ's stomp+ssl, port 61612 by custom); empty = "
     "none; needs tls.cert and tls.key"},
    {"stomp.max_frame_size", CFG_SIZE, "10MiB", 1 * KB, 1 * GB, NULL, OFF(max_frame_size),
     "largest frame accepted (headers and body)"},
    {"stomp.max_headers", CFG_INT, "1000", 1, 100000, NULL, OFF(max_headers),
     "most headers in one frame"},
    {"stomp.max_header_size", CFG_SIZE, "10KiB", 64, 16 * MB, NULL, OFF(max_header_size),
     "longest header line"},
    {"stomp.max_command_size", CFG_SIZE, "1KiB", 16, 1 * MB, NULL, OFF(max_command_size),
     "longest command line"},
    {"stomp.require_host", CFG_BOOL, "false", 0, 0, NULL, OFF(require_host),
     "refuse a 1.1/1.2 CONNECT without a host header (the specification's rule; some clients omit it)"},
    {"stomp.client_id_takeover", CFG_BOOL, "false", 0, 0, NULL, OFF(client_id_takeover),
     "a CONNECT with a client-id in use closes the older connection instead of being refused"},
    {"stomp.connect_timeout", CFG_DURATION, "30s", 10, 3600000, NULL, OFF(connect_timeout),
     "time a new connection has to send CONNECT"},
    {"stomp.frame_timeout", CFG_DURATION, "60s", 10, 3600000, NULL, OFF(frame_timeout),
     "time a frame has to arrive whole once its first bytes came (a client trickling a frame is closed)"},
    {"stomp.max_input_buffers", CFG_SIZE, "256MiB", 1 * MB, 64 * GB, NULL, OFF(max_input_buffers),
     "bytes of frames not yet whole all connections may hold together; a connection that would go "
     "beyond is refused; those not logged in share a quarter of it"},
    {"stomp.heartbeat_min", CFG_DURATION, "100ms", 1, 3600000, NULL, OFF(heartbeat_min),
     "shortest heart-beat interval granted; faster client requests are raised to it"},
    {"stomp.heartbeat_grace_pct", CFG_INT, "150", 100, 1000, NULL, OFF(heartbeat_grace_pct),
     "a client is dead when silent for this percentage of its heart-beat interval"},
    {"stomp.output_limit", CFG_SIZE, "1MiB", 4 * KB, 1 * GB, NULL, OFF(output_limit),
     "unsent bytes per connection above which no more messages are dispatched to it"},
    {"stomp.max_output_buffers", CFG_SIZE, "256MiB", 1 * MB, 64 * GB, NULL, OFF(max_output_buffers),
     "unsent bytes all connections may hold together (at least stomp.output_limit); beyond, a connection "
     "with 4 KiB or more it could write gets no more messages until the total falls or its output is written"},
    {"stomp.pending_limit", CFG_INT, "4096", 1, 10000000, NULL, OFF(pending_limit),
     "frames per connection waiting for the store before the broker stops reading it"},
    {"stomp.max_subscriptions", CFG_INT, "1000", 1, 1000000, NULL, OFF(max_subscriptions),
     "subscriptions per connection"},
    {"stomp.max_consumers", CFG_INT, "20000", 1, 10000000, NULL, OFF(max_consumers),
     "destinations one connection's subscriptions take from in all: one for a plain subscription, one per "
     "destination for a composite or wildcard one"},
    {"stomp.max_composite", CFG_INT, "256", 1, 100000, NULL, OFF(max_composite),
     "destinations one SEND or SUBSCRIBE may name in a comma-separated (composite) list"},
    {"stomp.max_transactions", CFG_INT, "100", 1, 100000, NULL, OFF(max_transactions),
     "open transactions per connection"},
    {"stomp.max_tx_frames", CFG_INT, "100000", 1, 100000000, NULL, OFF(max_tx_frames),
     "frames held in one transaction (a SEND to a composite destination counts once per destination)"},
    {"stomp.ws_listen", CFG_ADDR, "", 0, 0, NULL, OFF(ws_listen),
     "address:port of the STOMP over WebSocket listener (ws://), bound with stomp.listen; empty = none"},
    {"stomp.wss_listen", CFG_ADDR, "", 0, 0, NULL, OFF(wss_listen),
     "address:port of the STOMP over WebSocket over TLS listener (wss://; certificates from [tls]), bound with "
     "stomp.listen; empty = none"},
    {"stomp.ws_origins", CFG_STR, "", 0, 0, NULL, OFF(ws_origins),
     "browser origins (scheme://host[:port], comma-separated, * for any) allowed to open WebSocket connections "
     "besides same-origin pages under a name of this node (see http.hosts); clients that send no Origin are "
     "always allowed"},
    {"stomp.max_selector_length", CFG_INT, "4096", 16, 65536, NULL, OFF(max_selector_length),
     "longest SUBSCRIBE selector, in bytes"},
    {"stomp.max_selector_complexity", CFG_INT, "100000", 10, 100000000, NULL, OFF(max_selector_complexity),
     "compiled size of one selector (nodes, IN items, LIKE automaton work): bounds what a SUBSCRIBE costs"},
    {"stomp.selector_budget", CFG_INT, "100000", 1000, 1000000000000LL, NULL, OFF(selector_budget),
     "selector steps one message's routing (and one loop iteration's dispatching) may take; the rest waits "
     "for the next iteration"},
    /* [store] */
    {"store.type", CFG_CHOICE, "leveldb", 0, 0, "leveldb|replicated-leveldb|memory", OFF(store_type),
     "leveldb: a local LevelDB journal under broker.data_dir; replicated-leveldb: the master ships it to slaves; "
     "memory: nothing on disk"},
    {"store.sync", CFG_STR, "", 0, 0, NULL, OFF(store_sync),
     "when an entry is committed: local_mem, local_disk, remote_mem, remote_disk, quorum_mem, quorum_disk or a "
     "comma list; empty = local_disk (leveldb) or quorum_mem (replicated-leveldb)"},
    {"store.replicas", CFG_INT, "3", 1, 31, NULL, OFF(replicas),
     "nodes in the replicated store (the same on every node); a quorum is replicas/2+1, the master included"},
    {"store.role", CFG_CHOICE, "auto", 0, 0, "auto|master|slave", OFF(store_role),
     "replicated-leveldb: auto = ZooKeeper elects the master; master or slave = chosen by configuration"},
    {"store.hostname", CFG_STR, "", 0, 0, NULL, OFF(store_hostname),
     "address other nodes and clients reach this node at (default: the host of store.bind)"},
    {"store.weight", CFG_INT, "1", 0, 1000000, NULL, OFF(weight),
     "election preference between nodes with equally up-to-date logs (higher wins)"},
    {"store.master", CFG_STR, "", 0, 0, NULL, OFF(store_master),
     "store.role = slave: the master's replication address (its store.bind)"},
    {"store.bind", CFG_ADDR, "127.0.0.1:61619", 0, 0, NULL, OFF(store_bind),
     "replication listener, bound only while master"},
    {"store.advertise", CFG_STR, "", 0, 0, NULL, OFF(store_advertise),
     "host:port the other nodes connect to for replication, when a proxy or NAT stands in front of store.bind "
     "(default: store.hostname, or the host of store.bind, with store.bind's port)"},
    {"store.security_token", CFG_STR, "", 0, 0, NULL, OFF(security_token),
     "shared secret a slave must present to its master"},
    {"store.tls", CFG_BOOL, "false", 0, 0, NULL, OFF(store_tls),
     "replication over TLS (every node alike); with tls.ca set, master and slave each verify the other's "
     "certificate"},
    {"store.repl_timeout", CFG_DURATION, "5s", 100, 3600000, NULL, OFF(repl_timeout),
     "a replication peer silent this long is dropped (pings go every third of it)"},
    {"store.stop_wait", CFG_DURATION, "10s", 0, 60000, NULL, OFF(stop_wait),
     "how long a stopping master whose store.sync waits for slaves waits for them to have every entry it "
     "journaled, taking no new client and reading nothing more meanwhile (0: stop at once)"},
    {"store.max_unauthenticated", CFG_INT, "16", 1, 10000, NULL, OFF(repl_max_unauth),
     "replication connections still proving the token at once (each within store.repl_timeout, small frames "
     "only); one more closes the oldest of them"},
    {"store.repl_window", CFG_SIZE, "8MiB", 64 * KB, 1 * GB, NULL, OFF(repl_window),
     "journal bytes in flight to one slave before the master waits for its acknowledgements; a slave stops "
     "reading once as many received bytes wait for its disk, and persistent producers wait once as many "
     "journaled bytes wait for the store's writer"},
    {"store.ack_delay", CFG_DURATION, "2ms", 0, 10000, NULL, OFF(ack_delay),
     "ACK frames without a receipt wait up to this long to be journaled with the next entry: one entry, and one "
     "replication round, fewer per message; a crash within it brings those messages back, marked redelivered; "
     "a slave holds its ACK of an entry nothing waits for (an auto-ack dequeue) as long, for the next entry to "
     "carry (0 = journaled every loop round, every entry acknowledged at once)"},
    {"store.quorum_timeout", CFG_DURATION, "30s", 0, 86400000, NULL, OFF(quorum_timeout),
     "a persistent SEND waiting this long for its quorum gets ERROR (0 = wait forever)"},
    {"store.snapshot_chunk", CFG_SIZE, "256KiB", 4 * KB, 64 * MB, NULL, OFF(snapshot_chunk),
     "bytes of state per snapshot frame sent to a slave that must resynchronise"},
    {"store.segment_size", CFG_SIZE, "64MiB", 64 * KB, 2 * GB, NULL, OFF(segment_size),
     "size at which the store's log moves on to a new segment file (a segment is removed once nothing in it is "
     "needed)"},
    {"store.retention", CFG_INT, "100000", 1, INT64_MAX, NULL, OFF(store_retention),
     "journal entries kept for replicas to catch up from; older ones are pruned"},
    /* [http] */
    {"http.listen", CFG_ADDR, "127.0.0.1:8161", 0, 0, NULL, OFF(http_listen),
     "the console (HTML page, JSON API, /metrics, /healthz); empty = no console"},
    {"http.tls", CFG_BOOL, "false", 0, 0, NULL, OFF(http_tls),
     "serve the console over HTTPS (needs tls.cert and tls.key)"},
    {"http.auth", CFG_BOOL, "true", 0, 0, NULL, OFF(http_auth),
     "require HTTP basic authentication (all but /healthz)"},
    {"http.admin_user", CFG_STR, "admin", 0, 0, NULL, OFF(admin_user),
     "console user name"},
    {"http.admin_password", CFG_STR, "admin", 0, 0, NULL, OFF(admin_password),
     "console password (the default is logged as a warning, and refused with http.listen off loopback)"},
    {"http.max_request", CFG_SIZE, "64KiB", 1 * KB, 64 * MB, NULL, OFF(http_max_request),
     "largest request headers, and largest body, accepted"},
    {"http.max_connections", CFG_INT, "256", 1, 100000, NULL, OFF(http_max_connections),
     "console connections at once"},
    {"http.refresh", CFG_DURATION, "5s", 1000, 3600000, NULL, OFF(http_refresh),
     "how often the page reloads itself"},
    {"http.rate_interval", CFG_DURATION, "5s", 1000, 60000, NULL, OFF(http_rate_interval),
     "message rates are counted per interval this long, over the last 15 minutes (8 bytes per interval for each "
     "destination with traffic)"},
    {"http.max_listed_destinations", CFG_INT, "1000", 0, 10000000, NULL, OFF(http_max_listed_destinations),
     "most destinations /metrics gives series of their own, and /api/overview lists, of each kind: those with the "
     "most messages waiting, then the most memory (the others are counted; /api/queues and /api/topics list all)"},
    {"http.browse_limit", CFG_INT, "100", 1, 10000, NULL, OFF(http_browse_limit),
     "most messages one browse of a queue shows, and one move takes"},
    {"http.body_preview", CFG_SIZE, "1KiB", 16, 1 * MB, NULL, OFF(http_body_preview),
     "bytes of a message's body (and of each header) a browse shows"},
    {"http.request_timeout", CFG_DURATION, "10s", 100, 3600000, NULL, OFF(http_request_timeout),
     "time a console request has from its first byte to its last; then 408 and the connection is closed"},
    {"http.reserved_connections", CFG_INT, "16", 0, 100000, NULL, OFF(http_reserved_connections),
     "slots of http.max_connections (a quarter of them at most) kept for connections that have authenticated: "
     "beyond the others, the oldest connection that has not is closed to make room"},
    {"http.hosts", CFG_STR, "", 0, 0, NULL, OFF(http_hosts),
     "names this node answers to in the Host header besides IP addresses, localhost, this machine's name "
     "and the host of its listen address: the console's, and a WebSocket page's same origin (a defence "
     "against DNS rebinding); *.example.com matches its subdomains; * = any"},
    {"http.admin_group", CFG_STR, "admins", 0, 0, NULL, OFF(admin_group),
     "members of this group of auth.users may use the console (http.admin_user stays a fallback)"},
    /* [zookeeper] */
    {"zookeeper.address", CFG_STR, "", 0, 0, NULL, OFF(zk_address),
     "ZooKeeper ensemble, host:port[,host:port...]; empty = no ZooKeeper"},
    {"zookeeper.path", CFG_STR, "", 0, 0, NULL, OFF(zk_path),
     "znode under which the cluster registers; empty = /stompd/<broker.name>"},
    {"zookeeper.session_timeout", CFG_DURATION, "2s", 1000, 600000, NULL, OFF(zk_session_timeout),
     "ZooKeeper session timeout; a master without an answer from ZooKeeper for 2/3 of it steps down"},
    {"zookeeper.password", CFG_STR, "", 0, 0, NULL, OFF(zk_password),
     "digest password: the cluster's znodes are readable and writable only with it"},
    /* [tls] */
    {"tls.cert", CFG_STR, "", 0, 0, NULL, OFF(tls_cert),
     "PEM certificate (chain) this node presents on its TLS listeners and to its master; reread on SIGHUP"},
    {"tls.key", CFG_STR, "", 0, 0, NULL, OFF(tls_key),
     "PEM private key of tls.cert (unencrypted; keep it readable by stompd only); reread on SIGHUP"},
    {"tls.ca", CFG_STR, "", 0, 0, NULL, OFF(tls_ca),
     "PEM CA certificate(s) peers are verified against: replication over TLS is then mutual, and "
     "tls.verify_clients can require client certificates; empty = peers are not verified"},
    {"tls.ciphers", CFG_STR, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL", 0, 0, NULL, OFF(tls_ciphers),
     "TLS 1.2 cipher list (OpenSSL syntax); TLS 1.3 always uses OpenSSL's AEAD suites"},
    {"tls.min_version", CFG_CHOICE, "1.2", 0, 0, "1.2|1.3", OFF(tls_min_version),
     "oldest TLS version accepted or offered"},
    {"tls.verify_clients", CFG_BOOL, "false", 0, 0, NULL, OFF(tls_verify_clients),
     "STOMP and console TLS clients must present a certificate signed by tls.ca (ActiveMQ's needClientAuth)"},
    {"tls.handshake_timeout", CFG_DURATION, "10s", 100, 600000, NULL, OFF(tls_handshake_timeout),
     "a TLS handshake not finished in this time is dropped (any listener, and the slave's link)"},
    /* [auth] */
    {"auth.users", CFG_STR, "", 0, 0, NULL, OFF(auth_users),
     "users file, one user a line name:HASH[:group,...] (HASH from stompd --hash-password); empty = no users"},
    {"auth.anonymous", CFG_CHOICE, "auto", 0, 0, "auto|true|false", OFF(auth_anonymous),
     "CONNECT without login: auto = allowed only while auth.users is empty and every client listener is on "
     "loopback (a non-loopback listener without users refuses to start); true = always; false = never"},
    {"auth.acl", CFG_STR, "", 0, 0, NULL, OFF(auth_acl),
     "ACL file: queue:PATTERN or topic:PATTERN then read=, write=, admin= group lists; a destination no line "
     "covers is denied; empty = every connected client may do everything"},
    {"auth.cache", CFG_BOOL, "true", 0, 0, NULL, OFF(auth_cache),
     "remember a successful login as a keyed hash (never the password) so the same credentials skip crypt(3) "
     "next time"},
    {"auth.hash_threads", CFG_INT, "1", 1, 64, NULL, OFF(auth_hash_threads),
     "threads that check passwords (crypt(3) takes milliseconds; never on the loop thread)"},
    {"auth.max_checks_per_peer", CFG_INT, "64", 1, 100000, NULL, OFF(auth_max_checks_per_peer),
     "password checks one client address may have waiting (addresses take turns at the hash threads, so one "
     "address's logins delay only its own); a login beyond is refused at once (STOMP ERROR, console 429) and "
     "may be tried again (identical logins share one check)"},
    /* [log] */
    {"log.level", CFG_CHOICE, "info", 0, 0, "debug|info|warn|error", OFF(log_level),
     "lowest level written to the log"},
    {"log.file", CFG_STR, "", 0, 0, NULL, OFF(log_file),
     "log file; empty means standard error"},
    {"log.flood_lines", CFG_INT, "100", 0, 1000000, NULL, OFF(log_flood_lines),
     "lines of one kind that others can set off at will (protocol ERRORs, refused WebSocket upgrades, "
     "replication peers without the token) written every 10 s at most, the next saying how many were not; "
     "0 = no limit"},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const struct cfg_key *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

int config_parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0)
        return -EINVAL;
    while (*end == ' ')
        end++;
    int64_t mult = 1;
    if (*end == '\0' || strcasecmp(end, "b") == 0)
        mult = 1;
    else if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kb") == 0 || strcasecmp(end, "kib") == 0)
        mult = KB;
    else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mb") == 0 || strcasecmp(end, "mib") == 0)
        mult = MB;
    else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gb") == 0 || strcasecmp(end, "gib") == 0)
        mult = GB;
    else
        return -EINVAL;
    if (v > INT64_MAX / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

int config_parse_duration(const char *s, int64_t *out_ms)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0)
        return -EINVAL;
    while (*end == ' ')
        end++;
    int64_t mult;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "min") == 0 || strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -EINVAL;
    if (v > INT64_MAX / mult)
        return -ERANGE;
    *out_ms = v * mult;
    return 0;
}

int config_check_rights_file(int fd, const char *path, const char *key, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & S_IWOTH)) {
        snprintf(err, errlen, "%s (%s) can be written by every user of this machine, who could give themselves any "
                 "right: chmod o-w it", path, key);
        return -EPERM;
    }
    return 0;
}

int config_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -EINVAL;
        hl = (size_t)(rb - s - 1);
        if (hl >= hostlen)
            return -EINVAL;
        memcpy(host, s + 1, hl);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        hl = (size_t)(colon - s);
        if (hl >= hostlen)
            return -EINVAL;
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || errno || p < 0 || p > 65535)
        return -EINVAL;
    *port = (int)p;
    return 0;
}

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = strdup(v);
    if (!*slot)
        abort();
}

static int apply(struct config *dst, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
    void *slot = (char *)dst + k->offset;
    int64_t n = 0;
    int rc = 0;

    switch (k->type) {
    case CFG_STR:
        set_str(slot, value);
        return 0;
    case CFG_ADDR: {
        char host[256];
        int port;
        if (value[0] && config_split_hostport(value, host, sizeof host, &port) != 0) {
            snprintf(err, errlen, "%s: '%s' is not host:port", k->name, value);
            return -EINVAL;
        }
        set_str(slot, value);
        return 0;
    }
    case CFG_CHOICE: {
        const char *p = k->choices;
        size_t vl = strlen(value);
        while (p && *p) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            if (l == vl && strncmp(p, value, l) == 0) {
                set_str(slot, value);
                return 0;
            }
            p = bar ? bar + 1 : NULL;
        }
        snprintf(err, errlen, "%s: '%s' is not one of %s", k->name, value, k->choices);
        return -EINVAL;
    }
    case CFG_BOOL:
        if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") || !strcasecmp(value, "on") || !strcmp(value, "1"))
            *(bool *)slot = true;
        else if (!strcasecmp(value, "false") || !strcasecmp(value, "no") || !strcasecmp(value, "off") || !strcmp(value, "0"))
            *(bool *)slot = false;
        else {
            snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)", k->name, value);
            return -EINVAL;
        }
        return 0;
    case CFG_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno)
            rc = -EINVAL;
        n = v;
        break;
    }
    case CFG_SIZE:
        rc = config_parse_size(value, &n);
        break;
    case CFG_DURATION:
        rc = config_parse_duration(value, &n);
        break;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: '%s' is not a valid %s", k->name, value,
                 k->type == CFG_SIZE ? "size (e.g. 64KiB, 10MiB)"
                 : k->type == CFG_DURATION ? "duration (e.g. 500ms, 30s, 5min)" : "integer");
        return -EINVAL;
    }
    if (n < k->min || n > k->max) {
        snprintf(err, errlen, "%s: %s is out of range [%" PRId64 ", %" PRId64 "]", k->name, value, k->min, k->max);
        return -ERANGE;
    }
    *(int64_t *)slot = n;
    return 0;
}

static int set_key(struct config *dst, const char *name, const char *value, char *err, size_t errlen)
{
    const struct cfg_key *k = find_key(name);
    if (!k) {
        snprintf(err, errlen, "unknown configuration key '%s' (stompd --help-config lists them)", name);
        return -ENOENT;
    }
    return apply(dst, k, value, err, errlen);
}

int config_set_key(const char *name, const char *value, char *err, size_t errlen)
{
    return set_key(&config, name, value, err, errlen);
}

static void init_defaults(struct config *dst)
{
    char err[256];
    config_release(dst);
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < NKEYS; i++) {
        if (apply(dst, &keys[i], keys[i].def, err, sizeof err) != 0) {
            fprintf(stderr, "bad built-in default: %s\n", err);
            abort();
        }
    }
    /* systemd's StateDirectory= ("a:b" when it names several: the first) */
    const char *sd = getenv("STATE_DIRECTORY");
    if (sd && sd[0] == '/') {
        size_t n = strcspn(sd, ":");
        free(dst->data_dir);
        dst->data_dir = strndup(sd, n);
        if (!dst->data_dir)
            abort();
    }
}

void config_init_defaults(void)
{
    init_defaults(&config);
}

struct load_ctx {
    struct config *dst;
    char *err;
    size_t errlen;
    const char *path;
    int failed;
};

static int on_ini_key(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    char full[256];
    char msg[512];
    if (ctx->failed)
        return 0;
    if (!section[0]) {
        snprintf(ctx->err, ctx->errlen, "%s: '%s' is outside any [section] (keys go under [broker], [stomp], ...; "
                 "does a section line above it lack its ']'?)", ctx->path, name);
        ctx->failed = 1;
        return 0;
    }
    snprintf(full, sizeof full, "%s.%s", section, name);
    if (set_key(ctx->dst, full, value, msg, sizeof msg) != 0) {
        snprintf(ctx->err, ctx->errlen, "%s: %s", ctx->path, msg);
        ctx->failed = 1;
        return 0;
    }
    return 1;
}

static int load_file(struct config *dst, const char *path, char *err, size_t errlen)
{
    struct load_ctx ctx = {dst, err, errlen, path, 0};
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        snprintf(err, errlen, "cannot read config file %s: %s", path, S_ISDIR(st.st_mode) ? "it is a directory"
                                                                                            : "not a regular file");
        fclose(fp);
        return -EINVAL;
    }
    int rc = ini_parse_file(fp, on_ini_key, &ctx);
    bool unread = ferror(fp) != 0;
    fclose(fp);
    if (unread && !ctx.failed) {
        snprintf(err, errlen, "cannot read config file %s", path);
        return -EIO;
    }
    if (ctx.failed)
        return -EINVAL;
    if (rc != 0) {
        snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)", path, rc);
        return -EINVAL;
    }
    return 0;
}

int config_load_file(const char *path, char *err, size_t errlen)
{
    return load_file(&config, path, err, errlen);
}

static int set_assignment(struct config *dst, const char *assignment, char *err, size_t errlen)
{
    const char *eq = strchr(assignment, '=');
    char name[256];
    if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof name) {
        snprintf(err, errlen, "--set expects section.key=value, got '%s'", assignment);
        return -EINVAL;
    }
    memcpy(name, assignment, (size_t)(eq - assignment));
    name[eq - assignment] = '\0';
    return set_key(dst, name, eq + 1, err, errlen);
}

int config_set(const char *assignment, char *err, size_t errlen)
{
    return set_assignment(&config, assignment, err, errlen);
}

int config_load(struct config *dst, const char *file, const char *const *sets, int nsets, char *err,
                size_t errlen)
{
    memset(dst, 0, sizeof *dst);
    init_defaults(dst);
    if (file && load_file(dst, file, err, errlen) != 0)
        return -EINVAL;
    for (int i = 0; i < nsets; i++) {
        char e[512];
        if (set_assignment(dst, sets[i], e, sizeof e) != 0) {
            snprintf(err, errlen, "--set %s: %s", sets[i], e);
            return -EINVAL;
        }
    }
    return 0;
}

static bool is_string(const struct cfg_key *k)
{
    return k->type == CFG_STR || k->type == CFG_ADDR || k->type == CFG_CHOICE;
}

static bool same_value(const struct config *a, const struct config *b, const struct cfg_key *k)
{
    const void *x = (const char *)a + k->offset, *y = (const char *)b + k->offset;
    if (is_string(k))
        return strcmp(*(char *const *)x, *(char *const *)y) == 0;
    if (k->type == CFG_BOOL)
        return *(const bool *)x == *(const bool *)y;
    return *(const int64_t *)x == *(const int64_t *)y;
}

void config_diff(const struct config *a, const struct config *b, void (*fn)(const char *key, void *ud), void *ud)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!same_value(a, b, &keys[i]))
            fn(keys[i].name, ud);
}

int config_copy_key(struct config *dst, const struct config *src, const char *name)
{
    const struct cfg_key *k = find_key(name);
    if (!k)
        return -ENOENT;
    void *d = (char *)dst + k->offset;
    const void *s = (const char *)src + k->offset;
    if (is_string(k))
        set_str(d, *(char *const *)s);
    else if (k->type == CFG_BOOL)
        *(bool *)d = *(const bool *)s;
    else
        *(int64_t *)d = *(const int64_t *)s;
    return 0;
}

bool config_key_doc(size_t i, struct config_doc *out)
{
    if (i >= NKEYS)
        return false;
    const struct cfg_key *k = &keys[i];
    out->name = k->name;
    out->def = k->def;
    out->help = k->help;
    out->choices = k->type == CFG_CHOICE ? k->choices : NULL;
    out->has_range = k->type == CFG_INT;
    out->min = k->min;
    out->max = k->max;
    out->kind = k->type == CFG_SIZE ? "size" : k->type == CFG_DURATION ? "duration" : k->type == CFG_BOOL ? "boolean"
                : k->type == CFG_ADDR ? "host:port" : k->type == CFG_INT ? "integer" : k->type == CFG_CHOICE ? "choice"
                : "string";
    return true;
}

void config_print_help(FILE *out)
{
    const char *section = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const struct cfg_key *k = &keys[i];
        const char *dot = strchr(k->name, '.');
        if (strncmp(section, k->name, (size_t)(dot - k->name)) != 0 || section[dot - k->name] != '\0') {
            static char sec[64];
            snprintf(sec, sizeof sec, "%.*s", (int)(dot - k->name), k->name);
            section = sec;
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
        }
        fprintf(out, "  %-28s default %-18s %s", k->name, k->def[0] ? k->def : "\"\"", k->help);
        if (k->type == CFG_CHOICE)
            fprintf(out, " (%s)", k->choices);
        else if (k->type == CFG_INT)
            fprintf(out, " [%" PRId64 "..%" PRId64 "]", k->min, k->max);
        fputc('\n', out);
    }
}

void config_release(struct config *c)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (is_string(&keys[i])) {
            char **slot = (char **)((char *)c + keys[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
}

void config_free(void)
{
    config_release(&config);
}
