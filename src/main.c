/* stompd: parse the command line and the configuration, open the store,
 * start listening, run the loop until SIGTERM/SIGINT (SIGHUP reloads),
 * stop cleanly. */
#include "config.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "stompd/acl.h"
#include "stompd/auth.h"
#include "stompd/cluster.h"
#include "stompd/confdoc.h"
#include "stompd/config.h"
#include "stompd/console.h"
#include "stompd/http_head.h"
#include "stompd/log.h"
#include "stompd/node.h"
#include "stompd/notify.h"
#include "stompd/reload.h"
#include "stompd/server.h"
#include "stompd/stream.h"
#include "stompd/journal.h"
#include "stompd/persist.h"
#include "stompd/store.h"
#include "stompd/tls.h"

#ifndef STOMPD_CONF_FILE
#define STOMPD_CONF_FILE "/etc/stompd/stompd.conf"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: stompd [-c FILE] [--set section.key=value ...]\n"
            "\n"
            "A STOMP 1.0/1.1/1.2 message broker.\n"
            "\n"
            "  -c, --config FILE        read configuration from FILE (INI)\n"
            "  -s, --set KEY=VALUE      override one key, e.g. --set stomp.listen=127.0.0.1:61613\n"
            "      --help-config        list every configuration key, its default and meaning\n"
            "      --help-config=man    the same as the stompd.conf(5) manual page (roff)\n"
            "      --check-config       validate the configuration (and load the TLS\n"
            "                           certificates it names) and exit\n"
            "      --dump-store DIR     print the store under DIR (a stopped node's\n"
            "                           broker.data_dir) as sorted key/value digests\n"
            "      --hash-password[=sha512]  read a password on standard input, print its\n"
            "                           crypt(3) hash (yescrypt by default) for auth.users\n"
            "  -h, --help               this text\n"
            "  -V, --version            print the version\n"
            "\n"
            "Logs go to standard error unless log.file is set. SIGTERM or SIGINT stops\n"
            "the broker cleanly; SIGHUP reopens log.file, applies a changed log.level and\n"
            "reads the users and ACL files again, as well as the keys stompd.conf(5) marks\n"
            "\"reloaded on SIGHUP\" (other keys need a restart). The\n"
            "installed configuration is\n"
            "%s (see stompd.conf(5)).\n", STOMPD_CONF_FILE);
}

static int run(const char *file, const char *const *sets, int nsets);

static void put_escaped(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x21 && c < 0x7f && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

static int dump_one(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    /* the node's own bookkeeping (its log's segments, where its index
     * stands in its log, its identity) is not replicated state */
    static const char *const shared_meta[] = {"!meta/indexed_lsn", "!meta/epoch", "!meta/tip_sum"};
    if (kl && k[0] == '!') {
        bool shared = false;
        for (size_t i = 0; i < sizeof shared_meta / sizeof shared_meta[0]; i++)
            shared |= kl == strlen(shared_meta[i]) && !memcmp(k, shared_meta[i], kl);
        if (!shared)
            return 0;
    }
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < vl; i++) {
        h ^= (unsigned char)v[i];
        h *= 1099511628211ULL;
    }
    put_escaped(k, kl);
    printf("\t%zu\t%016llx\n", vl, (unsigned long long)h);
    (*(size_t *)ctx)++;
    return 0;
}

/* The store of a stopped node as lines that two replicas can diff. */
static int dump_store(const char *data_dir)
{
    char dir[4096], err[512], current[4200];
    snprintf(dir, sizeof dir, "%s/store", data_dir);
    /* opening would create an empty store where there is none (a typo) */
    snprintf(current, sizeof current, "%s/index/CURRENT", dir);
    if (access(current, F_OK) != 0) {
        fprintf(stderr, "stompd: no store under %s (%s: %s); give the node's broker.data_dir\n", data_dir, current,
                strerror(errno));
        return 1;
    }
    log_set_level(LOG_ERR);
    struct store_limits lim = {0};
    if (store_open(dir, &lim, err, sizeof err) != 0) {
        fprintf(stderr, "stompd: %s\n", err);
        store_close();
        return 1;
    }
    size_t n = 0;
    int rc = store_dump(dump_one, &n) < 0 ? 1 : 0;
    store_close();
    return rc;
}

/* The exit status of a start the configuration checks stopped: 78
 * (EX_CONFIG), which the unit does not restart, unless the node's address
 * is not this machine's (-EAGAIN from node_check_config): at boot that
 * can be the network still coming up, so 1, which it does. */
