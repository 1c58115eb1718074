/*
 * vol_ledger - the capacity ledger of one StoragePool: status.allocatedBytes
 * and status.inFlight, changed only by a PUT of the pool's status at the
 * resourceVersion it was read at (README.md beside this file: the protocol
 * and why the sizes held never add up past the capacity).
 *
 * Pure: parses a pool object, applies admissions or a recount in memory,
 * writes the fields back into a status object. The caller does the requests
 * (the PUT, the LIST of a recount) and owns the clock. Times are seconds
 * since the epoch, the resolution of metav1.Time.
 *
 * Not thread-safe: a vol_ledger belongs to the reconcile that read it.
 */
#ifndef PROVISIO_VOL_LEDGER_H
#define PROVISIO_VOL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define VOL_ADMIT_TTL 15     /* s an admission waits for its Reservation */
#define VOL_ADMIT_GRACE 30   /* s of clock skew allowed (recount, release) */
#define VOL_INFLIGHT_MAX 256 /* entries in status.inFlight (the CRD's maxItems) */

/* One admission: status.inFlight[i]. */
typedef struct vol_admission {
    char *uid;     /* owned */
    int64_t bytes; /* > 0 */
    int64_t until; /* admittedUntil */
} vol_admission;

typedef struct vol_ledger {
    int64_t capacity;  /* spec.capacity in bytes */
    int64_t allocated; /* status.allocatedBytes */
    bool known;        /* false: no usable ledger in status; recount first */
    vol_admission *inflight;
    size_t n_inflight;
} vol_ledger;

/*
 * The ledger of a pool object (borrowed; not kept). A status without
 * allocatedBytes, or with an inFlight entry the schema would not allow, gives
 * known = false: nothing may be admitted until a recount rebuilds it (a
 * status wiped by hand must not read as "nothing held"). Returns 0,
 * KC_ERR_INVALID_ARG with *why (owned, for a condition message) when
 * spec.capacity is not a positive whole number of bytes, or KC_ERR_NOMEM.
 */
int vol_ledger_read(json_object *pool, vol_ledger *l, char **why);

/* Frees what vol_ledger_read allocated; l is then empty. NULL is a no-op. */
void vol_ledger_close(vol_ledger *l);

/* capacity - allocated, or 0 when the capacity was lowered below it. */
int64_t vol_ledger_available(const vol_ledger *l);

/* The admission of uid, or NULL. Borrowed from l. */
const vol_admission *vol_ledger_find(const vol_ledger *l, const char *uid);

typedef enum vol_admit_result {
    VOL_ADMITTED,       /* a new entry: allocated += bytes */
    VOL_ADMITTED_AGAIN, /* uid already had one: kept as it is (see vol_ledger_admit) */
    VOL_NO_ROOM,        /* allocated + bytes > capacity: nothing changed */
    VOL_LEDGER_FULL,    /* VOL_INFLIGHT_MAX admissions in flight: try after they land */
    VOL_LEDGER_UNKNOWN, /* known == false: recount first */
} vol_admit_result;

/*
 * Admits bytes for uid at time now: a new entry with deadline now +
 * VOL_ADMIT_TTL. An entry of uid already there is never renewed: a
 * Reservation made from an admission carries its deadline, and that is how
 * the ledger tells it from an older Reservation of the same name (one being
 * released, or a stale cache's). Past its deadline the caller waits for a
 * recount to drop it, then admits again. *changed (may be NULL) is set when l
 * differs from what was read (a write is needed). KC_ERR_NOMEM leaves l as it was.
 */
int vol_ledger_admit(vol_ledger *l, const char *uid, int64_t bytes, int64_t now,
                     vol_admit_result *result, bool *changed);

/*
 * Whether the Reservation of an admission exists: held(ctx, uid, until) true
 * means the caller's cache shows the Reservation of that name with that
 * admittedUntil (the Reservation made from this admission: an older one of
 * the same name carries an older deadline).
 */
typedef bool (*vol_landed_fn)(void *ctx, const char *uid, int64_t until);

/*
 * Drops the admissions whose Reservation the writer's cache shows (so every
 * later consistent LIST shows it too, as long as it exists). allocated is
 * unchanged. Returns how many were dropped.
 */
size_t vol_ledger_forget_landed(vol_ledger *l, vol_landed_fn landed, void *ctx);

/* One Reservation of the pool, from a consistent LIST of the API server. */
typedef struct vol_listed {
    const char *uid; /* spec.slot: the claim's uid */
    int64_t bytes;   /* spec.bytes */
    int64_t created; /* metadata.creationTimestamp */
    int64_t until;   /* spec.admittedUntil */
} vol_listed;

/* A Reservation counts only if the API server created it by its deadline. */
bool vol_resv_valid(int64_t created, int64_t until);

/*
 * Whether a Reservation with deadline until may be deleted at time now: only
 * once until + VOL_ADMIT_GRACE has passed. Before that, a replica slow to
 * create it from the same admission (whose entry may be gone: the ledger
 * drops an admission once its Reservation is listed) could create it again
 * after the delete, valid, and counted nowhere.
 */
bool vol_release_due(int64_t until, int64_t now);

/*
 * The recount: t0 is the time taken before the LIST was sent. allocated
 * becomes the bytes of the valid listed Reservations plus those of the
 * admissions that have no listed Reservation (same uid and admittedUntil)
 * and whose deadline +
 * VOL_ADMIT_GRACE is after t0; the other admissions are dropped; known
 * becomes true. Listed Reservations with bytes <= 0 are ignored.
 */
void vol_ledger_recount(vol_ledger *l, const vol_listed *listed, size_t n, int64_t t0);

/*
 * Whether a recount is due, judged from the writer's cache: held_bytes is
 * the sum of the valid Reservations the cache shows and landed says which
 * admissions landed. Due when the ledger is unknown, or when allocated
 * differs from held_bytes plus the bytes of admissions not landed (more:
 * something was freed or an admission expired; less: the status was edited
 * by hand). A lagging cache only makes it due early; the recount itself
 * reads the API server.
 */
bool vol_ledger_recount_due(const vol_ledger *l, int64_t held_bytes, vol_landed_fn landed,
                            void *ctx);

/*
 * Writes allocatedBytes, availableBytes, capacityBytes and inFlight (absent
 * when empty) into a status object (borrowed). Nothing is written for an
 * unknown ledger. 0 or KC_ERR_NOMEM.
 */
int vol_ledger_write(const vol_ledger *l, json_object *status);

#endif
