/* The quorum tracker: from the master's own store position and each
 * slave's acknowledged (received, durable) positions, the highest lsn the
 * sync mode considers committed. Pure: no I/O, no clock; unit-tested.
 *
 * "mem" means the OS holds the entry (written, not fsynced): it survives
 * the crash of any or all stompd processes, not a power loss. Only what a
 * store wrote counts, the master's own copy too: an entry received, in a
 * process's memory, counts toward no mode. */
#ifndef STOMPD_QUORUM_H
#define STOMPD_QUORUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sync_mode {
    SYNC_LOCAL_MEM = 1 << 0,   /* the master has written it (no fsync) */
    SYNC_LOCAL_DISK = 1 << 1,  /* the master has fsynced it */
    SYNC_REMOTE_MEM = 1 << 2,  /* at least one slave has written it */
    SYNC_REMOTE_DISK = 1 << 3, /* at least one slave has fsynced it */
    SYNC_QUORUM_MEM = 1 << 4,  /* a quorum (master included) has written it */
    SYNC_QUORUM_DISK = 1 << 5, /* a quorum (master included) has fsynced it */
};

#define QUORUM_MAX_SLAVES 32

struct quorum_slave {
    uint64_t id;
    uint64_t received; /* in its memory: moves the send window, commits nothing */
    uint64_t durable;  /* written by its store, and fsynced if quorum_slaves_sync */
    uint64_t shipped;  /* handed whole to the kernel for it (its socket) */
};

struct quorum {
    unsigned modes;
    uint32_t replicas;
    uint32_t need;          /* replicas / 2 + 1 */
    uint64_t local_mem;     /* written by the master's store */
    uint64_t local_disk;    /* fsynced by the master's store */
    struct quorum_slave slaves[QUORUM_MAX_SLAVES];
    uint32_t nslaves;
    uint64_t committed;
};

/* Parse "quorum_mem" or a comma list ("local_disk,remote_mem"). An unknown
 * token is an error naming it. */
int quorum_parse_modes(const char *s, unsigned *modes, char *err, size_t errlen) __attribute__((warn_unused_result));
void quorum_format_modes(unsigned modes, char *out, size_t len);
/* Do slaves have to fsync for this mode? Does the master wait for their
 * store's reports (a remote or quorum mode)? Does the master fsync? Does
 * any mode wait for the master's own write (a local or quorum mode)? */
bool quorum_slaves_sync(unsigned modes);
bool quorum_slaves_report(unsigned modes);
bool quorum_master_sync(unsigned modes);
bool quorum_master_counts_self(unsigned modes);
/* The position of a slave's copy that the modes count: what its store
 * reported (durable) where they wait for its reports, else what it received. */
uint64_t quorum_slave_counted(unsigned modes, uint64_t received, uint64_t durable);

void quorum_init(struct quorum *q, uint32_t replicas, unsigned modes, uint64_t committed);
int quorum_add_slave(struct quorum *q, uint64_t id) __attribute__((warn_unused_result));
void quorum_remove_slave(struct quorum *q, uint64_t id);
void quorum_local(struct quorum *q, uint64_t mem, uint64_t disk);
void quorum_slave_ack(struct quorum *q, uint64_t id, uint64_t received, uint64_t durable);
/* Everything up to lsn is in the kernel's hands for this slave. */
void quorum_slave_shipped(struct quorum *q, uint64_t id, uint64_t lsn);
/* How many slaves' copies the modes wait for: a quorum's (need - 1), one
 * for a remote mode, none for the local modes alone. */
uint32_t quorum_slaves_waited(const struct quorum *q);
/* The highest lsn shipped to (or received by) as many slaves as the modes
 * wait for (a quorum's, or one for a remote mode): a new master elected
 * after this one's process died would have it. 0 while too few slaves;
 * UINT64_MAX when the modes wait for none. */
uint64_t quorum_shipped(const struct quorum *q);
/* Recompute: never goes backwards. */
uint64_t quorum_committed(struct quorum *q);
/* Slaves whose counted position (quorum_slave_counted) is at least lsn. */
uint32_t quorum_in_sync(const struct quorum *q, uint64_t lsn);
/* Lowest position any connected slave has received (0 when none). */
uint64_t quorum_min_received(const struct quorum *q);

#endif