static int start_refused(int node_rc)
{
    return node_rc == -EAGAIN ? 1 : EX_CONFIG;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"help-config", optional_argument, NULL, 1},
        {"check-config", no_argument, NULL, 2},
        {"version", no_argument, NULL, 'V'},
        {"dump-store", required_argument, NULL, 3},
        {"hash-password", optional_argument, NULL, 4},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL;
    const char *sets[argc > 0 ? argc : 1];
    int nsets = 0, check_only = 0, opt, rc = 0;
    char err[512];

    /* Started with stdin, stdout or stderr closed, the first files we open
     * would take their numbers: LevelDB's LOG would get our log lines.
     * Each closed one is /dev/null. */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            int null = open("/dev/null", O_RDWR); /* the lowest free number: fd */
            (void)null;
        }
    /* a SIGHUP before the reload watcher is up must not kill us */
    signal(SIGHUP, SIG_IGN);
    config_init_defaults();
    while ((opt = getopt_long(argc, argv, "c:s:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 's':
            sets[nsets++] = optarg;
            break;
        case 'h':
            usage(stdout);
            goto out;
        case 1:
            if (optarg && !strcmp(optarg, "man")) {
                confdoc_print_man(stdout);
            } else if (optarg) {
                fprintf(stderr, "stompd: --help-config takes no value or =man, not '%s'\n", optarg);
                rc = 2;
            } else {
                config_print_help(stdout);
            }
            goto out;
        case 2:
            check_only = 1;
            break;
        case 3:
            rc = dump_store(optarg);
            goto out;
        case 4:
            rc = auth_hash_password(optarg, stdin, stdout, stderr);
            goto out;
        case 'V':
            printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
            goto out;
        default:
            usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "stompd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        rc = 2;
        goto out;
    }
    if (file && config_load_file(file, err, sizeof err) != 0) {
        fprintf(stderr, "stompd: %s\n", err);
        rc = EX_CONFIG;
        goto out;
    }
    for (int i = 0; i < nsets; i++) {
        if (config_set(sets[i], err, sizeof err) != 0) {
            fprintf(stderr, "stompd: --set %s: %s\n", sets[i], err);
            rc = EX_CONFIG;
            goto out;
        }
    }
    if (config_validate(&config, err, sizeof err) != 0) {
        fprintf(stderr, "stompd: %s\n", err);
        rc = EX_CONFIG;
        goto out;
    }
    enum log_level lvl;
    if (log_level_parse(config.log_level, &lvl) == 0)
        log_set_level(lvl);
    int lrc;
    /* --check-config writes its warnings to the terminal, and makes no log
     * file (one made by root would keep the service's user out of it) */
    if (!check_only && config.log_file[0] && (lrc = log_open_file(config.log_file)) != 0) {
        fprintf(stderr, "stompd: cannot open the log file %s: %s (log.file)\n", config.log_file, strerror(-lrc));
        rc = 1;
        goto out;
    }
    if (check_only) {
        /* the certificates too: a renewal can be checked before SIGHUP */
        int nrc = 0;
        if (auth_check_config(&config, &config, err, sizeof err) != 0 || acl_check_config(&config, err, sizeof err) != 0 ||
            (nrc = node_check_config(err, sizeof err)) != 0 || tls_start(err, sizeof err) != 0) {
            fprintf(stderr, "stompd: %s\n", err);
            rc = start_refused(nrc);
            goto out;
        }
        tls_stop();
        printf("configuration OK\n");
        goto out;
    }
    rc = run(file, sets, nsets);
out:
    log_close();
    config_free();
    return rc;
}

/* An error about the store names the key that places it, and where a
 * relative path lands. */
static void log_start_error(const char *err)
{
    char cwd[1024];
    if (config.data_dir[0] && strstr(err, config.data_dir)) {
        if (config.data_dir[0] != '/' && getcwd(cwd, sizeof cwd))
            log_err("cannot start: %s (broker.data_dir = %s, relative to the working directory %s)", err,
                    config.data_dir, cwd);
        else
            log_err("cannot start: %s (broker.data_dir = %s)", err, config.data_dir);
    } else {
        log_err("cannot start: %s", err);
    }
}

/* The node's life: loop, store, listener, run, clean stop. */
static int run(const char *file, const char *const *sets, int nsets)
{
    char err[512];
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        fprintf(stderr, "stompd: cannot create the event loop\n");
        return 1;
    }
    if (server_init(loop) != 0)
        return 1;
    http_head_limits((size_t)config.http_max_request);
    reload_start(loop, file, sets, nsets);
    notify_start(loop);
    log_info("%s %s starting: broker %s", PACKAGE_NAME, PACKAGE_VERSION, config.broker_name);
    int rc = 0;
    /* before any listener opens: a node that would let anyone in refuses */
    int nrc = 0;
    if (tls_start(err, sizeof err) != 0 || auth_configure(&config, &config, err, sizeof err) != 0 ||
        acl_configure(&config, err, sizeof err) != 0 || (nrc = node_check_config(err, sizeof err)) != 0) {
        log_err("cannot start: %s", err);
        rc = start_refused(nrc);
    } else if (auth_start(loop, err, sizeof err) != 0) {
        log_err("cannot start: %s", err);
        rc = 1;
    } else if (node_start(err, sizeof err) != 0) {
        log_start_error(err);
        rc = 1;
    } else if (console_start(err, sizeof err) != 0) {
        log_err("console: %s; set http.listen to another address, or to nothing for no console", err);
        rc = 1;
    } else if (cluster_start(err, sizeof err) != 0) {
        log_err("%s", err);
        rc = 1;
    } else {
        if (node_role() == NODE_ELECTING)
            log_info("role: decided by ZooKeeper; STOMP clients are accepted only while this node is master");
        else if (node_role() == NODE_SLAVE)
            log_info("role: slave of %s; STOMP clients are not accepted on this node", config.store_master);
        else
            log_info("role: %s", node_role_name(node_role()));
        server_run();
    }
    log_info("stopping");
    notify_stopping();
    cluster_stop();
    console_stop();
    server_shutdown();
    auth_stop();
    acl_stop();
    node_stop();
    tls_stop();
    notify_stop();
    reload_stop();
    stream_layer_stop();
    ev_loop_destroy(loop);
    log_info("stopped");
    return rc ? rc : srv.exit_code;
}
