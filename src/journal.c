/* Journal entries: encoding with bounds-checked decoding, and apply, the
 * one deterministic function from an entry to store keys that the master
 * and every slave run. Integers are big-endian; strings are u32 length +
 * bytes. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/journal.h"
#include "stompd/msg.h"

/* ------------------------------------------------------------ primitives */

void jkey_be64(char *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

uint64_t jkey_get_be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | (uint8_t)p[i];
    return v;
}

static void put_u8(struct buf *b, uint8_t v)
{
    buf_putc(b, (char)v);
}

static void put_u32(struct buf *b, uint32_t v)
{
    char x[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
    buf_append(b, x, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
    char x[8];
    jkey_be64(x, v);
    buf_append(b, x, 8);
}

static void put_strn(struct buf *b, const char *s, size_t len)
{
    put_u32(b, (uint32_t)len);
    buf_append(b, s, len);
}

static void put_str(struct buf *b, const char *s)
{
    put_strn(b, s ? s : "", s ? strlen(s) : 0);
}

struct rd {
    const char *p;
    size_t left;
    bool bad;
};

static uint8_t get_u8(struct rd *r)
{
    if (r->left < 1) {
        r->bad = true;
        return 0;
    }
    r->left--;
    return (uint8_t)*r->p++;
}

static uint32_t get_u32(struct rd *r)
{
    if (r->left < 4) {
        r->bad = true;
        return 0;
    }
    const uint8_t *u = (const uint8_t *)r->p;
    uint32_t v = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint64_t get_u64(struct rd *r)
{
    if (r->left < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t v = jkey_get_be64(r->p);
    r->p += 8;
    r->left -= 8;
    return v;
}

static struct jstr get_str(struct rd *r)
{
    struct jstr s = {"", 0};
    uint32_t n = get_u32(r);
    if (r->bad || n > r->left) {
        r->bad = true;
        return s;
    }
    s.p = r->p;
    s.len = n;
    r->p += n;
    r->left -= n;
    return s;
}

/* ------------------------------------------------------------ keys */

void jkey_msg_suffix(struct buf *b, uint8_t prio, uint64_t seq)
{
    put_u8(b, (uint8_t)(MSG_PRIORITIES - 1 - (prio < MSG_PRIORITIES ? prio : MSG_PRIORITIES - 1)));
    put_u64(b, seq);
}

uint8_t jkey_msg_priority(const char *k, size_t kl)
{
    return kl >= MSG_KEY_SUFFIX ? (uint8_t)(MSG_PRIORITIES - 1 - (uint8_t)k[kl - MSG_KEY_SUFFIX]) : 0;
}

uint64_t jkey_msg_seq(const char *k, size_t kl)
{
    return kl >= MSG_KEY_SUFFIX ? jkey_get_be64(k + kl - 8) : 0;
}

size_t jkey_q_prefix(struct buf *b, const char *dest, size_t dl)
{
    size_t start = b->len;
    buf_putc(b, KEY_Q);
    buf_append(b, dest, dl);
    buf_putc(b, '\0');
    return b->len - start;
}

size_t jkey_t_prefix(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl)
{
    size_t start = b->len;
    buf_putc(b, KEY_T);
    buf_append(b, cid, cl);
    buf_putc(b, '\0');
    buf_append(b, name, nl);
    buf_putc(b, '\0');
    return b->len - start;
}

size_t jkey_q(struct buf *b, const char *dest, size_t dl, uint8_t prio, uint64_t seq)
{
    size_t start = b->len;
    jkey_q_prefix(b, dest, dl);
    jkey_msg_suffix(b, prio, seq);
    return b->len - start;
}

size_t jkey_t(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl, uint8_t prio, uint64_t seq)
{
    size_t start = b->len;
    jkey_t_prefix(b, cid, cl, name, nl);
    jkey_msg_suffix(b, prio, seq);
    return b->len - start;
}

size_t jkey_w(struct buf *b, int64_t due, uint8_t prio, uint64_t seq)
{
    size_t start = b->len;
    buf_putc(b, KEY_W);
    put_u64(b, (uint64_t)(due < 0 ? 0 : due));
    jkey_msg_suffix(b, prio, seq);
    return b->len - start;
}

int64_t jkey_w_due(const char *k, size_t kl)
{
    return kl == 1 + 8 + MSG_KEY_SUFFIX ? (int64_t)jkey_get_be64(k + 1) : 0;
}

size_t jkey_s(struct buf *b, const char *cid, size_t cl, const char *name, size_t nl)
{
    size_t start = b->len;
    buf_putc(b, KEY_S);
    buf_append(b, cid, cl);
    buf_putc(b, '\0');
    buf_append(b, name, nl);
    return b->len - start;
}

/* ------------------------------------------------------------ messages */

/* How many bytes journal_encode_msg writes for m. */
static size_t encoded_msg_len(const struct msg *m)
{
    size_t n = 8 + 8 + 8 + 1 + 1 + 4 + strlen(m->id) + 4 + strlen(m->dest) + 4;
    for (uint32_t i = 0; i < m->nheaders; i++)
        n += 4 + m->headers[i].name_len + 4 + m->headers[i].value_len;
    return n + 4 + m->body_len;
}

void journal_encode_msg(struct buf *b, const struct msg *m)
{
    put_u64(b, m->seq);
    put_u64(b, (uint64_t)m->timestamp);
    put_u64(b, (uint64_t)m->expires);
    put_u8(b, m->priority);
    put_u8(b, m->persistent ? 1 : 0);
    put_str(b, m->id);
    put_str(b, m->dest);
    put_u32(b, m->nheaders);
    for (uint32_t i = 0; i < m->nheaders; i++) {
        put_strn(b, m->headers[i].name, m->headers[i].name_len);
        put_strn(b, m->headers[i].value, m->headers[i].value_len);
    }
    put_strn(b, m->body, m->body_len);
}

/* An encoded message starts: u64 seq, u64 timestamp, u64 expires, u8 priority. */
uint64_t journal_msg_seq(const char *data, size_t len)
{
    return len >= 8 ? jkey_get_be64(data) : 0;
}

int64_t journal_msg_expires(const char *data, size_t len)
{
    return len >= 24 ? (int64_t)jkey_get_be64(data + 16) : 0;
}

uint8_t journal_msg_priority(const char *data, size_t len)
{
    return len >= 25 ? (uint8_t)data[24] : 0;
}

static bool has_nul(struct jstr s)
{
    return s.len && memchr(s.p, '\0', s.len) != NULL;
}

struct msg *journal_decode_msg(const char *data, size_t len)
{
    struct rd r = {data, len, false};
    uint64_t seq = get_u64(&r);
    int64_t ts = (int64_t)get_u64(&r);
    int64_t exp = (int64_t)get_u64(&r);
    uint8_t prio = get_u8(&r);
    uint8_t pers = get_u8(&r);
    struct jstr id = get_str(&r), dest = get_str(&r);
    uint32_t nh = get_u32(&r);
    /* Only what journal_encode_msg writes: a flag of 0 or 1, and no NUL in
     * a string that is a C string or a header line once decoded (a NUL in
     * a header would end the MESSAGE frame it is written into). */
    if (r.bad || nh > r.left / 8 || prio >= MSG_PRIORITIES || pers > 1 || has_nul(id) || has_nul(dest))
        return NULL;
    struct stomp_header *hs = calloc(nh ? nh : 1, sizeof *hs);
    char *strs = malloc(r.left + 2 * nh + id.len + dest.len + 2);
    if (!hs || !strs)
        abort();
    char *sp = strs;
    for (uint32_t i = 0; i < nh; i++) {
        struct jstr k = get_str(&r), v = get_str(&r);
        if (!r.bad && (has_nul(k) || has_nul(v)))
            r.bad = true;
        if (r.bad)
            break;
        memcpy(sp, k.p, k.len);
        sp[k.len] = '\0';
        hs[i].name = sp;
        hs[i].name_len = k.len;
        sp += k.len + 1;
        memcpy(sp, v.p, v.len);
        sp[v.len] = '\0';
        hs[i].value = sp;
        hs[i].value_len = v.len;
        sp += v.len + 1;
    }
    struct jstr body = get_str(&r);
    struct msg *m = NULL;
    if (!r.bad && r.left == 0) {
        char *ids = sp;
        memcpy(ids, id.p, id.len);
        ids[id.len] = '\0';
        char *ds = ids + id.len + 1;
        memcpy(ds, dest.p, dest.len);
        ds[dest.len] = '\0';
        m = msg_new(ds, ids, seq, ts, pers != 0, prio, exp, hs, nh, body.p, body.len);
    }
    free(hs);
    free(strs);
    return m;
}

/* ------------------------------------------------------------ building */

void jb_init(struct journal_builder *jb)
{
    memset(jb, 0, sizeof *jb);
}

void jb_free(struct journal_builder *jb)
{
    buf_free(&jb->b);
    jb->nops = 0;
}

bool jb_empty(const struct journal_builder *jb)
{
    return jb->nops == 0;
}

static void op_start(struct journal_builder *jb, enum journal_op t)
{
    if (jb->b.len == 0) {
        char zero[JOURNAL_HEADER_LEN] = {0};
        buf_append(&jb->b, zero, sizeof zero);
    }
    put_u8(&jb->b, (uint8_t)t);
    jb->nops++;
}

void jb_enqueue(struct journal_builder *jb, const char *dest, const char *const *targets, uint32_t ntargets,
                const char *dup_id, const struct msg *m)
{
    /* room for the whole op at once (and the entry's header, and the
     * coalesced ops that may follow): one allocation, not a doubling per
     * field and a copy of the message */
    size_t ml = encoded_msg_len(m);
    size_t need = JOURNAL_HEADER_LEN + 1 + 4 + strlen(dest) + 4 + 4 + (dup_id ? strlen(dup_id) : 0) + 4 + ml + 256;
    for (uint32_t i = 0; i < ntargets; i++)
        need += 8 + strlen(targets[2 * i]) + strlen(targets[2 * i + 1]);
    buf_reserve(&jb->b, need);
    op_start(jb, JOP_ENQUEUE);
    put_str(&jb->b, dest);
    put_u32(&jb->b, ntargets);
    for (uint32_t i = 0; i < ntargets; i++) {
        put_str(&jb->b, targets[2 * i]);
        put_str(&jb->b, targets[2 * i + 1]);
    }
    put_str(&jb->b, dup_id);
    put_u32(&jb->b, (uint32_t)ml);
    size_t at = jb->b.len;
    journal_encode_msg(&jb->b, m);
    assert(jb->b.len - at == ml);
    (void)at;
}

void jb_dequeue(struct journal_builder *jb, const char *dest, uint8_t prio, uint64_t seq)
{
    op_start(jb, JOP_DEQUEUE);
    put_str(&jb->b, dest);
    put_u8(&jb->b, prio);
    put_u64(&jb->b, seq);
}

void jb_dequeue_sub(struct journal_builder *jb, const char *client_id, const char *name, uint8_t prio, uint64_t seq)
{
    op_start(jb, JOP_DEQUEUE_SUB);
    put_str(&jb->b, client_id);
    put_str(&jb->b, name);
    put_u8(&jb->b, prio);
    put_u64(&jb->b, seq);
}

void jb_delivered(struct journal_builder *jb, char kind, const char *a, const char *b, uint8_t prio, uint64_t seq,
                  uint32_t deliveries)
{
    op_start(jb, JOP_DELIVERED);
    put_u8(&jb->b, (uint8_t)kind);
    put_str(&jb->b, a);
    put_str(&jb->b, b);
    put_u8(&jb->b, prio);
    put_u64(&jb->b, seq);
    put_u32(&jb->b, deliveries);
}

void jb_sub_create(struct journal_builder *jb, const char *client_id, const char *name, const char *topic,
                   const char *selector, const char *reader)
{
    op_start(jb, JOP_SUB_SET);
    put_str(&jb->b, client_id);
    put_str(&jb->b, name);
    put_str(&jb->b, topic);
    put_str(&jb->b, selector);
    put_str(&jb->b, reader);
}

void jb_sub_delete(struct journal_builder *jb, const char *client_id, const char *name)
{
    op_start(jb, JOP_SUB_DELETE);
    put_str(&jb->b, client_id);
    put_str(&jb->b, name);
}

void jb_purge(struct journal_builder *jb, const char *dest)
{
    op_start(jb, JOP_PURGE);
    put_str(&jb->b, dest);
}

void jb_dup_forget(struct journal_builder *jb, const char *dup_id)
{
    op_start(jb, JOP_DUP_FORGET);
    put_str(&jb->b, dup_id);
}

void jb_sched_add(struct journal_builder *jb, const char *id, int64_t due, const char *dup_id, const struct msg *m)
{
    op_start(jb, JOP_SCHED_ADD);
    put_str(&jb->b, id);
    put_u64(&jb->b, (uint64_t)due);
    put_str(&jb->b, dup_id);
    struct buf mb = {0};
    journal_encode_msg(&mb, m);
    put_strn(&jb->b, mb.data, mb.len);
    buf_free(&mb);
}

void jb_sched_del(struct journal_builder *jb, const char *id, int64_t due, uint8_t prio, uint64_t seq)
{
    op_start(jb, JOP_SCHED_DEL);
    put_str(&jb->b, id);
    put_u64(&jb->b, (uint64_t)due);
    put_u8(&jb->b, prio);
    put_u64(&jb->b, seq);
}

void jb_dest_keep(struct journal_builder *jb, const char *dest)
{
    op_start(jb, JOP_DEST_KEEP);
    put_str(&jb->b, dest);
}

void jb_dest_forget(struct journal_builder *jb, const char *dest)
{
    op_start(jb, JOP_DEST_FORGET);
    put_str(&jb->b, dest);
}

char *jb_finish(struct journal_builder *jb, uint64_t epoch, uint64_t lsn, size_t *len)
{
    char *p = jb->b.data;
    p[0] = JOURNAL_FORMAT;
    jkey_be64(p + 1, epoch);
    jkey_be64(p + 9, lsn);
    p[17] = (char)(jb->nops >> 24);
    p[18] = (char)(jb->nops >> 16);
    p[19] = (char)(jb->nops >> 8);
    p[20] = (char)jb->nops;
    *len = jb->b.len;
    jb->b.data = NULL;
    jb->b.len = jb->b.cap = jb->b.off = 0;
    jb->nops = 0;
    return p;
}

/* ------------------------------------------------------------ reading */

static int read_op(struct rd *r, struct journal_op_view *op)
{
    memset(op, 0, sizeof *op);
    op->type = (enum journal_op)get_u8(r);
    switch (op->type) {
    case JOP_ENQUEUE: {
        op->a = get_str(r);
        op->ntargets = get_u32(r);
        const char *t0 = r->p;
        for (uint32_t i = 0; i < op->ntargets && !r->bad; i++) {
            get_str(r);
            get_str(r);
        }
        op->targets.p = t0;
        op->targets.len = (uint32_t)(r->p - t0);
        op->d = get_str(r);
        op->msg = get_str(r);
        break;
    }
    case JOP_DEQUEUE:
        op->a = get_str(r);
        op->prio = get_u8(r);
        op->seq = get_u64(r);
        break;
    case JOP_DEQUEUE_SUB:
        op->a = get_str(r);
        op->b = get_str(r);
        op->prio = get_u8(r);
        op->seq = get_u64(r);
        break;
    case JOP_DELIVERED:
        op->kind = (char)get_u8(r);
        op->a = get_str(r);
        op->b = get_str(r);
        op->prio = get_u8(r);
        op->seq = get_u64(r);
        op->count = get_u32(r);
        if (op->kind != KEY_Q && op->kind != KEY_T)
            r->bad = true;
        break;
    case JOP_SUB_CREATE:
    case JOP_SUB_SET:
        op->a = get_str(r);
        op->b = get_str(r);
        op->c = get_str(r);
        op->d = get_str(r);
        if (op->type == JOP_SUB_SET)
            op->e = get_str(r);
        break;
    case JOP_SUB_DELETE:
        op->a = get_str(r);
        op->b = get_str(r);
        break;
    case JOP_PURGE:
    case JOP_DUP_FORGET:
    case JOP_DEST_KEEP:
    case JOP_DEST_FORGET:
        op->a = get_str(r);
        break;
    case JOP_SCHED_ADD:
        op->a = get_str(r);
        op->due = (int64_t)get_u64(r);
        op->d = get_str(r);
        op->msg = get_str(r);
        if (op->a.len == 0)
            r->bad = true;
        break;
    case JOP_SCHED_DEL:
        op->a = get_str(r);
        op->due = (int64_t)get_u64(r);
        op->prio = get_u8(r);
        op->seq = get_u64(r);
        if (op->a.len == 0)
            r->bad = true;
        break;
    default:
        r->bad = true;
    }
    return r->bad ? -EINVAL : 0;
}

bool journal_next_target(struct jstr *targets, struct jstr *cid, struct jstr *name)
{
    if (targets->len == 0)
        return false;
    struct rd r = {targets->p, targets->len, false};
    *cid = get_str(&r);
    *name = get_str(&r);
    if (r.bad)
        return false;
    targets->len -= (uint32_t)(r.p - targets->p);
    targets->p = r.p;
    return true;
}

int journal_decode(const char *data, size_t len, struct journal_entry *out)
{
    struct rd r = {data, len, false};
    if (get_u8(&r) != JOURNAL_FORMAT)
        return -EINVAL;
    out->epoch = get_u64(&r);
    out->lsn = get_u64(&r);
    out->nops = get_u32(&r);
    if (r.bad)
        return -EINVAL;
    out->ops = r.p;
    out->ops_len = r.left;
    struct journal_op_view op;
    for (uint32_t i = 0; i < out->nops; i++)
        if (read_op(&r, &op) != 0)
            return -EINVAL;
    return r.left == 0 ? 0 : -EINVAL;
}

int journal_foreach_op(const struct journal_entry *e, journal_op_fn fn, void *ctx)
{
    struct rd r = {e->ops, e->ops_len, false};
    struct journal_op_view op;
    for (uint32_t i = 0; i < e->nops; i++) {
        if (read_op(&r, &op) != 0)
            return -EINVAL;
        int rc = fn(ctx, &op);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ apply */

struct apply_ctx {
    const struct journal_sink *sink;
    struct buf k;
};

static int apply_op(void *arg, const struct journal_op_view *op)
{
    struct apply_ctx *x = arg;
    const struct journal_sink *s = x->sink;
    x->k.len = x->k.off = 0;
    switch (op->type) {
    case JOP_ENQUEUE: {
        uint64_t seq = journal_msg_seq(op->msg.p, op->msg.len);
        uint8_t prio = journal_msg_priority(op->msg.p, op->msg.len);
        if (op->ntargets == 0) {
            jkey_q(&x->k, op->a.p, op->a.len, prio, seq);
            s->put_msg(s->ctx, x->k.data, x->k.len, op->msg.p, op->msg.len);
        } else {
            struct jstr t = op->targets, cid, name;
            while (journal_next_target(&t, &cid, &name)) {
                x->k.len = x->k.off = 0;
                jkey_t(&x->k, cid.p, cid.len, name.p, name.len, prio, seq);
                s->put_msg(s->ctx, x->k.data, x->k.len, op->msg.p, op->msg.len);
            }
        }
        if (op->d.len) {
            x->k.len = x->k.off = 0;
            buf_putc(&x->k, KEY_D);
            buf_append(&x->k, op->d.p, op->d.len);
            s->put(s->ctx, x->k.data, x->k.len, op->msg.p, 8); /* value: the message's seq */
        }
        break;
    }
    case JOP_DEQUEUE:
        jkey_q(&x->k, op->a.p, op->a.len, op->prio, op->seq);
        s->del_msg(s->ctx, x->k.data, x->k.len);
        break;
    case JOP_DEQUEUE_SUB:
        jkey_t(&x->k, op->a.p, op->a.len, op->b.p, op->b.len, op->prio, op->seq);
        s->del_msg(s->ctx, x->k.data, x->k.len);
        break;
    case JOP_DELIVERED: {
        buf_putc(&x->k, KEY_R);
        if (op->kind == KEY_Q)
            jkey_q(&x->k, op->a.p, op->a.len, op->prio, op->seq);
        else
            jkey_t(&x->k, op->a.p, op->a.len, op->b.p, op->b.len, op->prio, op->seq);
        char v[4] = {(char)(op->count >> 24), (char)(op->count >> 16), (char)(op->count >> 8), (char)op->count};
        s->put(s->ctx, x->k.data, x->k.len, v, 4);
        break;
    }
    case JOP_SUB_CREATE:
    case JOP_SUB_SET: {
        jkey_s(&x->k, op->a.p, op->a.len, op->b.p, op->b.len);
        struct buf v = {0};
        put_strn(&v, op->c.p, op->c.len);
        put_strn(&v, op->d.p, op->d.len);
        if (op->type == JOP_SUB_SET)
            put_strn(&v, op->e.p, op->e.len);
        s->put(s->ctx, x->k.data, x->k.len, v.data, v.len);
        buf_free(&v);
        break;
    }
    case JOP_SUB_DELETE:
        jkey_s(&x->k, op->a.p, op->a.len, op->b.p, op->b.len);
        s->del(s->ctx, x->k.data, x->k.len);
        x->k.len = x->k.off = 0;
        jkey_t_prefix(&x->k, op->a.p, op->a.len, op->b.p, op->b.len);
        s->del_msgs(s->ctx, x->k.data, x->k.len);
        break;
    case JOP_PURGE:
        jkey_q_prefix(&x->k, op->a.p, op->a.len);
        s->del_msgs(s->ctx, x->k.data, x->k.len);
        break;
    case JOP_DUP_FORGET:
        buf_putc(&x->k, KEY_D);
        buf_append(&x->k, op->a.p, op->a.len);
        s->del(s->ctx, x->k.data, x->k.len);
        break;
    case JOP_SCHED_ADD: {
        uint64_t seq = journal_msg_seq(op->msg.p, op->msg.len);
        uint8_t prio = journal_msg_priority(op->msg.p, op->msg.len);
        jkey_w(&x->k, op->due, prio, seq);
        s->put_msg(s->ctx, x->k.data, x->k.len, op->msg.p, op->msg.len);
        x->k.len = x->k.off = 0;
        buf_putc(&x->k, KEY_WID);
        buf_append(&x->k, op->a.p, op->a.len);
        char v[17];
        jkey_be64(v, (uint64_t)(op->due < 0 ? 0 : op->due));
        v[8] = (char)prio;
        jkey_be64(v + 9, seq);
        s->put(s->ctx, x->k.data, x->k.len, v, sizeof v);
        if (op->d.len) {
            x->k.len = x->k.off = 0;
            buf_putc(&x->k, KEY_D);
            buf_append(&x->k, op->d.p, op->d.len);
            s->put(s->ctx, x->k.data, x->k.len, op->msg.p, 8);
        }
        break;
    }
    case JOP_SCHED_DEL:
        jkey_w(&x->k, op->due, op->prio, op->seq);
        s->del_msg(s->ctx, x->k.data, x->k.len);
        x->k.len = x->k.off = 0;
        buf_putc(&x->k, KEY_WID);
        buf_append(&x->k, op->a.p, op->a.len);
        s->del(s->ctx, x->k.data, x->k.len);
        break;
    case JOP_DEST_KEEP:
    case JOP_DEST_FORGET:
        buf_putc(&x->k, KEY_N);
        buf_append(&x->k, op->a.p, op->a.len);
        if (op->type == JOP_DEST_KEEP)
            s->put(s->ctx, x->k.data, x->k.len, "", 0);
        else
            s->del(s->ctx, x->k.data, x->k.len);
        break;
    }
    return 0;
}

uint64_t journal_checksum(const char *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

void journal_tip_set(struct journal_tip *t, const char *data, size_t len)
{
    t->copy.off = t->copy.len = 0;
    buf_append(&t->copy, data, len);
    t->sum = 0;
}

void journal_tip_reset(struct journal_tip *t, uint64_t sum)
{
    buf_free(&t->copy);
    t->sum = sum;
}

uint64_t journal_tip_sum(struct journal_tip *t)
{
    if (buf_used(&t->copy)) {
        t->sum = journal_checksum(buf_head(&t->copy), buf_used(&t->copy));
        t->copy.off = t->copy.len = 0; /* settled; the room stays for the next */
    }
    return t->sum;
}

int journal_apply(const char *data, size_t len, const struct journal_sink *sink)
{
    struct journal_entry e;
    if (journal_decode(data, len, &e) != 0)
        return -EINVAL;
    struct apply_ctx x = {sink, {0}};
    int rc = journal_foreach_op(&e, apply_op, &x);
    buf_free(&x.k);
    return rc;
}
