/*
 * rec_reserve - the allocation lock: one Reservation object
 * (provisio.dev/v1alpha1, cluster-scoped, crds/provisio.dev_reservations.yaml)
 * per held slot of a pool, named deterministically from (pool kind, pool,
 * slot) by the domain and created with POST, so the API server decides who holds a slot.
 * rec_reserve.c explains why every function is safe to retry at any point,
 * from any replica, after a crash anywhere.
 *
 * Reconcilers read Reservations from their informer cache to know what is
 * used (spec.pool.*, spec.slot, spec.claim.uid; index with store_index_field
 * on "spec.claim.uid" to find what a claim already holds) and write them
 * only through this module.
 *
 * Status codes: 0 ok, REC_TAKEN (positive: not an error, the slot is held by
 * another claim), or a negative kc_status (what the API server answered, or
 * KC_ERR_INVALID_ARG / KC_ERR_NOMEM / KC_ERR_DECODE). A KC_ERR_CONFLICT means
 * "things moved under us, requeue".
 *
 * Threading: every function may be called from any thread at once (they only
 * use the shared kc_client and their arguments). Each call blocks on its
 * requests.
 */
#ifndef PROVISIO_REC_RESERVE_H
#define PROVISIO_REC_RESERVE_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "kc_client.h"

/* The slot is held by another claim (rec_reserve_acquire). */
#define REC_TAKEN 1

#define REC_POOL_KIND_IP "IPPool"
#define REC_POOL_KIND_DEVICE "DevicePool"
#define REC_POOL_KIND_STORAGE "StoragePool"

/* Labels put on every Reservation (for label selectors and kubectl). */
#define REC_LABEL_POOL_KIND "provisio.dev/pool-kind"
#define REC_LABEL_POOL "provisio.dev/pool"

/* The Reservation collection (cluster-scoped), for informers and requests. */
extern const kc_ref rec_reservations_ref;

/* Who holds (or wants) a slot. Strings borrowed. */
typedef struct rec_claim_ref {
    const char *kind;       /* IPClaim, DeviceClaim, Volume, PersistentVolumeClaim */
    const char *namespace_; /* required */
    const char *name;       /* required */
    const char *uid;        /* required: metadata.uid of the claim */
} rec_claim_ref;

/* A Reservation read back: every string malloc'd, owned by the struct. */
typedef struct rec_reservation {
    char *name;
    char *uid; /* the Reservation's own metadata.uid */
    char *resource_version;
    char *pool_kind;
    char *pool_name;
    char *slot;
    char *claim_kind;
    char *claim_namespace;
    char *claim_name;
    char *claim_uid;
    int64_t bytes;        /* spec.bytes, 0 when absent */
    char *created;        /* metadata.creationTimestamp (may be NULL) */
    char *admitted_until; /* spec.admittedUntil, StoragePool only (may be NULL) */
} rec_reservation;

/*
 * Fill out from a Reservation object (borrowed; may be a store object: only
 * read). Fields absent from obj are NULL; metadata.name, spec.slot and
 * spec.claim.uid are required (KC_ERR_DECODE without them). out is cleared
 * first. 0, KC_ERR_DECODE, KC_ERR_NOMEM.
 */
int rec_reservation_parse(json_object *obj, rec_reservation *out);

/* Free the strings of r and zero it. r may be NULL. */
void rec_reservation_clear(rec_reservation *r);

/*
 * The Reservation name of a DevicePool or StoragePool slot:
 * "<lowercase pool kind>.<pool>.<slot>". pool_name must be a DNS label and
 * slot match ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ (<= 63), as the CRD requires.
 * An IPPool slot is an address, named by the network domain (ip/ip_names.h):
 * KC_ERR_INVALID_ARG here. *out malloc'd, caller frees; canonical_slot (may
 * be NULL) gets a copy of slot. 0, KC_ERR_INVALID_ARG, KC_ERR_NOMEM.
 */
int rec_reserve_name(const char *pool_kind, const char *pool_name, const char *slot, char **out,
                     char **canonical_slot);

