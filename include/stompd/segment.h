/* The store's log: numbered append-only segment files holding records,
 * each checked by a CRC. Journal entries (with the message bodies they
 * carry) and snapshot pairs are written here once, sequentially, and
 * fdatasynced per group; LevelDB only indexes them (store.c). A record:
 *
 *     u32 payload length | u32 crc32 (type and payload) | u8 type | payload
 *
 * A segment starts with a 16-byte header ("STOMPDL2", u32 id, u32 0).
 * The current segment may end in zeros written ahead of its records (a
 * zero header is the end of a segment's records); a finished one is cut
 * to its records and fdatasynced before the next one starts.
 * Appends and deletions happen on the store's writer thread; reads (of a
 * message body, or of entries for a replica catching up) on the loop
 * thread only, through descriptors of its own (a segment removed while
 * one is open stays readable until it is closed). */
#ifndef STOMPD_SEGMENT_H
#define STOMPD_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include "stompd/buf.h"

#define SEG_HEADER_LEN 16
#define SEG_REC_HEADER 9
#define SEG_MAX_RECORD (256u << 20)

enum seg_rec {
    REC_ENTRY = 1,  /* a journal entry, as replicated */
    REC_PAIRS = 2,  /* snapshot or migration state: u32 n, n times (u32 klen, key, u32 vlen, value) */
};

/* A place in the log. */
struct seg_pos {
    uint32_t seg;
    uint32_t off;
};

static inline int seg_pos_cmp(struct seg_pos a, struct seg_pos b)
{
    return a.seg != b.seg ? (a.seg < b.seg ? -1 : 1) : a.off != b.off ? (a.off < b.off ? -1 : 1) : 0;
}

/* Open the log directory (created if missing): the segments present, in
 * order. Returns 0 or a negative errno with err filled. */
int seglog_open(const char *dir, char *err, size_t errlen) __attribute__((warn_unused_result));
void seglog_close(void);
/* Copy up to max segment ids present, oldest first; returns how many
 * there are. Safe from any thread. */
size_t seglog_ids(uint32_t *out, size_t max);
uint32_t seglog_current(void);

/* ---------------------------------------------------------------- writer */

/* The records of one write, gathered: each a header of its own and a
 * payload the caller keeps in place until seglog_write returns (the
 * payloads are not copied; the kernel takes them with pwritev). */
struct seg_batch {
    struct iovec *iov;      /* header, payload, header, payload, ... */
    char *hdr;              /* n headers */
    size_t n, cap;
    uint64_t bytes;         /* headers and payloads */
};

/* Add a record of type; returns its offset in the batch. */
uint64_t seg_batch_add(struct seg_batch *b, uint8_t type, const char *data, size_t len);
void seg_batch_clear(struct seg_batch *b); /* empty, keeping its arrays */
void seg_batch_free(struct seg_batch *b);
/* Whether a batch of that many bytes goes in the current segment (no new
 * one, whose start fdatasyncs the finished one). */
bool seglog_fits(uint64_t bytes, uint64_t roll_bytes);
/* Append the batch to the current segment (a new one first when the
 * current has reached roll_bytes); *at is where its first record went.
 * presync: an fdatasync follows, so keep zeros written ahead (see
 * segment.c). */
int seglog_write(struct seg_batch *b, uint64_t roll_bytes, bool presync, struct seg_pos *at, char *err,
                 size_t errlen) __attribute__((warn_unused_result));
int seglog_sync(char *err, size_t errlen) __attribute__((warn_unused_result));
/* Remove segment id (never the current one). */
int seglog_remove(uint32_t id);
/* Remove every segment and start an empty one. */
int seglog_reset(char *err, size_t errlen) __attribute__((warn_unused_result));
/* Cut the current segment at off (a torn tail, or the end of its records,
 * found at start). */
int seglog_truncate(uint32_t seg, uint32_t off);
/* Bytes in all segments. */
uint64_t seglog_bytes(void);

/* ---------------------------------------------------------------- reading */

/* Read len bytes at pos (a message body); 0, or -errno. */
int seglog_read(struct seg_pos pos, char *out, size_t len) __attribute__((warn_unused_result));
/* Close the calling thread's cached read descriptors (a removed segment's
 * space is freed only once no descriptor holds it). */
void seglog_drop_readers(void);
/* The same for the descriptors of segments removed since they were opened
 * only (the loop's, once the writer has removed some). */
void seglog_drop_removed(void);

/* Walk records from pos on, across segments. Segments are read ahead
 * (SEG_READ_AHEAD at a time, or ra_size when set after seg_iter_init), so
 * a record costs no system call of its own. */
#define SEG_READ_AHEAD (1u << 20)
struct seg_iter {
    struct seg_pos pos;      /* of the next record */
    const char *data;        /* the current record's payload (until the next call) */
    size_t len;
    uint8_t type;
    struct seg_pos at;       /* of the current record */
    bool torn;               /* stopped at a record that is not whole or fails its CRC */
    /* read ahead: bytes [ra_off, ra_off + ra_len) of segment ra_seg */
    char *ra;
    size_t ra_len, ra_cap, ra_size;
    uint32_t ra_seg;
    uint64_t ra_off;
    bool ra_fresh;           /* the last view was read from the file just now */
};
void seg_iter_init(struct seg_iter *it, struct seg_pos from);
/* 1: a record (it->type, it->data, it->len, it->at); 0: the end of the
 * log (or a torn record: it->torn); negative: a read error. */
int seg_iter_next(struct seg_iter *it);
void seg_iter_free(struct seg_iter *it);

#endif
