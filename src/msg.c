/* Messages: built from a SEND frame without copying its body, refcounted,
 * and rendered to MESSAGE frames with the common header block cached per
 * STOMP version (one block for all versions when nothing needs escaping). */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/msg.h"

static const char *const reserved[] = {
    "destination", "message-id", "timestamp", "expires", "priority", "persistent",
    "content-length", "receipt", "transaction", "subscription", "ack", "redelivered",
    "redelivery-count", NULL,
};

bool msg_header_is_reserved(const char *name, size_t len)
{
    for (int i = 0; reserved[i]; i++)
        if (strlen(reserved[i]) == len && memcmp(reserved[i], name, len) == 0)
            return true;
    return false;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

/* Lay out [header array][dest\0][id\0] in one block; returns the block. */
static char *alloc_own(struct msg *m, uint32_t nh, const char *dest, const char *id, size_t extra)
{
    size_t dl = strlen(dest), il = strlen(id);
    char *mem = xmalloc(nh * sizeof(struct stomp_header) + dl + il + 2 + extra);
    m->headers = (struct stomp_header *)mem;
    char *s = mem + nh * sizeof(struct stomp_header);
    memcpy(s, dest, dl + 1);
    m->dest = s;
    memcpy(s + dl + 1, id, il + 1);
    m->id = s + dl + 1;
    m->own_mem = mem;
    return s + dl + il + 2;
}

static void finish(struct msg *m)
{
    const char *g = msg_get(m, "JMSXGroupID");
    m->group = (g && *g) ? g : NULL;
    const char *gs = msg_get(m, "JMSXGroupSeq");
    m->group_seq = gs ? strtoll(gs, NULL, 10) : 0;
    m->size = sizeof *m + m->body_len + 64;
    for (uint32_t i = 0; i < m->nheaders; i++)
        m->size += m->headers[i].name_len + m->headers[i].value_len + 2 + sizeof(struct stomp_header);
}

struct msg *msg_from_frame(struct frame *f, const char *dest, const char *id, uint64_t seq,
                           int64_t now_ms, bool persistent, uint8_t priority, int64_t expires)
{
    struct msg *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->refs = 1;
    m->seq = seq;
    m->timestamp = now_ms;
    m->persistent = persistent;
    m->priority = priority;
    m->expires = expires;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < f->nheaders; i++)
        if (!msg_header_is_reserved(f->headers[i].name, f->headers[i].name_len))
            keep++;
    alloc_own(m, keep, dest, id, 0);
    uint32_t k = 0;
    for (uint32_t i = 0; i < f->nheaders; i++)
        if (!msg_header_is_reserved(f->headers[i].name, f->headers[i].name_len))
            m->headers[k++] = f->headers[i];
    m->nheaders = keep;
    m->body = f->body;
    m->body_len = f->body_len;
    m->frame_mem = f->mem;
    f->mem = NULL;
    f->headers = NULL;
    f->body = NULL;
    f->nheaders = 0;
    f->strings_len = 0;
    finish(m);
    return m;
}

static struct msg *build(const char *dest, const char *id, uint64_t seq, int64_t timestamp, bool persistent,
                         uint8_t priority, int64_t expires, const struct stomp_header *headers, uint32_t nheaders,
                         const char *body, size_t body_len, struct msg *share)
{
    struct msg *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->refs = 1;
    m->seq = seq;
    m->timestamp = timestamp;
    m->persistent = persistent;
    m->priority = priority;
    m->expires = expires;
    size_t strbytes = share ? 0 : body_len + 1;
    for (uint32_t i = 0; i < nheaders; i++)
        strbytes += headers[i].name_len + headers[i].value_len + 2;
    char *s = alloc_own(m, nheaders, dest, id, strbytes);
    for (uint32_t i = 0; i < nheaders; i++) {
        struct stomp_header *h = &m->headers[i];
        memcpy(s, headers[i].name, headers[i].name_len);
        s[headers[i].name_len] = '\0';
        h->name = s;
        h->name_len = headers[i].name_len;
        s += h->name_len + 1;
        memcpy(s, headers[i].value, headers[i].value_len);
        s[headers[i].value_len] = '\0';
        h->value = s;
        h->value_len = headers[i].value_len;
        s += h->value_len + 1;
    }
    m->nheaders = nheaders;
    if (share) {
        m->body_of = msg_ref(share);
        m->body = share->body;
        m->body_len = share->body_len;
    } else {
        if (body_len)
            memcpy(s, body, body_len);
        s[body_len] = '\0';
        m->body = s;
        m->body_len = body_len;
    }
    finish(m);
    return m;
}

struct msg *msg_new(const char *dest, const char *id, uint64_t seq, int64_t timestamp,
                    bool persistent, uint8_t priority, int64_t expires,
                    const struct stomp_header *headers, uint32_t nheaders,
                    const char *body, size_t body_len)
{
    return build(dest, id, seq, timestamp, persistent, priority, expires, headers, nheaders, body, body_len, NULL);
}

