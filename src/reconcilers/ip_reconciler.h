/*
 * ip_reconciler - the network domain: the IPPool and IPClaim reconcilers
 * (API.md "Network: IPPool / IPClaim"). ip_reconciler.c explains the design:
 * informers, controllers, the allocation protocol, crash safety, pool
 * deletion and the orphan sweep.
 *
 * The entry point is ip_setup, called once by the manager (rec_env.h). The
 * rest of this header is the pure part of the reconcilers -- names, address
 * choice, status building, condition messages -- exposed for unit tests; none
 * of it does I/O.
 *
 * Status codes are kc_status values: 0, KC_ERR_INVALID_ARG, KC_ERR_NOMEM.
 * Threading: every function here is reentrant and may run on any thread.
 */
#ifndef PROVISIO_IP_RECONCILER_H
#define PROVISIO_IP_RECONCILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "ipam.h"
#include "rec_env.h"

/*
 * Register the informers, indexes, handlers and the three controllers of the
 * domain ("ipclaim", "ippool", "ipreservation") with the manager. Main
 * thread, once. 0 or a negative kc_status (nothing of the domain runs then;
 * what was registered with the manager is freed by it).
 */
int ip_setup(const rec_env *env);

/* ---- condition reasons ------------------------------------------------------ */

#define IPR_REASON_ALLOCATED "Allocated"                    /* claim: Ready=True */
#define IPR_REASON_POOL_NOT_FOUND "PoolNotFound"            /* claim */
#define IPR_REASON_POOL_TERMINATING "PoolTerminating"       /* claim */
#define IPR_REASON_POOL_EXHAUSTED "PoolExhausted"           /* claim */
#define IPR_REASON_ADDRESS_IN_USE "AddressInUse"            /* claim, spec.address */
#define IPR_REASON_ADDRESS_UNAVAILABLE "AddressUnavailable" /* claim, spec.address */
#define IPR_REASON_INVALID_SPEC "InvalidSpec"               /* claim or pool */
#define IPR_REASON_VALID "Valid"                            /* pool: Ready=True */
#define IPR_REASON_TERMINATING "Terminating"                /* pool being deleted, in use */

/* The label selector of the Reservations this domain watches (the labels are
 * set by rec_reserve_acquire: REC_LABEL_POOL_KIND, REC_LABEL_POOL). */
#define IPR_RESERVATION_SELECTOR "provisio.dev/pool-kind=IPPool"

/* ---- reservation names ------------------------------------------------------ */

/*
 * The Reservation name of address a of IPPool pool_name, as the Reservation
 * CRD requires: "ippool.<pool>.<address>" (ippool.demo-v4.10-20-0-5,
 * ippool.demo-v6.fd00-10-0-0-0-0-0-100). *out malloc'd (caller frees).
 * 0, KC_ERR_INVALID_ARG (pool_name not a DNS label), KC_ERR_NOMEM.
 */
int ipr_reservation_name(const char *pool_name, ipam_addr a, char **out);

/*
 * Reverse of ipr_reservation_name: pool (malloc'd, may be NULL to skip) and
 * address. KC_ERR_INVALID_ARG for any other name (another pool kind, a
 * non-canonical encoding); outputs untouched then. KC_ERR_NOMEM.
 */
int ipr_reservation_name_parse(const char *name, char **pool_out, ipam_addr *addr_out);

/* ---- pools ------------------------------------------------------------------ */

/*
 * Build the ipam pool of an IPPool object (borrowed; may be a store object:
 * only read). *out owned by the caller (ipam_pool_free). An unusable spec is
 * KC_ERR_INVALID_ARG with err filled as ipam_pool_new does (a spec that is
 * not even shaped like one -- no spec.cidr, an exclude entry that is not a
 * string -- gets a message too). err may be NULL.
 */
int ipr_pool_from_obj(json_object *pool, ipam_pool **out, ipam_error *err);

/* The status counts of a pool (API.md: total, allocated, available). */
typedef struct ipr_pool_counts {
    int64_t total;     /* the allocatable set, saturating at INT64_MAX */
    int64_t allocated; /* addresses of the pool's Reservations */
    int64_t available; /* total minus the held addresses inside the allocatable set, >= 0 */
} ipr_pool_counts;

/*
 * Counts from the pool (NULL when its spec is invalid: total and available
 * are 0) and the used set of the pool's Reservations (NULL = none).
 */
void ipr_pool_counts_of(const ipam_pool *pool, const ipam_used *used, ipr_pool_counts *out);

/* The same from the used set's size and how many of it lie in the pool's
 * allocatable set (ipam_used_count_in_pool), when the caller keeps those. */
void ipr_pool_counts_from(const ipam_pool *pool, uint64_t n_used, ipam_u128 held_in_pool,
                          ipr_pool_counts *out);

