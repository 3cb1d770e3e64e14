/* The STOMP command table and the one place where a handler's failure
 * becomes an ERROR frame and a close. Handlers return 0 (done: proto sends
 * the receipt), PROTO_RECEIPT_TAKEN (the handler answers the receipt
 * itself, later) or a negative code after proto_fail() named the problem.
 * A handler whose effect was journaled sets *lsn to the entry a receipt
 * must wait for (proto_journaled): the receipt then goes once that entry
 * is committed. */
#ifndef STOMPD_PROTO_H
#define STOMPD_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "stompd/frame.h"

struct conn;

#define PROTO_RECEIPT_TAKEN 1

void proto_handle(struct conn *c, struct frame *f);
/* Record why a frame failed; returns -EPROTO for the handler to return. */
int proto_fail(const char *message, const char *detail_fmt, ...) __attribute__((format(printf, 2, 3)));
/* A handler that returned PROTO_RECEIPT_TAKEN and fails later (CONNECT
 * after its password check): the failure proto_fail() named becomes ERROR
 * (with receipt-id when given) and close, as for every handler. */
void proto_error(struct conn *c, const char *receipt);
/* Answer a receipt now, or in order behind the connection's waiting ops. */
void proto_receipt(struct conn *c, const char *receipt);
void proto_conn_closed(struct conn *c);
/* A CONNECT waiting for its password check is forgotten (the connection
 * closes). */
void proto_login_cancel(struct conn *c);

/* Handlers (handle_*.c). */
int handle_connect(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_disconnect(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_send(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_subscribe(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_unsubscribe(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_ack(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_nack(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_begin(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_commit(struct conn *c, struct frame *f, uint64_t *lsn);
int handle_abort(struct conn *c, struct frame *f, uint64_t *lsn);

/* Shared by the handlers and COMMIT's replay of held frames: with a batch
 * op, persistent effects join that op's journal entry. */
struct op;
int send_message(struct conn *c, struct frame *f, struct op *batch);
/* A SEND a transaction holds, checked again before COMMIT applies any of
 * it: why it cannot be applied now, or NULL. */
const char *send_check_held(struct conn *c, struct frame *f);
/* Returns 1 when the ack journaled something, 0 when not, or negative. */
int ack_message(struct conn *c, struct frame *f, bool nack, bool lenient);
/* The frame journaled something: the lsn its receipt (if it asked for
 * one) must wait for, 0 when it needs none. */
uint64_t proto_journaled(const struct frame *f);

/* Client-ids in use by open connections (one connection per client-id;
 * with stomp.client_id_takeover the same user's newer connection wins).
 * c->who must be set. */
int proto_claim_client_id(struct conn *c, const char *client_id) __attribute__((warn_unused_result));

#endif