struct msg *msg_new_sharing(const char *dest, const char *id, uint64_t seq, int64_t timestamp,
                            bool persistent, uint8_t priority, int64_t expires,
                            const struct stomp_header *headers, uint32_t nheaders, struct msg *src)
{
    /* the one that owns the body: a copy of a copy shares the first's */
    struct msg *owner = src->body_of ? src->body_of : src;
    return build(dest, id, seq, timestamp, persistent, priority, expires, headers, nheaders, NULL, 0, owner);
}

void msg_unref(struct msg *m)
{
    if (!m || --m->refs > 0)
        return;
    for (int v = 0; v < 3; v++)
        if (!(m->shared_render && v > 0))
            free(m->render[v].p);
    free(m->frame_mem);
    free(m->own_mem);
    free(m->jdurables);
    struct msg *owner = m->body_of;
    free(m);
    msg_unref(owner);
}

const char *msg_get(const struct msg *m, const char *name)
{
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name_len == nl && memcmp(m->headers[i].name, name, nl) == 0)
            return m->headers[i].value;
    return NULL;
}

/* esc: what the client wrote may need escaping (any_escape) */
static void render(struct msg *m, enum stomp_version v, bool esc, struct buf *b)
{
    char num[32];
    frame_write_header_str(b, v, esc, "destination", m->dest);
    frame_write_header_str(b, v, esc, "message-id", m->id);
    frame_write_header(b, v, false, "timestamp", 9, num, fmt_i64(num, m->timestamp));
    frame_write_header(b, v, false, "expires", 7, num, fmt_i64(num, m->expires));
    num[0] = (char)('0' + m->priority);
    frame_write_header(b, v, false, "priority", 8, num, 1);
    if (m->persistent)
        frame_write_header(b, v, false, "persistent", 10, "true", 4);
    for (uint32_t i = 0; i < m->nheaders; i++)
        frame_write_header(b, v, esc, m->headers[i].name, m->headers[i].name_len,
                           m->headers[i].value, m->headers[i].value_len);
    frame_write_header(b, v, false, "content-length", 14, num, fmt_u64(num, m->body_len));
}

static bool any_escape(const struct msg *m)
{
    if (frame_escaped_len(STOMP_12, m->dest, strlen(m->dest)) != strlen(m->dest) ||
        frame_escaped_len(STOMP_12, m->id, strlen(m->id)) != strlen(m->id))
        return true;
    for (uint32_t i = 0; i < m->nheaders; i++) {
        const struct stomp_header *h = &m->headers[i];
        if (frame_escaped_len(STOMP_12, h->name, h->name_len) != h->name_len ||
            frame_escaped_len(STOMP_12, h->value, h->value_len) != h->value_len)
            return true;
    }
    return false;
}

void msg_rendered(struct msg *m, enum stomp_version v, const char **p, size_t *len)
{
    if (!m->render[v].p) {
        if (!m->render[0].p && !m->render[1].p && !m->render[2].p && !any_escape(m)) {
            struct buf b = {0};
            render(m, STOMP_12, false, &b); /* nothing to escape: in any version */
            for (int i = 0; i < 3; i++) {
                m->render[i].p = b.data;
                m->render[i].len = (uint32_t)b.len;
            }
            m->shared_render = true;
        } else {
            struct buf b = {0};
            render(m, v, true, &b);
            m->render[v].p = b.data;
            m->render[v].len = (uint32_t)b.len;
        }
    }
    *p = m->render[v].p;
    *len = m->render[v].len;
}

void msg_write_frame(struct msg *m, struct buf *out, enum stomp_version v, const char *dest_as, const char *sub_id,
                     const char *ack_id, bool redelivered, uint32_t redeliveries)
{
    const char *blk;
    size_t blen;
    msg_rendered(m, v, &blk, &blen);
    if (dest_as) {
        /* the rendered headers start with the destination's line (render):
         * this reader knows the destination by another name */
        const char *nl = memchr(blk, '\n', blen);
        blen -= (size_t)(nl + 1 - blk);
        blk = nl + 1;
    }
    buf_reserve(out, blen + m->body_len + 128);
    frame_write_command(out, "MESSAGE");
    if (dest_as)
        frame_write_header_str(out, v, true, "destination", dest_as);
    frame_write_header_str(out, v, true, "subscription", sub_id);
    if (ack_id)
        frame_write_header_str(out, v, true, "ack", ack_id);
    if (redelivered) {
        char num[16];
        frame_write_header(out, v, false, "redelivered", 11, "true", 4);
        snprintf(num, sizeof num, "%" PRIu32, redeliveries);
        frame_write_header(out, v, false, "redelivery-count", 16, num, strlen(num));
    }
    buf_append(out, blk, blen);
    frame_write_body(out, m->body, m->body_len);
}
