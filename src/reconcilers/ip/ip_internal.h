/*
 * ip_internal - the network domain's own part, inside src/reconcilers/ip:
 * Reservation names of addresses (ip_names.c), pools, used sets and address
 * choice (ip_pool.c), claim and pool status (ip_status.c), condition messages
 * (ip_msg.c), and the table the core runs the domain with (ip_domain.c).
 * None of it does I/O.
 *
 * Status codes are kc_status values: 0, KC_ERR_INVALID_ARG, KC_ERR_NOMEM.
 * Threading: every function here is reentrant and may run on any thread.
 */
#ifndef PROVISIO_IP_INTERNAL_H
#define PROVISIO_IP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "ip.h"
#include "ipam.h"
#include "rec_domain.h"

/* ---- condition reasons (API.md) --------------------------------------------- */

#define IP_REASON_ALLOCATED "Allocated"                    /* claim: Ready=True */
#define IP_REASON_POOL_NOT_FOUND "PoolNotFound"            /* claim */
#define IP_REASON_POOL_TERMINATING "PoolTerminating"       /* claim */
#define IP_REASON_POOL_EXHAUSTED "PoolExhausted"           /* claim */
#define IP_REASON_ADDRESS_IN_USE "AddressInUse"            /* claim, spec.address */
#define IP_REASON_ADDRESS_UNAVAILABLE "AddressUnavailable" /* claim, spec.address */
#define IP_REASON_INVALID_SPEC "InvalidSpec"               /* claim or pool */
#define IP_REASON_VALID "Valid"                            /* pool: Ready=True */
#define IP_REASON_TERMINATING "Terminating"                /* pool being deleted, in use */
#define IP_REASON_OVERLAPPING "OverlappingPools"           /* pool: Overlapping=True */
#define IP_REASON_NO_OVERLAP "NoOverlap"                   /* pool: Overlapping=False */

/* The pool condition naming the other pools of its network it shares
 * addresses with. */
#define IP_COND_OVERLAPPING "Overlapping"

/* The label selector of the Reservations this domain watches (the labels are
 * set by rec_reserve_acquire: REC_LABEL_POOL_KIND, REC_LABEL_POOL). */
#define IP_RESERVATION_SELECTOR "provisio.dev/pool-kind=IPPool"

/* The table the core runs the domain with (ip_domain.c). */
extern const rec_domain_def ip_domain_def;

/* ---- ip_names.c: Reservation names ---------------------------------------------- */

/* The network of a pool without spec.network, and of Reservations without
 * the network label (made before networks existed). */
#define IP_DEFAULT_NETWORK "default"
/* The label naming a Reservation's network. */
#define IP_LABEL_NETWORK "provisio.dev/network"

/*
 * The Reservation name of address a in network (IPPool spec.network), as the
 * Reservation CRD requires: "ipnet.<network>.<address>"
 * (ipnet.default.10-20-0-5, ipnet.default.fd00-10-0-0-0-0-0-100): the lock of
 * the address across every pool of the network. *out malloc'd (caller
 * frees). 0, KC_ERR_INVALID_ARG (network not a DNS label), KC_ERR_NOMEM.
 */
int ip_names_reservation(const char *network, ipam_addr a, char **out);

/*
 * Reverse of ip_names_reservation: network (malloc'd, may be NULL to skip)
 * and address. KC_ERR_INVALID_ARG for any other name (another pool kind, a
 * legacy name, a non-canonical encoding); outputs untouched then.
 * KC_ERR_NOMEM.
 */
int ip_names_parse(const char *name, char **network_out, ipam_addr *addr_out);

/* The name versions before networks made, "ippool.<pool>.<address>", and its
 * reverse (the same contracts). Read and moved, never made any more. */
int ip_names_legacy(const char *pool_name, ipam_addr a, char **out);
int ip_names_legacy_parse(const char *name, char **pool_out, ipam_addr *addr_out);

/* def->slot_name: the name in network of slot, an address in any form
 * ipam_addr_parse takes; *canonical (may be NULL) its canonical text
 * ("fd00:10::5"). */
int ip_names_slot(const char *network, const char *slot, char **name, char **canonical);

/* ---- ip_pool.c: pools, used sets, choosing addresses ----------------------------- */

/*
 * Build the ipam pool of an IPPool object (borrowed; may be a store object:
 * only read). *out owned by the caller (ipam_pool_free). An unusable spec is
 * KC_ERR_INVALID_ARG with err filled as ipam_pool_new does (a spec that is
 * not even shaped like one -- no spec.cidr, an exclude entry that is not a
 * string -- gets a message too). err may be NULL.
 */
int ip_pool_from_obj(json_object *pool, ipam_pool **out, ipam_error *err);

/* Counts from the pool (NULL when its spec is invalid: total and available
 * are 0) and the used set of the pool's Reservations (NULL = none). */
void ip_pool_counts_of(const ipam_pool *pool, const ipam_used *used, rec_pool_counts *out);

/* The same from the used set's size and how many of it lie in the pool's
 * allocatable set (ipam_used_count_in_pool), when the caller keeps those. */
void ip_pool_counts_from(const ipam_pool *pool, uint64_t n_used, ipam_u128 held_in_pool,
                         rec_pool_counts *out);

