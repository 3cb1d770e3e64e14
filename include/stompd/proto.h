/* The STOMP command table and the one place where a handler's failure
 * becomes an ERROR frame and a close. Handlers return 0 (done: proto sends
 * the receipt), PROTO_RECEIPT_TAKEN (the handler answers the receipt
 * itself, later) or a negative code after proto_fail() named the problem. */
#ifndef STOMPD_PROTO_H
#define STOMPD_PROTO_H

#include <stdbool.h>

#include "stompd/frame.h"

struct conn;

#define PROTO_RECEIPT_TAKEN 1

void proto_handle(struct conn *c, struct frame *f);
/* Record why a frame failed; returns -EPROTO for the handler to return. */
int proto_fail(const char *message, const char *detail_fmt, ...) __attribute__((format(printf, 2, 3)));
/* Answer a receipt now, or in order behind the connection's waiting ops. */
void proto_receipt(struct conn *c, const char *receipt);
void proto_conn_closed(struct conn *c);

/* Handlers (handle_*.c). in_txn_replay: the frame comes from a COMMIT. */
int handle_connect(struct conn *c, struct frame *f);
int handle_disconnect(struct conn *c, struct frame *f);
int handle_send(struct conn *c, struct frame *f);
int handle_subscribe(struct conn *c, struct frame *f);
int handle_unsubscribe(struct conn *c, struct frame *f);
int handle_ack(struct conn *c, struct frame *f);
int handle_nack(struct conn *c, struct frame *f);
int handle_begin(struct conn *c, struct frame *f);
int handle_commit(struct conn *c, struct frame *f);
int handle_abort(struct conn *c, struct frame *f);

/* Shared by the handlers and COMMIT's replay of held frames: with a batch
 * op, persistent effects join that op's journal entry. */
struct op;
int send_message(struct conn *c, struct frame *f, struct op *batch);
int ack_message(struct conn *c, struct frame *f, bool nack, bool lenient);

/* Client-ids in use by open connections (one connection per client-id). */
int proto_claim_client_id(struct conn *c, const char *client_id) __attribute__((warn_unused_result));

#endif