/* ---- choosing addresses ----------------------------------------------------- */

/*
 * The first allocatable address of pool at or after offset hint (wrapping)
 * that is neither in used (may be NULL), nor in reserved (may be NULL: the
 * spec.address of claims of the pool, kept for them), nor one of
 * skip[0..n_skip) (addresses known taken that the used set does not show
 * yet: 409s of this reconcile, Reservations created but not yet cached).
 * false when there is none. O((n_skip + reserved addresses crossed + 1) *
 * next_free).
 */
bool ipr_pick_address(const ipam_pool *pool, const ipam_used *used, const ipam_used *reserved,
                      const ipam_addr *skip, size_t n_skip, ipam_u128 hint, ipam_addr *out);

/*
 * Of the n (>= 1) addresses a claim holds, the one to keep (its index): the
 * one in status.address (status_addr, may be NULL), else the one asked for in
 * spec.address (spec_addr, may be NULL), else the lowest. Every replica
 * chooses the same one from the same facts.
 */
size_t ipr_choose_keep(const ipam_addr *held, size_t n, const ipam_addr *status_addr,
                       const ipam_addr *spec_addr);

/*
 * The claim reason for a spec.address that ipam_check refused: an address the
 * pool could never hand out (other family, outside the cidr) is InvalidSpec;
 * one inside the cidr that the pool keeps back (network, broadcast, gateway,
 * excluded, outside rangeStart..rangeEnd) is AddressUnavailable.
 */
const char *ipr_check_reason(ipam_check_result r);

/* ---- status ----------------------------------------------------------------- */

/*
 * The status of a claim that holds address a of the pool: pool, address
 * ("10.20.0.5/24"), gateway and routes (spec.gateway and a copy of
 * spec.routes of pool_obj), Ready=True reason Allocated. pool_obj (borrowed,
 * may be a store object) and pool may be NULL when the IPPool is gone or
 * unusable: then the address keeps the prefix of cached_status.address when
 * that names the same address (else /32 or /128) and gateway and routes are
 * kept from cached_status. Conditions other than Ready are carried over from
 * cached_status (borrowed, may be NULL or a store object), and Ready keeps its
 * lastTransitionTime unless its status changes. *out is new (caller puts).
 */
int ipr_claim_status_ready(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                           const ipam_pool *pool, ipam_addr a, int64_t generation, time_t now,
                           json_object **out);

/*
 * The status of a claim that holds nothing: no pool, address, gateway or
 * routes; Ready=False with reason and message. Conditions carried over as
 * above. *out is new (caller puts).
 */
int ipr_claim_status_pending(json_object *cached_status, const char *reason, const char *message,
                             int64_t generation, time_t now, json_object **out);

/*
 * A pool's status: counts and the Ready condition (cond_status "True" or
 * "False", reason, message). Other conditions carried over from
 * cached_status (borrowed, may be NULL or a store object). *out new.
 */
int ipr_pool_status(json_object *cached_status, const ipr_pool_counts *counts,
                    const char *cond_status, const char *reason, const char *message,
                    int64_t generation, time_t now, json_object **out);

/* ---- messages (each *out malloc'd; 0 or KC_ERR_NOMEM) ----------------------- */

/* "IPPool demo does not exist; the claim gets an address once it is created" */
int ipr_msg_pool_not_found(const char *pool_name, char **out);
/* "IPPool demo is being deleted and hands out no new addresses" */
int ipr_msg_pool_terminating(const char *pool_name, char **out);
/* "IPPool demo cannot be used: <ipam message>" */
int ipr_msg_pool_invalid(const char *pool_name, const char *why, char **out);
/* "IPPool demo has no free address: all 2 allocatable addresses are held; ..." */
int ipr_msg_exhausted(const char *pool_name, int64_t total, char **out);
/* "10.20.0.50 of IPPool demo is held by IPClaim ns/name; ..." */
int ipr_msg_in_use(const char *addr, const char *pool_name, const char *holder_ns,
                   const char *holder_name, char **out);
/* "spec.address 10.20.0.0 cannot be allocated from IPPool demo: <why>" */
int ipr_msg_address_refused(const char *addr, const char *pool_name, const char *why, char **out);
/* "holds 10.20.0.5/24 of IPPool demo" */
int ipr_msg_allocated(const char *cidr_addr, const char *pool_name, char **out);
/*
 * The message of a pool that is being deleted while n_held addresses are
 * held: names the first holders ("ns/name 10.20.0.5", n_holders of them,
 * borrowed) and says how many more.
 */
int ipr_msg_pool_in_use(int64_t n_held, const char *const *holders, size_t n_holders, char **out);
/* Ready=True message of a pool; mentions the cap when total saturated. */
int ipr_msg_pool_valid(const ipam_pool *pool, char **out);

#endif
