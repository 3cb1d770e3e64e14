/* libFuzzer harness: journal decoding, as a slave (journal_decode on what
 * the master sent) and recovery (journal_foreach_op, journal_decode_msg,
 * journal_apply) read entries. An entry journal_decode accepts must walk
 * the same ops with journal_foreach_op, every field inside the entry; a
 * message journal_decode_msg accepts must encode back to the same bytes;
 * journal_apply of an accepted entry must succeed. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/buf.h"
#include "stompd/journal.h"
#include "stompd/msg.h"

struct walk {
    const char *start, *end;
    uint32_t ops;
};

static void inside(const struct walk *w, struct jstr s)
{
    if (s.len && (s.p < w->start || s.p + s.len > w->end))
        abort();
}

static void msg_round_trip(const char *data, size_t len)
{
    struct msg *m = journal_decode_msg(data, len);
    if (!m)
        return;
    struct buf b = {0};
    journal_encode_msg(&b, m);
    if (b.len != len || memcmp(b.data, data, len))
        abort();
    buf_free(&b);
    msg_unref(m);
}

static int on_op(void *ctx, const struct journal_op_view *op)
{
    struct walk *w = ctx;
    w->ops++;
    inside(w, op->a);
    inside(w, op->b);
    inside(w, op->c);
    inside(w, op->d);
    inside(w, op->targets);
    inside(w, op->msg);
    if (op->type == JOP_ENQUEUE) {
        struct jstr t = op->targets, cid, name;
        uint32_t n = 0;
        while (journal_next_target(&t, &cid, &name)) {
            inside(w, cid);
            inside(w, name);
            n++;
        }
        if (n != op->ntargets || t.len != 0)
            abort();
        msg_round_trip(op->msg.p, op->msg.len);
    }
    return 0;
}

static void sink_put(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    if (!kl)
        abort();
    (*(size_t *)ctx) += kl + vl;
}

static void sink_del(void *ctx, const char *k, size_t kl)
{
    if (!kl)
        abort();
}

static void sink_del_prefix(void *ctx, const char *p, size_t pl)
{
    if (!pl)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = (const char *)data;
    /* an entry as it is: the master's, or the store's L keys */
    struct journal_entry e;
    if (journal_decode(d, size, &e) == 0) {
        struct walk w = {d, d + size, 0};
        if (e.ops < d || e.ops + e.ops_len != d + size)
            abort();
        if (journal_foreach_op(&e, on_op, &w) != 0 || w.ops != e.nops)
            abort();
        size_t bytes = 0;
        struct journal_sink sink = {.put = sink_put, .del = sink_del, .put_msg = sink_put, .del_msg = sink_del,
                                    .del_msgs = sink_del_prefix, .ctx = &bytes};
        if (journal_apply(d, size, &sink) != 0)
            abort();
        if (journal_checksum(d, size) == 0)
            abort();
    } else {
        size_t bytes = 0;
        struct journal_sink sink = {.put = sink_put, .del = sink_del, .put_msg = sink_put, .del_msg = sink_del,
                                    .del_msgs = sink_del_prefix, .ctx = &bytes};
        if (journal_apply(d, size, &sink) == 0)
            abort(); /* apply must refuse what decode refuses */
    }
    /* the same bytes as an encoded message (the store's Q and T values) */
    msg_round_trip(d, size);
    return 0;
}
