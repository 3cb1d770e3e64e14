/* A message: the SEND frame's memory, taken over without copying, plus the
 * broker's own headers. Refcounted, so one message fans out to any number
 * of subscribers; the header block each STOMP version needs is rendered
 * once and cached. */
#ifndef STOMPD_MSG_H
#define STOMPD_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/buf.h"
#include "stompd/frame.h"

#define MSG_PRIORITY_DEFAULT 4
#define MSG_PRIORITIES 10

struct dest;

struct msg {
    uint32_t refs;
    bool persistent;
    bool journaled;      /* its ENQUEUE is in the journal */
    uint64_t lsn;        /* the journal entry of its ENQUEUE (0: indexed long ago) */
    uint8_t priority;
    uint64_t seq;        /* broker-wide arrival order; breaks priority ties */
    int64_t timestamp;   /* ms since the epoch, set on arrival */
    int64_t expires;     /* ms since the epoch; 0 = never */
    const char *dest;    /* destination name as sent */
    const char *id;      /* message-id */
    const char *group;   /* JMSXGroupID, or NULL */
    int64_t group_seq;   /* JMSXGroupSeq; -1 closes the group */
    uint32_t nheaders;   /* forwarded headers, in the order received */
    struct stomp_header *headers;
    const char *body;
    size_t body_len;
    size_t size;         /* bytes charged to memory limits */
    /* Charged once to the destination of its first queue entry, however
     * many of that destination's queues hold it (a topic's subscriptions
     * share one message): queue.c entry_new */
    struct dest *charged_to;
    uint32_t charged_entries;
    void *frame_mem;     /* owned: the frame this message came from */
    struct msg *body_of; /* a reference: the message whose body this one shares, or NULL */
    void *own_mem;       /* owned: header array and broker strings */
    struct {
        char *p;
        uint32_t len;
    } render[3];         /* per STOMP version; [0] shared when no escaping is needed */
    bool shared_render;
    /* A persistent topic message: the durable subscriptions its journal
     * entry names, each as (durable serial << 1 | 1 if the selector's
     * verdict was put off by the budget), serials ascending, those of
     * matching wildcard topics included. Set by persist_enqueue (judged),
     * followed by durable_publish at commit (for the topic and each
     * wildcard topic) and freed by topic_publish after the last: the
     * backlogs hold exactly what the store names. */
    uint64_t *jdurables;
    uint32_t njdurables;
    bool jdurables_judged;
};

/* Headers the broker owns: never forwarded from a SEND as they stand. */
bool msg_header_is_reserved(const char *name, size_t len);

/* Build a message from a SEND frame; takes f->mem. extra (may be NULL,
 * count n_extra) are headers to add in front, e.g. original-destination. */
struct msg *msg_from_frame(struct frame *f, const char *dest, const char *id, uint64_t seq,
                           int64_t now_ms, bool persistent, uint8_t priority, int64_t expires);
/* Build a message from parts (recovery, DLQ copies, HTTP console sends).
 * headers are copied. */
struct msg *msg_new(const char *dest, const char *id, uint64_t seq, int64_t timestamp,
                    bool persistent, uint8_t priority, int64_t expires,
                    const struct stomp_header *headers, uint32_t nheaders,
                    const char *body, size_t body_len);

/* The same, sharing src's body instead of copying it: a composite SEND's
 * copies hold one body between them. Each still counts the body in its
 * size (what its destination is charged, as if it held it alone). */
struct msg *msg_new_sharing(const char *dest, const char *id, uint64_t seq, int64_t timestamp,
                            bool persistent, uint8_t priority, int64_t expires,
                            const struct stomp_header *headers, uint32_t nheaders, struct msg *src);

static inline struct msg *msg_ref(struct msg *m) { m->refs++; return m; }
void msg_unref(struct msg *m);

const char *msg_get(const struct msg *m, const char *name);

/* The header block from destination through content-length, escaped for v. */
void msg_rendered(struct msg *m, enum stomp_version v, const char **p, size_t *len);

/* Append a MESSAGE frame for one delivery. ack_id may be NULL; dest_as,
 * if not NULL, is the destination header in place of m->dest (a
 * temporary destination, as its own connection names it). */
void msg_write_frame(struct msg *m, struct buf *out, enum stomp_version v, const char *dest_as, const char *sub_id,
                     const char *ack_id, bool redelivered, uint32_t redeliveries);

#endif
