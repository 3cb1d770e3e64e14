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

/* 2: message keys carry the priority (Q dest \0 (9 - prio) seq), so the
 * index holds each queue in dispatch order; DEQUEUE and DELIVERED name
 * the priority. */
#define JOURNAL_FORMAT 2
#define JOURNAL_HEADER_LEN 21 /* u8 format, u64 epoch, u64 lsn, u32 nops */

enum journal_op {
    JOP_ENQUEUE = 1,     /* dest, targets, msg: Q key (queue) or T keys (durable targets) */
    JOP_DEQUEUE = 2,     /* dest, priority, seq */
    JOP_DEQUEUE_SUB = 3, /* client-id, name, priority, seq */
    JOP_DELIVERED = 4,   /* key kind, a, b, priority, seq, deliveries: R key */
    JOP_SUB_CREATE = 5,  /* client-id, name, topic, selector (read from older journals) */
    JOP_SUB_DELETE = 6,  /* client-id, name: S key, T and R ranges */
    JOP_PURGE = 7,       /* dest: Q and R ranges */
    JOP_DUP_FORGET = 8,  /* dup id leaves the duplicate-detection window */
    JOP_SCHED_ADD = 9,   /* job id, due, dup id, msg: W key (and w key, D key) */
    JOP_SCHED_DEL = 10,  /* job id, due, priority, seq: W and w keys */
    JOP_DEST_KEEP = 11,  /* dest: N key (a destination kept while idle) */
    JOP_DEST_FORGET = 12, /* dest: N key */
    JOP_SUB_SET = 13,    /* client-id, name, topic, selector, reader: S key (durable_reader_key) */
};

/* Key prefixes of the store's index (DESIGN §4). A message key ends with
 * u8 (9 - priority) and be64 seq: each queue's keys sort in dispatch
 * order. */
#define KEY_META "!meta/"
#define KEY_SEG "!seg/"  /* be32 segment id -> the segment's entries and live messages */
#define KEY_Q 'Q' /* dest \0 rprio seq -> where the message is (store.c) */
#define KEY_S 'S' /* client-id \0 name -> topic, selector[, reader] */
#define KEY_T 'T' /* client-id \0 name \0 rprio seq -> where the message is */
#define KEY_R 'R' /* a Q or T key -> u32 deliveries */
#define KEY_D 'D' /* dup id -> be64 seq */
#define KEY_C 'C' /* a Q or T key's queue prefix -> be64 messages, be64 bytes; "CW": every scheduled job */
#define KEY_W 'W' /* be64 due rprio seq -> where the scheduled message is (due order) */
#define KEY_WID 'w' /* job id -> be64 due, u8 priority, be64 seq (find a job by id) */
#define KEY_N 'N' /* dest -> "" (a destination that exists while idle) */
#define MSG_KEY_SUFFIX 9 /* rprio + seq at the end of a message key */

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
void jb_dequeue(struct journal_builder *jb, const char *dest, uint8_t prio, uint64_t seq);
void jb_dequeue_sub(struct journal_builder *jb, const char *client_id, const char *name, uint8_t prio, uint64_t seq);
/* kind is KEY_Q (a = dest) or KEY_T (a = client-id, b = name). */
void jb_delivered(struct journal_builder *jb, char kind, const char *a, const char *b, uint8_t prio, uint64_t seq,
                  uint32_t deliveries);
/* A durable subscription, made or changed; reader: who subscribed last
 * (durable_reader_key), "" for nobody yet. */
void jb_sub_create(struct journal_builder *jb, const char *client_id, const char *name, const char *topic,
                   const char *selector, const char *reader);
void jb_sub_delete(struct journal_builder *jb, const char *client_id, const char *name);
void jb_purge(struct journal_builder *jb, const char *dest);
void jb_dup_forget(struct journal_builder *jb, const char *dup_id);
/* A scheduled message (its job id is its message-id) due at `due` ms. */
void jb_sched_add(struct journal_builder *jb, const char *id, int64_t due, const char *dup_id, const struct msg *m);
void jb_sched_del(struct journal_builder *jb, const char *id, int64_t due, uint8_t prio, uint64_t seq);
void jb_dest_keep(struct journal_builder *jb, const char *dest);
void jb_dest_forget(struct journal_builder *jb, const char *dest);
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

