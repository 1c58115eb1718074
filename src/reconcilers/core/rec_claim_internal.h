/*
 * rec_claim_internal - what the claim reconcile's files share: rec_claim.c
 * (the reconcile: pool, finalizer, allocate, delete), rec_claim_hold.c
 * (acquire, keep, complete, rename, replace and give back slots) and
 * rec_claim_status.c (the claim's status writes and Events). One run of the
 * reconcile is a claim_run; nothing in it outlives the run.
 */
#ifndef PROVISIO_REC_CLAIM_INTERNAL_H
#define PROVISIO_REC_CLAIM_INTERNAL_H

#include "rec_domain_internal.h"
#include "rec_reserve.h"

#include "rec_util.h"

/* A list of slots with their Reservation names and pools. */
typedef struct slot_list {
    char **names;
    char **slots;
    char **pools;
    size_t n;
} slot_list;

typedef struct claim_run {
    rec_domain *d;
    const rec_domain_def *def;
    const char *logger;
    kc_ref ref;
    json_object *claim; /* store object (store_obj_put) */
    json_object *cur;   /* what status writes go against: claim, or the server's newer copy */
    bool cur_owned;     /* cur is ours to json_object_put */
    const char *uid, *wanted;
    const char *pool_name; /* the pool: spec's, chosen, or the one held from */
    char *pool_owned;      /* pool_name when not borrowed from the claim */
    int64_t generation;
    int64_t count;         /* slots wanted */
    void *want;            /* def->want_open's, or NULL */
    json_object *pool_obj; /* store object or NULL (pools_compact: NULL when open is set) */
    rec_open_pool *open;   /* rec_pool_open's for the cached pool, or NULL */
    bool pool_cached;      /* the pool is in the cache */
    void *pool;            /* open->pool: NULL when missing or invalid */
    const char *pool_problem;
    slot_list held;
    slot_list acquired; /* Reservations this run created or found ours on the server */
    bool latest;        /* cur is the server's copy as of this run (read or written) */
    bool pool_chosen;   /* pool_name was chosen by this run (choose_pool) */
} claim_run;

typedef enum fill_outcome {
    FILL_DONE,   /* got all it needed */
    FILL_NONE,   /* the pool has no free slot for it: nothing of this round kept */
    FILL_RESULT, /* *res says what next (requeue, error); what was got stays */
} fill_outcome;

/* ---- rec_claim_hold.c ---------------------------------------------------- */

void rec_slot_list_clear(slot_list *l);
bool rec_slot_list_has(const slot_list *l, const char *name);
/* Add name/slot/pool unless name is there. false on allocation failure. */
bool rec_slot_list_add(slot_list *l, const char *name, const char *slot, const char *pool);

/* The cached pool is being deleted. */
bool rec_claim_pool_deleting(const claim_run *r);
/* r->held := what the claim holds: its Reservations in the cache and in flight. */
int rec_claim_load_held(claim_run *r);
/* Forget the claim's in-flight Reservations of pool. */
void rec_claim_forget_inflight(claim_run *r, const char *pool);
/* Give back Reservation name (rec_reserve_release with the claim's uid). */
int rec_claim_release(claim_run *r, const char *name, bool *released, kc_error *err);
/* Give back the slots of l when the claim's latest status shows none of them. */
ctl_result rec_claim_release_unshown(claim_run *r, const slot_list *l, const char *what);
/* Acquire slot of r->pool_name: 0, REC_TAKEN (holder filled) or a kc_status. */
int rec_claim_acquire(claim_run *r, const char *slot, slot_list *got, rec_reservation *holder,
                      kc_error *err);
/* Acquire need more slots of the pool into got, skipping those of have. */
fill_outcome rec_claim_fill(claim_run *r, const slot_list *have, size_t need, slot_list *got,
                            ctl_result *res);
/* After a round that acquired got: settle what is held, then rec_claim_holds. */
ctl_result rec_claim_after_round(claim_run *r, const slot_list *got);
/* The claim holds slots: keep, give back, complete or replace, write the status. */
ctl_result rec_claim_holds(claim_run *r);

/* ---- rec_claim_status.c -------------------------------------------------- */

/* The status of what writes go against (r->cur). */
json_object *rec_claim_cur_status(claim_run *r);
/* r->cur := obj (owned), the one before released when it was ours. */
void rec_claim_set_cur(claim_run *r, json_object *obj);
/* Every slot the claim's status names (a list of malloc'd strings). */
int rec_claim_status_slots(claim_run *r, char ***out, size_t *n);
void rec_claim_strings_free(char **v, size_t n);
/* The pool status says the claim holds from. */
const char *rec_claim_status_pool(claim_run *r);
void rec_claim_event(claim_run *r, const char *type, const char *reason, const char *message);
/* Not Ready for reason with message (consumed) from a builder that returned rc. */
ctl_result rec_claim_pending_msg(claim_run *r, const char *reason, int rc, char *message);
/* Ready with slots[0..n) (n == r->count). */
ctl_result rec_claim_ready(claim_run *r, char *const *slots, size_t n);
/* Not Ready: the pool has not enough free slots (the domain's message). */
ctl_result rec_claim_exhausted(claim_run *r);

#endif
