/* Configuration: one table of every key (section.key, type, default,
 * bounds, help). Values come from the defaults, then the INI file (read
 * with inih), then --set overrides, in that order. Unknown keys and
 * out-of-range values are errors that stop the start. */
#ifndef STOMPD_CONFIG_H
#define STOMPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config {
    /* [broker] */
    char *broker_name;
    char *data_dir;
    int64_t memory_limit;
    int64_t dest_memory_limit;
    int64_t max_connections;
    int64_t reserved_connections;
    int64_t max_destinations;
    int64_t max_queue_depth;
    int64_t queue_window;
    int64_t scheduler_window;
    int64_t store_limit;
    int64_t max_redeliveries;
    char *dlq;
    bool per_destination_dlq;
    int64_t expiry_check_interval;
    int64_t prefetch_queue;
    int64_t prefetch_topic;
    int64_t topic_pending_limit;
    int64_t prefetch_durable;
    int64_t dup_window;
    int64_t max_message_groups;
    /* [stomp] */
    char *stomp_listen;
    char *stomp_tls_listen;
    int64_t max_frame_size;
    int64_t max_headers;
    int64_t max_header_size;
    int64_t max_command_size;
    bool require_host;
    bool client_id_takeover;
    int64_t connect_timeout;
    int64_t frame_timeout;
    int64_t max_input_buffers;
    int64_t heartbeat_min;
    int64_t heartbeat_grace_pct;
    int64_t output_limit;
    int64_t max_output_buffers;
    int64_t pending_limit;
    int64_t max_subscriptions;
    int64_t max_consumers;
    int64_t broker_max_consumers;
    int64_t max_composite;
    int64_t max_transactions;
    int64_t max_tx_frames;
    char *ws_listen;
    char *wss_listen;
    char *ws_origins;
    int64_t max_selector_length;
    int64_t max_selector_complexity;
    int64_t selector_budget;
    /* [store] */
    char *store_type;
    char *store_sync;
    int64_t store_retention;
    int64_t segment_size;
    char *store_role;
    char *store_master;
    int64_t replicas;
    char *store_bind;
    char *store_advertise;
    char *store_hostname;
    char *security_token;
    bool store_tls;
    int64_t weight;
    int64_t repl_timeout;
    int64_t stop_wait;
    int64_t repl_max_unauth;
    int64_t repl_window;
    int64_t ack_delay; /* ms */
    int64_t quorum_timeout;
    int64_t snapshot_chunk;
    /* [zookeeper] */
    char *zk_address;
    char *zk_path;
    int64_t zk_session_timeout;
    char *zk_password;
    /* [http] */
    char *http_listen;
    char *admin_user;
    char *admin_password;
    bool http_auth;
    bool http_tls;
    int64_t http_max_request;
    int64_t http_max_connections;
    int64_t http_max_listed_destinations;
    int64_t http_refresh;
    int64_t http_rate_interval;
    int64_t http_browse_limit;
    int64_t http_body_preview;
    int64_t http_request_timeout;
    int64_t http_reserved_connections;
    char *http_hosts;
    /* [tls] */
    char *tls_cert;
    char *tls_key;
    char *tls_ca;
    char *tls_ciphers;
    char *tls_min_version;
    bool tls_verify_clients;
    int64_t tls_handshake_timeout;
    char *admin_group;
    /* [auth] */
    char *auth_users;
    char *auth_acl;
    char *auth_anonymous;
    bool auth_cache;
    int64_t auth_hash_threads;
    int64_t auth_max_checks_per_peer;
    /* [log] */
    char *log_level;
    char *log_file;
    int64_t log_flood_lines;
};

extern struct config config;

void config_init_defaults(void);
/* Load an INI file; on error writes a message into err. */
int config_load_file(const char *path, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Apply one "section.key=value" override. */
int config_set(const char *assignment, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Set one key by name. */
int config_set_key(const char *key, const char *value, char *err, size_t errlen) __attribute__((warn_unused_result));
void config_print_help(FILE *out);
void config_free(void);
/* Rules across keys (config_check.c): what would stop the broker later or
 * lose messages is refused now, with the message it would have given. */
int config_validate(const struct config *c, char *err, size_t errlen) __attribute__((warn_unused_result));

/* A second configuration, for SIGHUP to compare with the running one:
 * defaults, then file (may be NULL), then the --set assignments. Release
 * it with config_release, also after a failure. */
int config_load(struct config *dst, const char *file, const char *const *sets, int nsets, char *err,
                size_t errlen) __attribute__((warn_unused_result));
void config_release(struct config *c);
/* Call fn with the name of every key whose value differs in a and b. */
void config_diff(const struct config *a, const struct config *b, void (*fn)(const char *key, void *ud), void *ud);
/* Copy one key's value from src to dst. */
int config_copy_key(struct config *dst, const struct config *src, const char *key) __attribute__((warn_unused_result));

/* The table as documentation (stompd.conf(5)): entry i, false past the end. */
struct config_doc {
    const char *name, *def, *help;
    const char *kind;          /* "size", "duration", "boolean", "host:port", "integer", "choice", "string" */
    const char *choices;       /* "a|b|c" for a choice */
    bool has_range;            /* integers: min..max */
    int64_t min, max;
};
bool config_key_doc(size_t i, struct config_doc *out);

/* Helpers shared by every module that reads addresses and sizes. */
int config_parse_size(const char *s, int64_t *out) __attribute__((warn_unused_result));
int config_parse_duration(const char *s, int64_t *out_ms) __attribute__((warn_unused_result));
/* A file that says who may do what (auth.users, auth.acl), open as fd,
 * must not be writable by every user of the machine: anyone could give
 * themselves any right. -EPERM with err naming the file and key. */
int config_check_rights_file(int fd, const char *path, const char *key, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Split "host:port" (host may be [v6]) into parts; port required. */
int config_split_hostport(const char *s, char *host, size_t hostlen, int *port) __attribute__((warn_unused_result));

#endif