/* Where apply sends its effects. Message keys get their own calls: the
 * message stays where the entry put it (put_msg is given the encoded
 * message inside the entry), and removing one removes its delivery count
 * too; del_msgs removes every message key (and delivery count) starting
 * with the prefix, whether written before or earlier in the same group. */
struct journal_sink {
    void (*put)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);
    void (*del)(void *ctx, const char *k, size_t kl);
    void (*put_msg)(void *ctx, const char *k, size_t kl, const char *msg, size_t ml);
    void (*del_msg)(void *ctx, const char *k, size_t kl);
    void (*del_msgs)(void *ctx, const char *p, size_t pl);
    void *ctx;
};

/* A checksum of an encoded entry (FNV-1a, 64 bits, over every byte: the
 * header's epoch and lsn and the ops). Replicas compare it at a slave's
 * last position to tell the same entry from a divergent one. Never 0: 0
 * means "unknown" on the wire. */
uint64_t journal_checksum(const char *data, size_t len);

/* The last entry of a stream, whose checksum is asked for now and then (a
 * node's position at an election or a replication handshake): a copy is
 * far cheaper than the checksum of every entry. */
struct journal_tip {
    struct buf copy; /* the entry, while its sum is owed */
    uint64_t sum;
};
/* data is the new last entry. */
void journal_tip_set(struct journal_tip *t, const char *data, size_t len);
/* The last entry's checksum is sum (0: unknown); frees the copy. */
void journal_tip_reset(struct journal_tip *t, uint64_t sum);
uint64_t journal_tip_sum(struct journal_tip *t);

/* Apply one encoded entry's ops. Deterministic: the same entry always
 * makes the same calls. Returns 0 or -EINVAL for a malformed entry. */
int journal_apply(const char *data, size_t len, const struct journal_sink *sink) __attribute__((warn_unused_result));

/* One decoded op. Fields by type:
 *   ENQUEUE      a = dest, targets (ntargets pairs), d = dup id, msg
 *   DEQUEUE      a = dest, prio, seq
 *   DEQUEUE_SUB  a = client-id, b = name, prio, seq
 *   DELIVERED    kind, a, b, prio, seq, count (deliveries so far)
 *   SUB_CREATE   a = client-id, b = name, c = topic, d = selector ("" = none)
 *   SUB_DELETE   a = client-id, b = name
 *   PURGE        a = dest
 *   DUP_FORGET   a = dup id
 *   SCHED_ADD    a = job id, due, d = dup id, msg
 *   SCHED_DEL    a = job id, due, prio, seq
 *   DEST_KEEP, DEST_FORGET   a = dest */
struct journal_op_view {
    enum journal_op type;
    char kind;
    struct jstr a, b, c, d, e;
    uint8_t prio;
    uint64_t seq;
    uint32_t count;
    int64_t due;
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
/* From an encoded message without decoding it: 0 when too short. */
uint64_t journal_msg_seq(const char *data, size_t len);
int64_t journal_msg_expires(const char *data, size_t len);
uint8_t journal_msg_priority(const char *data, size_t len);

/* ---------------------------------------------------------------- keys */

void jkey_be64(char *out, uint64_t v);
uint64_t jkey_get_be64(const char *p);
/* 'Q' dest \0 rprio seq, 'T' cid \0 name \0 rprio seq, 'S' cid \0 name;
 * the queue prefixes are the message keys without their suffix. */
size_t jkey_q(struct buf *b, const char *dest, size_t dl, uint8_t prio, uint64_t seq);
size_t jkey_t(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl, uint8_t prio, uint64_t seq);
size_t jkey_s(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl);
size_t jkey_q_prefix(struct buf *b, const char *dest, size_t dl);
size_t jkey_t_prefix(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl);
/* 'W' be64 due rprio seq: scheduled messages in due order. */
size_t jkey_w(struct buf *b, int64_t due, uint8_t prio, uint64_t seq);
/* The due time of a W key. */
int64_t jkey_w_due(const char *k, size_t kl);
/* Append the suffix of a message key. */
void jkey_msg_suffix(struct buf *b, uint8_t prio, uint64_t seq);
/* The priority and seq at the end of a message key. */
uint8_t jkey_msg_priority(const char *k, size_t kl);
uint64_t jkey_msg_seq(const char *k, size_t kl);

#endif
