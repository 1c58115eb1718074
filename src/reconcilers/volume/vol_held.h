/*
 * vol_held - what each StoragePool's Reservations add up to, as the cache
 * shows them, kept up to date by the Reservation informer's handler instead
 * of recomputed by every pool reconcile.
 *
 * A pool reconcile needs three things of its pool's cached Reservations: how
 * many there are (a pool being deleted waits for none), the bytes and the
 * count of the valid ones (the ledger's recount check, status.volumes), and
 * whether the Reservation an admission made has landed (that admission
 * leaves status.inFlight). Reading them from the store parsed every
 * Reservation of the pool on every pool event (each decompressed and parsed
 * from the compact store): O(Reservations of the pool) per event. Here the
 * handler counts each Reservation once when it comes and uncounts it when it
 * changes or goes, from the object it is told went (the informer hands the
 * old state with an update or a delete), so a reconcile reads a pool's sums
 * and whether its in-flight admissions landed in O(admissions).
 *
 * Which Reservations count is exactly what the store reading counted: every
 * Reservation with spec.pool.name is one of the pool's; those with spec.slot,
 * an integer spec.bytes, metadata.creationTimestamp and spec.admittedUntil
 * are looked up by (slot, admittedUntil); of those, the valid ones (bytes > 0,
 * vol_resv_valid) are summed.
 *
 * Lag: the handler runs on the informer's dispatch thread, after the store
 * changed and before the pool is enqueued for the change (its handler is
 * registered first), so a reconcile for a change sees the change. A
 * snapshot is made under the lock the handler takes: one consistent view,
 * as one store read was.
 *
 * Out of memory in the handler cannot be returned: the aggregate is then
 * marked broken for good and vol_held_sum answers false; the caller falls
 * back to reading the store.
 *
 * Thread-safe.
 */
#ifndef PROVISIO_VOL_HELD_H
#define PROVISIO_VOL_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "vol_ledger.h"

typedef struct vol_held vol_held;

/* One pool's Reservations, summed. */
typedef struct vol_held_sum {
    size_t n;            /* every cached Reservation of the pool */
    int64_t valid_bytes; /* spec.bytes of the valid ones */
    int64_t valid_count; /* how many are valid */
} vol_held_sum;

/* 0 or KC_ERR_NOMEM. */
int vol_held_new(vol_held **out);
void vol_held_free(vol_held *h);

/* Count the Reservation r (borrowed), as the cache now shows it. */
void vol_held_add(vol_held *h, json_object *r);

/* Uncount r: the same state of the Reservation an earlier add counted. */
void vol_held_remove(vol_held *h, json_object *r);

/* An update: uncount old_obj, count new_obj. */
void vol_held_update(vol_held *h, json_object *old_obj, json_object *new_obj);

/*
 * One moment's view of pool: its sums in *out (all zero when it has none)
 * and, for each of the n admissions asked (asked may be NULL when n is 0),
 * landed[i]: a Reservation of the pool with spec.slot asked[i].uid and
 * spec.admittedUntil asked[i].until is counted. Both come from one reading
 * (a ledger's recount check compares them: read apart, a Reservation
 * counted between the two would look like a leak and cost a recount).
 * False when the aggregate broke (out of memory): read the store instead.
 * A pair that cannot be looked up for want of memory reads as not landed
 * (the admission stays in flight: the safe side).
 */
bool vol_held_snapshot(vol_held *h, const char *pool, const vol_admission *asked, size_t n,
                       vol_held_sum *out, bool *landed);

/* Reads the fields of a Reservation the sums use: false when one is missing
 * (the Reservation is then counted in n only). */
bool vol_held_read(json_object *r, const char **uid, int64_t *bytes, int64_t *until, bool *valid);

#endif
