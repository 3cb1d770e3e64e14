/* The store. store.type = memory keeps nothing on disk: persistent
 * messages behave like non-persistent ones and nothing waits. */
#include "config.h"

#include <string.h>

#include "stompd/config.h"
#include "stompd/log.h"
#include "stompd/store.h"

int store_open(char *err, size_t errlen)
{
    log_warn("store.type = memory: persistent messages are lost when the broker stops");
    return 0;
}

void store_close(void) {}
bool store_persistent(void) { return false; }
const char *store_describe(void) { return "memory"; }
void store_batch_begin(void) {}
uint64_t store_batch_end(void) { return 0; }
uint64_t store_last_lsn(void) { return 0; }
bool store_enqueue(struct dest *d, struct msg *m) { return false; }
void store_dequeue(struct qentry *e) {}
void store_delivered(struct qentry *e) {}
void store_durable_created(struct durable *d) {}
void store_durable_deleted(struct durable *d) {}
void store_dlq_move(struct qentry *e, struct msg *copy) {}
void store_purge(struct dest *d) {}
void store_dest_deleted(struct dest *d) {}
