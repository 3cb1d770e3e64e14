/* Journal entries: the unit of durability and of replication. An entry is
 * {epoch, lsn, ops...}; applying it is a pure function from the entry to a
 * set of key writes and deletes, used by the master and every slave alike.
 * This module encodes, decodes and applies; it does no I/O. */
#ifndef STOMPD_JOURNAL_H
#define STOMPD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/buf.h"

struct msg;

#define JOURNAL_FORMAT 1
#define JOURNAL_HEADER_LEN 21 /* u8 format, u64 epoch, u64 lsn, u32 nops */

enum journal_op {
    JOP_ENQUEUE = 1,     /* dest, targets, msg: Q key (queue) or T keys (durable targets) */
    JOP_DEQUEUE = 2,     /* dest, seq */
    JOP_DEQUEUE_SUB = 3, /* client-id, name, seq */
    JOP_DELIVERED = 4,   /* key kind, a, b, seq, deliveries: R key */
    JOP_SUB_CREATE = 5,  /* client-id, name, topic, selector */
    JOP_SUB_DELETE = 6,  /* client-id, name: S key, T and R ranges */
    JOP_PURGE = 7,       /* dest: Q and R ranges */
    JOP_DUP_FORGET = 8,  /* dup id leaves the duplicate-detection window */
};

/* Key prefixes of the store (DESIGN §4). */
#define KEY_META "!meta/"
#define KEY_L 'L' /* be64 lsn -> entry */
#define KEY_Q 'Q' /* dest \0 be64 seq -> message */
#define KEY_S 'S' /* client-id \0 name -> subscription */
#define KEY_T 'T' /* client-id \0 name \0 be64 seq -> message */
#define KEY_R 'R' /* a Q or T key -> u32 deliveries */
#define KEY_D 'D' /* dup id -> be64 lsn */

/* ---------------------------------------------------------------- building */

struct journal_builder {
    struct buf b;
    uint32_t nops;
};

void jb_init(struct journal_builder *jb);
void jb_free(struct journal_builder *jb);
bool jb_empty(const struct journal_builder *jb);
void jb_enqueue(struct journal_builder *jb, const char *dest, const char *const *targets, uint32_t ntargets,
                const char *dup_id, const struct msg *m);
void jb_dequeue(struct journal_builder *jb, const char *dest, uint64_t seq);
void jb_dequeue_sub(struct journal_builder *jb, const char *client_id, const char *name, uint64_t seq);
/* kind is KEY_Q (a = dest) or KEY_T (a = client-id, b = name). */
void jb_delivered(struct journal_builder *jb, char kind, const char *a, const char *b, uint64_t seq,
                  uint32_t deliveries);
void jb_sub_create(struct journal_builder *jb, const char *client_id, const char *name, const char *topic,
                   const char *selector);
void jb_sub_delete(struct journal_builder *jb, const char *client_id, const char *name);
void jb_purge(struct journal_builder *jb, const char *dest);
void jb_dup_forget(struct journal_builder *jb, const char *dup_id);
/* Finish: returns the encoded entry (malloc'd, caller owns) and resets jb. */
char *jb_finish(struct journal_builder *jb, uint64_t epoch, uint64_t lsn, size_t *len);

/* ---------------------------------------------------------------- reading */

struct jstr {
    const char *p;
    uint32_t len;
};

struct journal_entry {
    uint64_t epoch;
    uint64_t lsn;
    uint32_t nops;
    const char *ops; /* encoded ops */
    size_t ops_len;
};

/* Check the header and every op's framing; 0 or -EINVAL. */
int journal_decode(const char *data, size_t len, struct journal_entry *out) __attribute__((warn_unused_result));

/* Where apply sends its effects. del_prefix removes every key starting with
 * the prefix (the store runs it against what is already written). */
struct journal_sink {
    void (*put)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);
    void (*del)(void *ctx, const char *k, size_t kl);
    void (*del_prefix)(void *ctx, const char *p, size_t pl);
    void *ctx;
    bool no_journal; /* a store no replica reads from keeps no L keys */
};

/* A checksum of an encoded entry (FNV-1a, 64 bits, over every byte: the
 * header's epoch and lsn and the ops). Replicas compare it at a slave's
 * last position to tell the same entry from a divergent one. Never 0: 0
 * means "unknown" on the wire. */
uint64_t journal_checksum(const char *data, size_t len);

/* Apply one encoded entry: its own L key, its ops, and !meta/applied_lsn,
 * !meta/epoch and !meta/tip_sum (its checksum). Deterministic: the same entry always makes the same
 * calls. Returns 0 or -EINVAL for a malformed entry. */
int journal_apply(const char *data, size_t len, const struct journal_sink *sink) __attribute__((warn_unused_result));

/* One decoded op. Fields by type:
 *   ENQUEUE      a = dest, targets (ntargets pairs), d = dup id, msg
 *   DEQUEUE      a = dest, seq
 *   DEQUEUE_SUB  a = client-id, b = name, seq
 *   DELIVERED    kind, a, b, seq, count (deliveries so far)
 *   SUB_CREATE   a = client-id, b = name, c = topic, d = selector ("" = none)
 *   SUB_DELETE   a = client-id, b = name
 *   PURGE        a = dest
 *   DUP_FORGET   a = dup id */
struct journal_op_view {
    enum journal_op type;
    char kind;
    struct jstr a, b, c, d;
    uint64_t seq;
    uint32_t count;
    uint32_t ntargets;
    struct jstr targets;        /* encoded (client-id, name) pairs */
    struct jstr msg;            /* encoded message */
};
/* Walk the (client-id, name) pairs of an ENQUEUE's targets. */
bool journal_next_target(struct jstr *targets, struct jstr *cid, struct jstr *name);
typedef int (*journal_op_fn)(void *ctx, const struct journal_op_view *op);
int journal_foreach_op(const struct journal_entry *e, journal_op_fn fn, void *ctx) __attribute__((warn_unused_result));

/* ---------------------------------------------------------------- messages */

void journal_encode_msg(struct buf *b, const struct msg *m);
/* Decode a message (headers and body copied). NULL when malformed. */
struct msg *journal_decode_msg(const char *data, size_t len);

/* ---------------------------------------------------------------- keys */

void jkey_be64(char *out, uint64_t v);
uint64_t jkey_get_be64(const char *p);
/* 'Q' dest \0 seq, 'T' cid \0 name \0 seq, 'S' cid \0 name, 'L' lsn */
size_t jkey_q(struct buf *b, const char *dest, size_t dl, uint64_t seq);
size_t jkey_t(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl, uint64_t seq);
size_t jkey_s(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl);
void jkey_l(char out[9], uint64_t lsn);

#endif