/*
 * Take slot of the pool for claim (all borrowed): the Reservation `name` (the
 * lock: each domain names its slots so that two claims of one slot always
 * make the same name; a DNS subdomain) with spec.slot = slot (canonical).
 * bytes > 0 is written as spec.bytes (required for StoragePool). POST the
 * Reservation:
 *   201                -> 0: acquired;
 *   409 AlreadyExists  -> GET it: held by claim->uid -> 0 (a retry of an
 *                         acquire that already happened, e.g. before a crash);
 *                         held by another claim -> REC_TAKEN;
 *                         gone again in between -> POST again (a few times,
 *                         then KC_ERR_CONFLICT).
 * A Reservation of this claim that is being deleted gives KC_ERR_CONFLICT
 * (requeue: it will be gone shortly).
 * holder (may be NULL) is filled on 0 (our Reservation as the server has it)
 * and on REC_TAKEN (the other claim's); the caller clears it. err (may be
 * NULL) holds the failed request's error on a negative return.
 */
int rec_reserve_acquire(kc_client *c, const char *pool_kind, const char *pool_name,
                        const char *name, const char *slot, const rec_claim_ref *claim,
                        int64_t bytes, rec_reservation *holder, kc_error *err);

/*
 * What a StoragePool Reservation carries besides rec_reserve_acquire's
 * fields (src/reconcilers/volume/README.md). Strings borrowed; NULL: absent.
 */
typedef struct rec_reserve_extra {
    const char *admitted_until; /* spec.admittedUntil (RFC 3339) */
    const char *node;           /* label provisio.dev/node (the agent's selector) */
    const char *finalizer;      /* metadata.finalizers: [finalizer] */
    const char *scope_key;      /* spec.<scope_key>: the slot's scope (rec_domain.h)... */
    const char *scope_label;    /* ...also as this label (may be NULL)... */
    const char *scope;          /* ...and its value */
    const char *label;          /* one more label (may be NULL)... */
    const char *label_value;    /* ...and its value */
} rec_reserve_extra;

#define REC_LABEL_NODE "provisio.dev/node"

/* rec_reserve_acquire with extra (may be NULL) in the POSTed body. */
int rec_reserve_acquire_extra(kc_client *c, const char *pool_kind, const char *pool_name,
                              const char *name, const char *slot, const rec_claim_ref *claim,
                              int64_t bytes, const rec_reserve_extra *extra,
                              rec_reservation *holder, kc_error *err);

/*
 * Free the Reservation `name` if, and only if, claim_uid holds it: GET it,
 * check spec.claim.uid, then DELETE with preconditions {uid of the
 * Reservation, its resourceVersion}, so a slot released and re-acquired by
 * another claim in the meantime is never freed. Already gone (NotFound) or
 * held by another claim: 0 with *released false (there is nothing of ours to
 * free). A precondition failure re-reads and tries again (a few times, then
 * KC_ERR_CONFLICT). *released (may be NULL) says whether this call deleted it.
 */
int rec_reserve_release(kc_client *c, const char *name, const char *claim_uid, bool *released,
                        kc_error *err);

/*
 * Whether claim_uid holds the Reservation `name` as the API server has it now
 * (a GET, for a slot only a cache says the claim holds): *held true when it
 * exists, names claim_uid and is not being deleted. NotFound is 0 with *held
 * false; any other error of the GET is returned (err filled).
 */
int rec_reserve_held(kc_client *c, const char *name, const char *claim_uid, bool *held,
                     kc_error *err);

/*
 * For a Reservation (borrowed; from the cache, may be a store object) whose
 * claim is not in the claims cache: re-read the claim from the API server
 * (GET by spec.claim namespace/name; the cache may lag). NotFound, or a claim
 * of another uid (deleted and recreated under the same name) -> release the
 * Reservation with rec_reserve_release(name, spec.claim.uid); the same uid ->
 * keep it (0, *released false). Any other error is returned and nothing is
 * freed. *released (may be NULL) says whether the Reservation was deleted.
 */
int rec_reserve_sweep_orphan(kc_client *c, json_object *reservation, bool *released, kc_error *err);

/*
 * The resource of a claim kind (IPClaim, DeviceClaim, Volume,
 * PersistentVolumeClaim) in *out: group, version, resource (static strings);
 * namespace_/name/subresource are NULL. 0 or KC_ERR_INVALID_ARG.
 */
int rec_claim_resource(const char *claim_kind, kc_ref *out);

#endif