/*
 * The first allocatable address of pool at or after offset hint (wrapping)
 * that is neither in used (may be NULL), nor in reserved (may be NULL: the
 * spec.address of claims of the pool, kept for them), nor one of
 * skip[0..n_skip) (addresses known taken that the used set does not show
 * yet: 409s of this reconcile, Reservations created but not yet cached).
 * false when there is none. O((n_skip + reserved addresses crossed + 1) *
 * next_free).
 */
bool ip_pool_pick(const ipam_pool *pool, const ipam_used *used, const ipam_used *reserved,
                  const ipam_addr *skip, size_t n_skip, ipam_u128 hint, ipam_addr *out);

/*
 * Of the n (>= 1) addresses a claim holds, the one to keep (its index): the
 * one in status.address (status_addr, may be NULL), else the one asked for in
 * spec.address (spec_addr, may be NULL), else the lowest. Every replica
 * chooses the same one from the same facts.
 */
size_t ip_pool_choose_keep(const ipam_addr *held, size_t n, const ipam_addr *status_addr,
                           const ipam_addr *spec_addr);

/*
 * The claim reason for a spec.address that ipam_check refused: an address the
 * pool could never hand out (other family, outside the cidr) is InvalidSpec;
 * one inside the cidr that the pool keeps back (network, broadcast, gateway,
 * excluded, outside rangeStart..rangeEnd) is AddressUnavailable.
 */
const char *ip_pool_check_reason(ipam_check_result r);

/*
 * The domain's used set (def->set_*): the addresses of a pool's Reservations,
 * and how many of them lie in the allocatable set of the pool's current spec
 * (kept as addresses come and go, rebuilt when the spec's generation moves),
 * so a pool reconcile does not walk every run of the set.
 */
typedef struct ip_pool_set {
    ipam_used *used;
    ipam_pool *counted; /* the spec counted against; NULL until the first count */
    char *counted_uid;
    int64_t counted_gen;
    uint64_t in_pool;
} ip_pool_set;

int ip_pool_set_new(void **set);
void ip_pool_set_free(void *set);
int ip_pool_set_update(void *set, const char *slot, const char *holder, bool add);
void ip_pool_set_counts(void *set, json_object *pool_obj, const void *pool, rec_pool_counts *out);

/*
 * def->scope_counts: available of the pool counts what the whole network
 * holds inside its allocatable set (set: the pool's own Reservations,
 * scope_set: the network's), so available never promises an address held
 * through an overlapping pool. allocated stays the pool's own.
 */
void ip_pool_scope_counts(const void *set, const void *scope_set, const void *pool,
                          rec_pool_counts *out);
/* def->pool_overlap: ipam_pool_overlap. */
bool ip_pool_overlap(const void *a, const void *b);

/* ---- ip_status.c -------------------------------------------------------------- */

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
int ip_status_claim_ready(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                          const ipam_pool *pool, ipam_addr a, int64_t generation, time_t now,
                          json_object **out);

/*
 * A pool's status: counts and the Ready condition (cond_status "True" or
 * "False", reason, message), and, when counts name the network
 * (counts->scope), the Overlapping condition from counts->overlaps. Other
 * conditions carried over from cached_status (borrowed, may be NULL or a
 * store object). *out new.
 */
int ip_status_pool(json_object *cached_status, const rec_pool_counts *counts,
                   const char *cond_status, const char *reason, const char *message,
                   int64_t generation, time_t now, json_object **out);

/* The address status.address ("10.20.0.5/24") names, or false. */
bool ip_status_address(json_object *status, ipam_addr *out);

/* ---- ip_msg.c: messages (each *out malloc'd; 0 or KC_ERR_NOMEM) ------------- */

/* "IPPool demo does not exist; the claim gets an address once it is created" */
int ip_msg_pool_not_found(const char *pool_name, char **out);
/* "IPPool demo is being deleted and hands out no new addresses" */
int ip_msg_pool_terminating(const char *pool_name, char **out);
/* "IPPool demo cannot be used: <ipam message>" */
int ip_msg_pool_invalid(const char *pool_name, const char *why, char **out);
/* "IPPool demo has no free address: all 2 allocatable addresses are held; ..." */
int ip_msg_exhausted(const char *pool_name, int64_t total, char **out);
/* "10.20.0.50 of IPPool demo is held by IPClaim ns/name; ..." */
int ip_msg_in_use(const char *addr, const char *pool_name, const char *holder_ns,
                  const char *holder_name, const char *holder_pool, char **out);
/* "spec.address 10.20.0.0 cannot be allocated from IPPool demo: <why>" */
int ip_msg_address_refused(const char *addr, const char *pool_name, const char *why, char **out);
/* "holds 10.20.0.5/24 of IPPool demo" */
int ip_msg_allocated(const char *cidr_addr, const char *pool_name, char **out);
/*
 * The message of a pool that is being deleted while n_held addresses are
 * held: names the first holders ("ns/name 10.20.0.5", n_holders of them,
 * borrowed) and says how many more.
 */
int ip_msg_pool_in_use(int64_t n_held, const char *const *holders, size_t n_holders, char **out);
/* The Overlapping condition's message: the first names[0..n) (at most 5
 * named, then how many more) of network, or that none overlaps (n 0). */
int ip_msg_overlapping(const char *network, const char *const *names, size_t n, char **out);
/* Ready=True message of a pool; mentions the cap when total saturated. */
int ip_msg_pool_valid(const ipam_pool *pool, char **out);

#endif
