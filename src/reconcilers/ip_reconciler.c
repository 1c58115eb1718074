/*
 * ip_reconciler - IPPool and IPClaim (API.md "Network: IPPool / IPClaim").
 *
 * What a user sees
 * ----------------
 * An IPClaim names an IPPool (and optionally one address). The operator puts
 * its finalizer on the claim, holds one address of the pool for it and writes
 * status.address ("10.20.0.5/24", the pool's prefix), gateway, routes and
 * pool, with Ready=True reason Allocated. A claim that cannot get an address
 * stays Ready=False with a reason and a message, and is retried by itself
 * when that can change:
 *   PoolNotFound       no such IPPool            -> when the pool is created
 *   PoolTerminating    the pool is being deleted -> when it is gone (then
 *                                                   PoolNotFound) or recreated
 *   InvalidSpec        the pool's spec is unusable, or spec.address can never
 *                      be in the pool (other family, outside the cidr)
 *                                                -> when the pool's spec changes
 *   AddressUnavailable spec.address is the network/broadcast address, the
 *                      gateway, excluded, or outside rangeStart..rangeEnd
 *                                                -> when the pool's spec changes
 *   AddressInUse       spec.address is held by another claim (named in the
 *                      message)                  -> when that claim lets go
 *   PoolExhausted      every allocatable address is held
 *                                                -> as soon as one is released
 * Events (kubectl describe) mark every change of reason: Allocated, Released,
 * PoolExhausted, ... Deleting a claim releases its address, then removes the
 * finalizer.
 *
 * An IPPool's status says total, allocated and available (counted from the
 * Reservations of the pool) and Ready=True (reason Valid), or Ready=False
 * reason InvalidSpec with the reason from ipam. Deleting a pool works like
 * PVC protection: the pool carries the operator's finalizer; while claims
 * still hold addresses of it the pool stays, Ready=False reason Terminating
 * with "N addresses still held by claims: ns/a 10.20.0.5, ...", those claims
 * keep their addresses (Ready=True), claims without an address get nothing
 * new (PoolTerminating). When the last address is released the finalizer is
 * removed and the pool goes; waiting claims then show PoolNotFound and get an
 * address if a pool of that name is created again. (Deleting a pool while the
 * operator is not running waits for the operator, as PVCs wait for the
 * controller manager.)
 *
 * Allocation: the Reservation is the truth
 * ----------------------------------------
 * Each held address is one cluster-scoped Reservation
 * "ippool.<pool>.<address>" (rec_reserve.h) naming the claim by uid, created
 * with POST: of any number of creators (workers, replicas, a retry after a
 * crash) exactly one gets 201. The claim's status is derived from the
 * Reservations that name its uid and is rewritten from them on every
 * reconcile; nothing else is trusted.
 *
 * To pick an address the claim reconcile asks ipam_next_free from a hint that
 * is a hash of the claim's uid (claims spread over the pool; a retry after a
 * crash tries the same address first) over the pool's used set. The used set
 * is kept per pool by a handler of the Reservations informer (add -> used,
 * delete -> free), plus "in flight" addresses: Reservations this process
 * created that the cache does not show yet (dropped when the cache shows them,
 * or after IPR_INFLIGHT_TTL), plus the addresses that answered 409 during this
 * reconcile. Addresses that claims of the pool ask for by spec.address are
 * left to them (a per-pool set kept by a claims handler), so a fixed-address
 * claim applied together with others does not lose its address to one of
 * them; one whose address a claim already held gets AddressInUse. A 409 from another claim marks
 * the address used and the next one is tried (at most IPR_ATTEMPTS, then requeue). No address ->
 * PoolExhausted; a Reservation delete event of the pool wakes the waiting claims (an index of the
 * claims store lists, per pool, the claims that are not Ready).
 *
 * Crash safety (invariant 1: kill -9 anywhere, several replicas)
 * --------------------------------------------------------------
 *  - The finalizer is added before anything is allocated, so a claim cannot
 *    disappear while it holds an address without passing through release.
 *  - Killed between the POST and the status write: the Reservation exists and
 *    names the claim's uid. The next reconcile (this process or another
 *    replica) finds it in the cache by claim uid (index "by-claim-uid") and
 *    only rewrites the status. If that cache lags, the hint leads to the same
 *    address first and the POST answers 409 with our uid: adopted, not taken
 *    twice. If status.address is set but no Reservation is cached, that
 *    address is re-acquired first (409 ours = still held).
 *  - A claim must never end up holding two addresses. Before acquiring, the
 *    reconcile looks for what the claim holds in the cache and in the in-flight
 *    set of this process. After a successful acquire it looks again; if
 *    another Reservation of the claim appeared meanwhile, the new one is
 *    released. A lagging cache in another replica could still let a claim
 *    acquire a second address (a failover within the watch's lag); the
 *    Reservation add event of the second one enqueues the claim, which keeps
 *    exactly one (the one in status.address, else spec.address, else the
 *    lowest: every replica picks the same) and releases the others. So a
 *    double hold is transient, and two claims never share an address: that
 *    only the API server decides.
 *  - Release (claim deleted) deletes with preconditions on the Reservation's
 *    uid and resourceVersion after re-reading it (rec_reserve_release), so a
 *    slot re-taken by another claim meanwhile is never freed.
 *
 * Orphans (invariant 2) and counts (invariant 3)
 * ----------------------------------------------
 * A third controller, "ipreservation", looks at every IP Reservation on add,
 * on the delete of a claim (mapped to its Reservations) and on a resync every
 * IPR_RESV_RESYNC seconds: when the claim uid it names is not in the claims
 * cache, rec_reserve_sweep_orphan re-reads the claim from the API server and
 * frees the Reservation only if the claim is gone or has another uid. Pool
 * counts come from the pool's used set, i.e. the Reservations cache.
 *
 * Informers and controllers
 * -------------------------
 *   ipclaims (all namespaces or --namespace; compact store), indexes by-pool
 *     (spec.pool), waiting-by-pool (spec.pool of claims not Ready), by-uid,
 *     requested ("<pool>|<spec.address>");
 *   ippools (cluster; shared store: few objects, read often);
 *   reservations with label provisio.dev/pool-kind=IPPool (cluster; compact
 *     store; resync IPR_RESV_RESYNC), indexes by-pool, by-claim-uid.
 *   "ipclaim"       For ipclaims. A pool added or deleted, or whose
 *                   generation or deletionTimestamp changed, enqueues all its
 *                   claims (a status-only write of the pool enqueues none). A
 *                   Reservation added that this process did not create, or
 *                   that makes its claim hold two, enqueues that claim; one
 *                   deleted enqueues its claim and the pool's waiting claims.
 *   "ippool"        For ippools; every Reservation add/delete enqueues its
 *                   pool (counts). Status writes of one pool are spaced at
 *                   least IPR_POOL_WRITE_INTERVAL apart while only the counts
 *                   change, so a storm of allocations does not become a storm
 *                   of pool writes.
 *   "ipreservation" For the Reservations (orphan sweep, above).
 * These handlers are plain informer handlers (not ctl_watch_map) so they can
 * tell a spec change from a status write and skip the periodic resync.
 * Reconciles wait (requeue after IPR_SYNC_RETRY) until those handlers have
 * seen the initial lists, so nothing is allocated from a half-built used set.
 *
 * Stale cache after our own writes. A write returns the object's new
 * resourceVersion; the versions it replaced are remembered per object uid
 * (IPR_STALE_TTL). A reconcile that finds one of them in the cache returns at
 * once: the watch event of our write follows and enqueues the key again. This
 * saves the conflicting status write (and its backoff) a stale cache would
 * otherwise cause after every finalizer patch and status write.
 *
 * Threading: reconciles run on worker threads of the three controllers,
 * handlers on the informers' dispatch threads. app->mu guards the per-pool
 * state (used set, in-flight list, last status write) and the stale map; it
 * is never held across a request, and may be held while reading a store
 * (lock order: app->mu, then a store's lock).
 */
#include "ip_reconciler.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller.h"
#include "inf_map.h"
#include "informer.h"
#include "rec_events.h"
#include "rec_reserve.h"
#include "rec_util.h"
#include "store.h"
#include "pv_clock.h"
#include "pv_json.h"

#define IPR_ATTEMPTS 8              /* addresses tried per reconcile when others win them */
#define IPR_INFLIGHT_TTL 30.0       /* s: our Reservation the cache has not shown */
#define IPR_STALE_TTL 60.0          /* s: remembered resourceVersions we replaced */
#define IPR_STALE_RVS 4             /* at most this many per object */
#define IPR_STALE_PRUNE_EVERY 10.0  /* s between sweeps of expired stale entries */
#define IPR_POOL_WRITE_INTERVAL 0.5 /* s between count-only status writes of a pool */
#define IPR_RESV_RESYNC 60.0        /* s: orphan sweep period */
#define IPR_EVENT_SENDERS 4         /* one Event a claim: keep up with a storm */
#define IPR_SYNC_RETRY 0.1          /* s: requeue while caches are not synced */
#define IPR_POOL_GONE_RETRY 1.0     /* s: cache says no Reservations, server disagrees */
#define IPR_HOLDERS_SHOWN 5         /* holders named in a Terminating message */

#define IPR_API_VERSION "provisio.dev/v1alpha1"
#define IPR_KIND_CLAIM "IPClaim"
#define IPR_KIND_POOL "IPPool"

#define IDX_BY_POOL "by-pool"
#define IDX_WAITING "waiting-by-pool"
#define IDX_CLAIM_UID "by-claim-uid"
#define IDX_REQUESTED "requested"

static const kc_ref ipr_claims_ref = {
    .group = "provisio.dev",
    .version = "v1alpha1",
    .resource = "ipclaims",
};

static const kc_ref ipr_pools_ref = {
    .group = "provisio.dev",
    .version = "v1alpha1",
    .resource = "ippools",
};

/* ==== pure parts ============================================================ */

int ipr_reservation_name(const char *pool_name, ipam_addr a, char **out)
{
    char buf[IPAM_ADDR_STRLEN];
    return rec_reserve_name(REC_POOL_KIND_IP, pool_name, ipam_addr_format(a, buf), out, NULL);
}

int ipr_reservation_name_parse(const char *name, char **pool_out, ipam_addr *addr_out)
{
    static const char prefix[] = "ippool.";
    if (!name || strncmp(name, prefix, sizeof prefix - 1) != 0)
        return KC_ERR_INVALID_ARG;
    return ipam_reservation_name_parse(name + sizeof prefix - 1, pool_out, addr_out);
}

/* Fill err with a problem and a message (NULL if memory ran out). */
static int pool_spec_error(ipam_error *err, ipam_problem problem, const char *message)
{
    if (err) {
        ipam_error_clear(err);
        err->problem = problem;
        err->message = strdup(message);
    }
    return KC_ERR_INVALID_ARG;
}

int ipr_pool_from_obj(json_object *pool, ipam_pool **out, ipam_error *err)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    const char *cidr = rec_obj_str(pool, "spec.cidr");
    if (!cidr)
        return pool_spec_error(err, IPAM_PROBLEM_CIDR_MISSING,
                               "spec.cidr is missing: write a network such as 10.20.0.0/16");
    ipam_pool_spec spec = {
        .cidr = cidr,
        .range_start = rec_obj_str(pool, "spec.rangeStart"),
        .range_end = rec_obj_str(pool, "spec.rangeEnd"),
        .gateway = rec_obj_str(pool, "spec.gateway"),
    };
    json_object *ex = rec_obj_at(pool, "spec.exclude");
    const char **list = NULL;
    size_t n = 0;
    if (ex && json_object_is_type(ex, json_type_array) && json_object_array_length(ex) > 0) {
        n = json_object_array_length(ex);
        list = calloc(n, sizeof *list);
        if (!list)
            return KC_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(ex, i);
            if (!e || !json_object_is_type(e, json_type_string)) {
                free(list);
                return pool_spec_error(err, IPAM_PROBLEM_EXCLUDE_SYNTAX,
                                       "spec.exclude holds an entry that is not a string");
            }
            list[i] = json_object_get_string(e);
        }
        spec.exclude = list;
        spec.n_exclude = n;
    }
    int rc = ipam_pool_new(&spec, out, err);
    free(list);
    return rc;
}

void ipr_pool_counts_from(const ipam_pool *pool, uint64_t n_used, ipam_u128 held_in_pool,
                          ipr_pool_counts *out)
{
    out->allocated = n_used > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)n_used;
    if (!pool) {
        out->total = 0;
        out->available = 0;
        return;
    }
    out->total = ipam_pool_total_i64(pool);
    ipam_u128 total = ipam_pool_total(pool);
    out->available = ipam_u128_to_i64_sat(held_in_pool < total ? total - held_in_pool : 0);
}

void ipr_pool_counts_of(const ipam_pool *pool, const ipam_used *used, ipr_pool_counts *out)
{
    ipr_pool_counts_from(pool, used ? ipam_used_count(used) : 0,
                         pool && used ? ipam_used_count_in_pool(pool, used) : 0, out);
}

bool ipr_pick_address(const ipam_pool *pool, const ipam_used *used, const ipam_used *reserved,
                      const ipam_addr *skip, size_t n_skip, ipam_u128 hint, ipam_addr *out)
{
    if (!pool || !out || ipam_pool_total(pool) == 0)
        return false;
    ipam_u128 h = hint;
    /* Each round either returns or steps past one skipped or reserved address,
     * so it ends after at most that many rounds (plus one). */
    uint64_t rounds = (uint64_t)n_skip + (reserved ? ipam_used_count(reserved) : 0) + 1;
    for (uint64_t round = 0; round < rounds; round++) {
        ipam_addr a;
        if (!ipam_next_free(pool, used, h, &a))
            return false;
        bool skipped = reserved && ipam_used_contains(reserved, a);
        for (size_t j = 0; j < n_skip && !skipped; j++)
            skipped = ipam_addr_cmp(skip[j], a) == 0;
        if (!skipped) {
            *out = a;
            return true;
        }
        ipam_u128 off;
        if (!ipam_addr_to_offset(pool, a, &off))
            return false;
        h = off + 1; /* next_free reduces the hint modulo total: wraps to 0 */
    }
    return false;
}

size_t ipr_choose_keep(const ipam_addr *held, size_t n, const ipam_addr *status_addr,
                       const ipam_addr *spec_addr)
{
    for (size_t i = 0; status_addr && i < n; i++)
        if (ipam_addr_cmp(held[i], *status_addr) == 0)
            return i;
    for (size_t i = 0; spec_addr && i < n; i++)
        if (ipam_addr_cmp(held[i], *spec_addr) == 0)
            return i;
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (ipam_addr_cmp(held[i], held[best]) < 0)
            best = i;
    return best;
}

const char *ipr_check_reason(ipam_check_result r)
{
    switch (r) {
    case IPAM_ADDR_OK:
        return NULL;
    case IPAM_ADDR_WRONG_FAMILY:
    case IPAM_ADDR_OUTSIDE_CIDR:
        return IPR_REASON_INVALID_SPEC;
    default:
        return IPR_REASON_ADDRESS_UNAVAILABLE;
    }
}

/* ---- small JSON helpers ------------------------------------------------------ */

/* Put a deep copy of src (borrowed, may be a store object) under key. */
static bool put_copy(json_object *o, const char *key, json_object *src)
{
    json_object *copy = NULL;
    if (json_object_deep_copy(src, &copy, NULL) != 0)
        return false;
    if (json_object_object_add(o, key, copy) != 0) {
        json_object_put(copy);
        return false;
    }
    return true;
}

/* A new status holding a copy of cached_status.conditions (if any). */
static int status_base(json_object *cached_status, json_object **out)
{
    *out = NULL;
    json_object *st = json_object_new_object();
    if (!st)
        return KC_ERR_NOMEM;
    json_object *conds = NULL;
    if (cached_status && json_object_object_get_ex(cached_status, "conditions", &conds) &&
        json_object_is_type(conds, json_type_array) && !put_copy(st, "conditions", conds)) {
        json_object_put(st);
        return KC_ERR_NOMEM;
    }
    *out = st;
    return KC_OK;
}

static const char *status_str(json_object *status, const char *key)
{
    json_object *v = NULL;
    if (!status || !json_object_object_get_ex(status, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* ---- messages ---------------------------------------------------------------- */

static int msg(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int msg(char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(out, fmt, ap);
    va_end(ap);
    if (n < 0) {
        *out = NULL;
        return KC_ERR_NOMEM;
    }
    return KC_OK;
}

int ipr_msg_pool_not_found(const char *pool_name, char **out)
{
    return msg(out, "IPPool %s does not exist; the claim gets an address once it is created",
               pool_name);
}

int ipr_msg_pool_terminating(const char *pool_name, char **out)
{
    return msg(out, "IPPool %s is being deleted and hands out no new addresses", pool_name);
}

int ipr_msg_pool_invalid(const char *pool_name, const char *why, char **out)
{
    return msg(out, "IPPool %s cannot be used: %s", pool_name, why ? why : "invalid spec");
}

int ipr_msg_exhausted(const char *pool_name, int64_t total, char **out)
{
    return msg(out,
               "IPPool %s has no free address: all %lld allocatable addresses are held; the claim "
               "gets one as soon as one is released",
               pool_name, (long long)total);
}

int ipr_msg_in_use(const char *addr, const char *pool_name, const char *holder_ns,
                   const char *holder_name, char **out)
{
    return msg(out,
               "%s of IPPool %s is held by IPClaim %s/%s; the claim gets it once that claim "
               "releases it",
               addr, pool_name, holder_ns ? holder_ns : "?", holder_name ? holder_name : "?");
}

int ipr_msg_address_refused(const char *addr, const char *pool_name, const char *why, char **out)
{
    return msg(out, "spec.address %s cannot be allocated from IPPool %s: %s", addr, pool_name,
               why ? why : "it is not allocatable");
}

int ipr_msg_allocated(const char *cidr_addr, const char *pool_name, char **out)
{
    return msg(out, "holds %s of IPPool %s", cidr_addr, pool_name);
}

int ipr_msg_pool_in_use(int64_t n_held, const char *const *holders, size_t n_holders, char **out)
{
    size_t len = 1;
    for (size_t i = 0; i < n_holders; i++)
        len += strlen(holders[i]) + 2;
    char *list = malloc(len);
    if (!list)
        return KC_ERR_NOMEM;
    list[0] = '\0';
    for (size_t i = 0; i < n_holders; i++) {
        if (i > 0)
            strcat(list, ", ");
        strcat(list, holders[i]);
    }
    int64_t more = n_held - (int64_t)n_holders;
    int rc;
    if (more > 0)
        rc = msg(out,
                 "%lld %s still held by claims: %s and %lld more; the IPPool is deleted once "
                 "they are released",
                 (long long)n_held, n_held == 1 ? "address is" : "addresses are", list,
                 (long long)more);
    else
        rc = msg(out,
                 "%lld %s still held by claims: %s; the IPPool is deleted once they are released",
                 (long long)n_held, n_held == 1 ? "address is" : "addresses are", list);
    free(list);
    return rc;
}

int ipr_msg_pool_valid(const ipam_pool *pool, char **out)
{
    ipam_u128 total = ipam_pool_total(pool);
    if (total <= (ipam_u128)INT64_MAX)
        return msg(out, "the spec is valid");
    char buf[IPAM_U128_STRLEN];
    return msg(out,
               "the spec is valid; the pool has %s addresses, more than status.total can show: "
               "total and available are capped at %lld",
               ipam_u128_format(total, buf), (long long)INT64_MAX);
}

/* ---- status builders ---------------------------------------------------------- */

int ipr_claim_status_ready(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                           const ipam_pool *pool, ipam_addr a, int64_t generation, time_t now,
                           json_object **out)
{
    if (!out || !pool_name)
        return KC_ERR_INVALID_ARG;
    json_object *st = NULL;
    int rc = status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;

    char buf[IPAM_CIDR_STRLEN];
    const char *address = NULL;
    if (pool) {
        address = ipam_pool_format_address(pool, a, buf);
    } else {
        /* No usable pool: keep the prefix already written for this address. */
        const char *old = status_str(cached_status, "address");
        ipam_cidr c;
        if (old && ipam_cidr_parse(old, &c) == 0 && ipam_addr_cmp(c.addr, a) == 0) {
            address = old;
        } else {
            char abuf[IPAM_ADDR_STRLEN];
            snprintf(buf, sizeof buf, "%s/%d", ipam_addr_format(a, abuf),
                     ipam_addr_family(a) == 4 ? 32 : 128);
            address = buf;
        }
    }
    bool ok = pv_json_add_str(st, "pool", pool_name) && pv_json_add_str(st, "address", address);
    /* Gateway and routes follow the pool; without one, what was written stays. */
    json_object *src = pool_obj ? rec_obj_at(pool_obj, "spec") : cached_status;
    const char *gw = src ? status_str(src, "gateway") : NULL;
    if (ok && gw)
        ok = pv_json_add_str(st, "gateway", gw);
    json_object *routes = NULL;
    if (ok && src && json_object_object_get_ex(src, "routes", &routes) &&
        json_object_is_type(routes, json_type_array))
        ok = put_copy(st, "routes", routes);
    char *message = NULL;
    if (ok)
        ok = ipr_msg_allocated(address, pool_name, &message) == KC_OK;
    if (ok)
        rc = rec_set_condition(st, REC_COND_READY, REC_COND_TRUE, IPR_REASON_ALLOCATED, message,
                               generation, now, NULL);
    else
        rc = KC_ERR_NOMEM;
    free(message);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}

int ipr_claim_status_pending(json_object *cached_status, const char *reason, const char *message,
                             int64_t generation, time_t now, json_object **out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    json_object *st = NULL;
    int rc = status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;
    rc = rec_set_condition(st, REC_COND_READY, REC_COND_FALSE, reason, message, generation, now,
                           NULL);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}

int ipr_pool_status(json_object *cached_status, const ipr_pool_counts *counts,
                    const char *cond_status, const char *reason, const char *message,
                    int64_t generation, time_t now, json_object **out)
{
    if (!out || !counts)
        return KC_ERR_INVALID_ARG;
    json_object *st = NULL;
    int rc = status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;
    if (!pv_json_add_i64(st, "total", counts->total) ||
        !pv_json_add_i64(st, "allocated", counts->allocated) ||
        !pv_json_add_i64(st, "available", counts->available))
        rc = KC_ERR_NOMEM;
    else
        rc = rec_set_condition(st, REC_COND_READY, cond_status, reason, message, generation, now,
                               NULL);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}

/* ==== runtime state ============================================================= */

/* A Reservation this process created that the cache has not shown yet. */
typedef struct ipr_inflight {
    ipam_addr addr;
    double at;
    char *claim_uid;
    char *name;
} ipr_inflight;

/* Per pool name (whether or not the pool exists): what its Reservations hold. */
typedef struct ipr_pool_state {
    ipam_used *used;      /* addresses of the pool's cached Reservations */
    ipam_used *requested; /* spec.address of the pool's cached claims */
    /* How many of `used` lie in the allocatable set of `counted` (the pool's
     * spec at counted_gen of counted_uid), kept as `used` changes so a pool
     * reconcile does not walk every run of `used` (O(held) each time). NULL
     * until the first pool reconcile; rebuilt when the generation moves. */
    ipam_pool *counted;
    char *counted_uid;
    int64_t counted_gen;
    uint64_t in_pool;
    ipr_inflight *inflight;
    size_t n_inflight, cap_inflight;
    double last_status_write; /* monotonic s; 0 = never */
    char name[];
} ipr_pool_state;

/* resourceVersions of one object that our writes replaced. */
typedef struct ipr_stale {
    double at;
    size_t n;
    char *rvs[IPR_STALE_RVS];
    char uid[];
} ipr_stale;

typedef struct ipr_app {
    rec_env env; /* a copy, for env.log (the manager's strings, valid until after cleanup) */
    kc_client *client;
    char *watch_namespace; /* NULL = all */
    inf_informer *claims, *pools, *resv;
    inf_handler *h_claims, *h_pools, *h_resv;
    ctl *c_claim, *c_pool, *c_resv;
    rec_events *events;

    pthread_mutex_t mu;
    inf_map pool_states; /* name -> ipr_pool_state */
    inf_map stale;       /* object uid -> ipr_stale */
    double last_prune;
} ipr_app;

static void ipr_log(ipr_app *app, rec_log_level level, const char *logger, const char *message,
                    const char *const *kv)
{
    if (app->env.log)
        app->env.log(&app->env, level, logger, message, kv);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* ---- pool state (app->mu held) ------------------------------------------------- */

static ipr_pool_state *pool_state(ipr_app *app, const char *name, bool create)
{
    ipr_pool_state *ps = inf_map_get(&app->pool_states, name);
    if (ps || !create)
        return ps;
    size_t len = strlen(name);
    ps = calloc(1, sizeof *ps + len + 1);
    if (!ps)
        return NULL;
    memcpy(ps->name, name, len + 1);
    if (ipam_used_new(&ps->used) != KC_OK || ipam_used_new(&ps->requested) != KC_OK ||
        inf_map_put(&app->pool_states, ps->name, ps) != 0) {
        ipam_used_free(ps->used);
        ipam_used_free(ps->requested);
        free(ps);
        return NULL;
    }
    return ps;
}

static void inflight_drop_at(ipr_pool_state *ps, size_t i)
{
    free(ps->inflight[i].claim_uid);
    free(ps->inflight[i].name);
    ps->inflight[i] = ps->inflight[--ps->n_inflight];
}

static void inflight_prune(ipr_pool_state *ps, double now)
{
    for (size_t i = 0; i < ps->n_inflight;) {
        if (now - ps->inflight[i].at > IPR_INFLIGHT_TTL)
            inflight_drop_at(ps, i);
        else
            i++;
    }
}

/* Drop entries for addr; true if one of them was claim_uid's. */
static bool inflight_remove_addr(ipr_pool_state *ps, ipam_addr addr, const char *claim_uid)
{
    bool mine = false;
    for (size_t i = 0; i < ps->n_inflight;) {
        if (ipam_addr_cmp(ps->inflight[i].addr, addr) == 0) {
            mine = mine || (claim_uid && !strcmp(ps->inflight[i].claim_uid, claim_uid));
            inflight_drop_at(ps, i);
        } else {
            i++;
        }
    }
    return mine;
}

static void inflight_remove_uid(ipr_pool_state *ps, const char *claim_uid)
{
    for (size_t i = 0; i < ps->n_inflight;) {
        if (!strcmp(ps->inflight[i].claim_uid, claim_uid))
            inflight_drop_at(ps, i);
        else
            i++;
    }
}

static void pool_state_free(ipr_pool_state *ps)
{
    if (!ps)
        return;
    while (ps->n_inflight > 0)
        inflight_drop_at(ps, ps->n_inflight - 1);
    free(ps->inflight);
    ipam_used_free(ps->used);
    ipam_used_free(ps->requested);
    ipam_pool_free(ps->counted);
    free(ps->counted_uid);
    free(ps);
}

/* Add a to (or remove it from) the used set of ps, keeping in_pool; under
 * app->mu. 0 or KC_ERR_NOMEM. */
static int used_update(ipr_pool_state *ps, ipam_addr a, bool add)
{
    uint64_t before = ipam_used_count(ps->used);
    int rc = add ? ipam_used_add(ps->used, a) : ipam_used_remove(ps->used, a);
    if (ipam_used_count(ps->used) == before || !ps->counted || !ipam_contains(ps->counted, a))
        return rc;
    if (add)
        ps->in_pool++;
    else if (ps->in_pool > 0)
        ps->in_pool--;
    return rc;
}

/* ---- stale resourceVersions ------------------------------------------------------ */

static void stale_free(ipr_stale *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->rvs[i]);
    free(e);
}

/* Drop entries older than IPR_STALE_TTL (app->mu held). */
static void stale_prune_locked(ipr_app *app, double now)
{
    if (now - app->last_prune < IPR_STALE_PRUNE_EVERY)
        return;
    app->last_prune = now;
    size_t n = 0, pos = 0;
    void *v;
    while (inf_map_next(&app->stale, &pos, NULL, &v))
        if (now - ((ipr_stale *)v)->at > IPR_STALE_TTL)
            n++;
    if (n == 0)
        return;
    ipr_stale **old = malloc(n * sizeof *old);
    if (!old)
        return;
    size_t k = 0;
    pos = 0;
    while (k < n && inf_map_next(&app->stale, &pos, NULL, &v))
        if (now - ((ipr_stale *)v)->at > IPR_STALE_TTL)
            old[k++] = v;
    for (size_t i = 0; i < k; i++) {
        inf_map_remove(&app->stale, old[i]->uid);
        stale_free(old[i]);
    }
    free(old);
}

/* Remember that a write of ours replaced resourceVersion rv of object uid. */
static void stale_note(ipr_app *app, const char *uid, const char *rv)
{
    if (!uid || !rv || !*uid || !*rv)
        return;
    double now = pv_clock_monotonic();
    pthread_mutex_lock(&app->mu);
    stale_prune_locked(app, now);
    ipr_stale *e = inf_map_get(&app->stale, uid);
    if (!e) {
        size_t len = strlen(uid);
        e = calloc(1, sizeof *e + len + 1);
        if (e) {
            memcpy(e->uid, uid, len + 1);
            if (inf_map_put(&app->stale, e->uid, e) != 0) {
                free(e);
                e = NULL;
            }
        }
    }
    if (e) {
        bool have = false;
        for (size_t i = 0; i < e->n && !have; i++)
            have = !strcmp(e->rvs[i], rv);
        char *copy = have ? NULL : strdup(rv);
        if (copy) {
            if (e->n == IPR_STALE_RVS) {
                free(e->rvs[0]);
                memmove(e->rvs, e->rvs + 1, (IPR_STALE_RVS - 1) * sizeof e->rvs[0]);
                e->n--;
            }
            e->rvs[e->n++] = copy;
        }
        e->at = now;
    }
    pthread_mutex_unlock(&app->mu);
}

/*
 * True when the cached object (uid, rv) is one our own writes already
 * replaced: its newer version is on the way. Otherwise the entry is dropped
 * (the cache caught up or someone else changed the object).
 */
static bool stale_check(ipr_app *app, const char *uid, const char *rv)
{
    if (!uid || !rv)
        return false;
    bool stale = false;
    pthread_mutex_lock(&app->mu);
    ipr_stale *e = inf_map_get(&app->stale, uid);
    if (e) {
        if (pv_clock_monotonic() - e->at <= IPR_STALE_TTL)
            for (size_t i = 0; i < e->n && !stale; i++)
                stale = !strcmp(e->rvs[i], rv);
        if (!stale) {
            inf_map_remove(&app->stale, uid);
            stale_free(e);
        }
    }
    pthread_mutex_unlock(&app->mu);
    return stale;
}

static void stale_forget(ipr_app *app, const char *uid)
{
    if (!uid)
        return;
    pthread_mutex_lock(&app->mu);
    ipr_stale *e = inf_map_remove(&app->stale, uid);
    pthread_mutex_unlock(&app->mu);
    stale_free(e);
}

/* ==== handlers (informer dispatch threads) ======================================== */

/* Enqueue "namespace/name" or "name" to c. */
static void enqueue_key(ctl *c, const char *key)
{
    const char *slash = strchr(key, '/');
    if (!slash) {
        (void)ctl_enqueue(c, NULL, key);
        return;
    }
    char *ns = strndup(key, (size_t)(slash - key));
    if (ns)
        (void)ctl_enqueue(c, ns, slash + 1);
    free(ns);
}

/* Enqueue to c every key of inf's store that index emits value for. */
static void enqueue_index(ctl *c, inf_informer *inf, const char *index_name, const char *value)
{
    char **keys = NULL;
    size_t n = 0;
    if (!value || store_index_keys(inf_store(inf), index_name, value, &keys, &n) != KC_OK)
        return;
    for (size_t i = 0; i < n; i++)
        enqueue_key(c, keys[i]);
    store_keys_free(keys, n);
}

static size_t index_count(inf_informer *inf, const char *index_name, const char *value)
{
    char **keys = NULL;
    size_t n = 0;
    if (!value || store_index_keys(inf_store(inf), index_name, value, &keys, &n) != KC_OK)
        return 0;
    store_keys_free(keys, n);
    return n;
}

/* Claims that are not Ready, by pool: the ones a freed address may help. */
static int index_waiting(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *pool = rec_obj_str(obj, "spec.pool");
    if (!pool || rec_condition_is_true(rec_obj_at(obj, "status"), REC_COND_READY))
        return KC_OK;
    return store_values_add(out, pool);
}

/* "<pool>|<address>" of claims that ask for an address. */
static int index_requested(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *pool = rec_obj_str(obj, "spec.pool");
    const char *address = rec_obj_str(obj, "spec.address");
    if (!pool || !address || !*address)
        return KC_OK;
    char *v = NULL;
    if (msg(&v, "%s|%s", pool, address) != KC_OK)
        return KC_ERR_NOMEM;
    int rc = store_values_add(out, v);
    free(v);
    return rc;
}

/*
 * Keep the pool's requested set: dynamic allocation leaves the addresses
 * that claims ask for by spec.address to them, so a fixed-address claim
 * applied together with others does not lose its address to one of them.
 */
static void claim_requested(ipr_app *app, json_object *obj, bool added)
{
    const char *pool = rec_obj_str(obj, "spec.pool");
    const char *address = rec_obj_str(obj, "spec.address");
    ipam_addr a;
    if (!pool || !address || ipam_addr_parse(address, &a) != 0)
        return;
    if (!added) {
        /* Another claim may ask for the same address: keep it for that one. */
        char *v = NULL;
        if (msg(&v, "%s|%s", pool, address) != KC_OK)
            return;
        size_t still = index_count(app->claims, IDX_REQUESTED, v);
        free(v);
        if (still > 0)
            return;
    }
    bool nomem = false;
    pthread_mutex_lock(&app->mu);
    ipr_pool_state *ps = pool_state(app, pool, added);
    if (ps)
        nomem =
            (added ? ipam_used_add(ps->requested, a) : ipam_used_remove(ps->requested, a)) != KC_OK;
    else
        nomem = added;
    pthread_mutex_unlock(&app->mu);
    if (nomem)
        ipr_log(app, REC_LOG_ERROR, "ipclaim", "out of memory recording a requested address",
                REC_KV("pool", pool, "address", address));
}

static void claims_on_add(json_object *obj, void *user)
{
    claim_requested(user, obj, true);
}

static void claims_on_delete(json_object *obj, void *user)
{
    ipr_app *app = user;
    claim_requested(app, obj, false);
    const char *uid = rec_obj_str(obj, "metadata.uid");
    /* Its Reservations (if any are left) are checked for orphans at once. */
    enqueue_index(app->c_resv, app->resv, IDX_CLAIM_UID, uid);
    stale_forget(app, uid);
}

static void pools_on_add(json_object *obj, void *user)
{
    ipr_app *app = user;
    enqueue_index(app->c_claim, app->claims, IDX_BY_POOL, rec_obj_str(obj, "metadata.name"));
}

static void pools_on_update(json_object *old_obj, json_object *new_obj, void *user)
{
    ipr_app *app = user;
    if (old_obj == new_obj)
        return;
    const char *ou = rec_obj_str(old_obj, "metadata.uid"),
               *nu = rec_obj_str(new_obj, "metadata.uid");
    bool changed = rec_obj_generation(old_obj) != rec_obj_generation(new_obj) ||
                   rec_obj_is_deleting(old_obj) != rec_obj_is_deleting(new_obj) ||
                   strcmp(nz(ou), nz(nu)) != 0;
    if (changed)
        enqueue_index(app->c_claim, app->claims, IDX_BY_POOL,
                      rec_obj_str(new_obj, "metadata.name"));
}

static void pools_on_delete(json_object *obj, void *user)
{
    ipr_app *app = user;
    enqueue_index(app->c_claim, app->claims, IDX_BY_POOL, rec_obj_str(obj, "metadata.name"));
}

static void enqueue_claim_of(ipr_app *app, json_object *resv)
{
    const char *ns = rec_obj_str(resv, "spec.claim.namespace");
    const char *name = rec_obj_str(resv, "spec.claim.name");
    if (ns && name)
        (void)ctl_enqueue(app->c_claim, ns, name);
}

static void resv_on_add(json_object *obj, void *user)
{
    ipr_app *app = user;
    char *pool = NULL;
    ipam_addr addr;
    if (ipr_reservation_name_parse(rec_obj_str(obj, "metadata.name"), &pool, &addr) != KC_OK)
        return;
    const char *claim_uid = rec_obj_str(obj, "spec.claim.uid");
    bool expected = false, nomem = false;
    pthread_mutex_lock(&app->mu);
    ipr_pool_state *ps = pool_state(app, pool, true);
    if (ps) {
        nomem = used_update(ps, addr, true) != KC_OK;
        expected = inflight_remove_addr(ps, addr, claim_uid);
    } else {
        nomem = true;
    }
    pthread_mutex_unlock(&app->mu);
    if (nomem)
        ipr_log(app, REC_LOG_ERROR, "ipclaim", "out of memory recording a reservation",
                REC_KV("pool", pool));
    (void)ctl_enqueue(app->c_pool, NULL, pool);
    /* Ours, just made: the reconcile that made it writes the status. Anything
     * else (another replica's, a second one of one claim) wakes the claim. */
    if (!expected || index_count(app->resv, IDX_CLAIM_UID, claim_uid) > 1)
        enqueue_claim_of(app, obj);
    free(pool);
}

/* A Reservation replaced under the same name while the watch was down (a
 * relist shows it as an update): the slot stays used, but both claims care. */
static void resv_on_update(json_object *old_obj, json_object *new_obj, void *user)
{
    ipr_app *app = user;
    if (old_obj == new_obj)
        return;
    if (strcmp(nz(rec_obj_str(old_obj, "spec.claim.uid")),
               nz(rec_obj_str(new_obj, "spec.claim.uid"))) == 0)
        return;
    enqueue_claim_of(app, old_obj);
    enqueue_claim_of(app, new_obj);
}

static void resv_on_delete(json_object *obj, void *user)
{
    ipr_app *app = user;
    char *pool = NULL;
    ipam_addr addr;
    if (ipr_reservation_name_parse(rec_obj_str(obj, "metadata.name"), &pool, &addr) != KC_OK)
        return;
    bool nomem = false;
    pthread_mutex_lock(&app->mu);
    ipr_pool_state *ps = pool_state(app, pool, false);
    if (ps)
        nomem = used_update(ps, addr, false) != KC_OK;
    pthread_mutex_unlock(&app->mu);
    if (nomem)
        ipr_log(app, REC_LOG_ERROR, "ipclaim", "out of memory freeing a reservation",
                REC_KV("pool", pool));
    (void)ctl_enqueue(app->c_pool, NULL, pool);
    enqueue_claim_of(app, obj);
    enqueue_index(app->c_claim, app->claims, IDX_WAITING, pool);
    free(pool);
}

static bool caches_ready(ipr_app *app)
{
    return inf_handler_has_synced(app->h_resv) && inf_handler_has_synced(app->h_pools) &&
           inf_handler_has_synced(app->h_claims);
}

/* ==== IPClaim ===================================================================== */

typedef struct claim_run {
    ipr_app *app;
    const ctl_ctx *ctx;
    kc_ref ref;
    json_object *claim; /* store object (store_obj_put) */
    json_object *cur;   /* what status writes go against: claim, or the server's newer copy */
    bool cur_owned;     /* cur is ours to json_object_put */
    const char *uid, *pool_name, *spec_address;
    int64_t generation;
    json_object *pool_obj; /* store object or NULL */
    ipam_pool *pool;       /* NULL: pool missing or invalid */
    char *pool_problem;    /* ipam's message when invalid */
    char **held_names;
    ipam_addr *held_addrs;
    size_t n_held;
} claim_run;

static void held_clear(claim_run *r)
{
    for (size_t i = 0; i < r->n_held; i++)
        free(r->held_names[i]);
    free(r->held_names);
    free(r->held_addrs);
    r->held_names = NULL;
    r->held_addrs = NULL;
    r->n_held = 0;
}

static void claim_run_clear(claim_run *r)
{
    held_clear(r);
    if (r->cur_owned)
        json_object_put(r->cur);
    store_obj_put(r->claim);
    store_obj_put(r->pool_obj);
    ipam_pool_free(r->pool);
    free(r->pool_problem);
}

static json_object *cur_status(claim_run *r)
{
    return rec_obj_at(r->cur, "status");
}

static void set_cur(claim_run *r, json_object *obj)
{
    if (r->cur_owned)
        json_object_put(r->cur);
    r->cur = obj;
    r->cur_owned = true;
}

/* Add name/addr to the held list unless there. false on allocation failure. */
static bool held_add(claim_run *r, const char *name, ipam_addr addr)
{
    for (size_t i = 0; i < r->n_held; i++)
        if (!strcmp(r->held_names[i], name))
            return true;
    char **nn = realloc(r->held_names, (r->n_held + 1) * sizeof *nn);
    if (!nn)
        return false;
    r->held_names = nn;
    ipam_addr *na = realloc(r->held_addrs, (r->n_held + 1) * sizeof *na);
    if (!na)
        return false;
    r->held_addrs = na;
    char *copy = strdup(name);
    if (!copy)
        return false;
    r->held_names[r->n_held] = copy;
    r->held_addrs[r->n_held] = addr;
    r->n_held++;
    return true;
}

/* What the claim holds: its Reservations in the cache and in flight. */
static int load_held(claim_run *r)
{
    held_clear(r);
    ipr_app *app = r->app;
    char **keys = NULL;
    size_t n = 0;
    int rc = store_index_keys(inf_store(app->resv), IDX_CLAIM_UID, r->uid, &keys, &n);
    if (rc != KC_OK)
        return rc;
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        ipam_addr a;
        if (ipr_reservation_name_parse(keys[i], NULL, &a) == KC_OK && !held_add(r, keys[i], a))
            rc = KC_ERR_NOMEM;
    }
    store_keys_free(keys, n);
    pthread_mutex_lock(&app->mu);
    ipr_pool_state *ps = pool_state(app, r->pool_name, false);
    if (ps) {
        inflight_prune(ps, pv_clock_monotonic());
        for (size_t i = 0; i < ps->n_inflight && rc == KC_OK; i++)
            if (!strcmp(ps->inflight[i].claim_uid, r->uid) &&
                !held_add(r, ps->inflight[i].name, ps->inflight[i].addr))
                rc = KC_ERR_NOMEM;
    }
    pthread_mutex_unlock(&app->mu);
    return rc;
}

/* Note a Reservation we hold, unless the cache shows it already (then its add
 * event has come and gone). Checked under app->mu, which the add handler takes
 * only after the store has the object: one of the two always sees the other. */
static void inflight_add(claim_run *r, const char *name, ipam_addr addr)
{
    ipr_app *app = r->app;
    pthread_mutex_lock(&app->mu);
    char **keys = NULL;
    size_t n = 0;
    bool cached = false;
    if (store_index_keys(inf_store(app->resv), IDX_CLAIM_UID, r->uid, &keys, &n) == KC_OK) {
        for (size_t i = 0; i < n && !cached; i++)
            cached = !strcmp(keys[i], name);
        store_keys_free(keys, n);
    }
    ipr_pool_state *ps = cached ? NULL : pool_state(app, r->pool_name, true);
    if (ps) {
        if (ps->n_inflight == ps->cap_inflight) {
            size_t cap = ps->cap_inflight ? 2 * ps->cap_inflight : 8;
            ipr_inflight *v = realloc(ps->inflight, cap * sizeof *v);
            if (v) {
                ps->inflight = v;
                ps->cap_inflight = cap;
            }
        }
        if (ps->n_inflight < ps->cap_inflight) {
            ipr_inflight *e = &ps->inflight[ps->n_inflight];
            e->addr = addr;
            e->at = pv_clock_monotonic();
            e->claim_uid = strdup(r->uid);
            e->name = strdup(name);
            if (e->claim_uid && e->name) {
                ps->n_inflight++;
            } else {
                free(e->claim_uid);
                free(e->name);
            }
        }
    }
    pthread_mutex_unlock(&app->mu);
}

static void inflight_forget_claim(claim_run *r)
{
    pthread_mutex_lock(&r->app->mu);
    ipr_pool_state *ps = pool_state(r->app, r->pool_name, false);
    if (ps)
        inflight_remove_uid(ps, r->uid);
    pthread_mutex_unlock(&r->app->mu);
}

static void inflight_forget_addr(claim_run *r, ipam_addr a)
{
    pthread_mutex_lock(&r->app->mu);
    ipr_pool_state *ps = pool_state(r->app, r->pool_name, false);
    if (ps)
        (void)inflight_remove_addr(ps, a, NULL);
    pthread_mutex_unlock(&r->app->mu);
}

static ctl_result api_error(const char *what, int rc, const kc_error *err)
{
    return ctl_error(rc, "%s: %s", what, err->message ? err->message : kc_strerror(rc));
}

/*
 * Write new_status (consumed) as the claim's status when it differs, and emit
 * an Event when the Ready condition's status or reason changed.
 */
static ctl_result claim_write_status(claim_run *r, json_object *new_status, const char *ev_type,
                                     const char *ev_reason, const char *ev_message)
{
    json_object *old_ready = rec_get_condition(cur_status(r), REC_COND_READY);
    const char *old_status = old_ready ? status_str(old_ready, "status") : NULL;
    const char *old_reason = old_ready ? status_str(old_ready, "reason") : NULL;
    json_object *new_ready = rec_get_condition(new_status, REC_COND_READY);
    bool transition = !old_ready || strcmp(nz(old_status), nz(status_str(new_ready, "status"))) ||
                      strcmp(nz(old_reason), nz(status_str(new_ready, "reason")));

    kc_error err = KC_ERROR_INIT;
    json_object *out = NULL;
    bool written = false;
    const char *before_rv = rec_obj_str(r->cur, "metadata.resourceVersion");
    int rc = rec_update_status(r->app->client, &r->ref, r->cur, new_status, &out, &written, &err);
    json_object_put(new_status);
    ctl_result res = ctl_done();
    if (rc == KC_OK) {
        if (written)
            stale_note(r->app, r->uid, before_rv);
        if (transition && written)
            (void)rec_event(r->app->events, r->claim, IPR_API_VERSION, IPR_KIND_CLAIM, ev_type,
                            ev_reason, "%s", ev_message);
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue(); /* the cache was behind: again from the newer object */
    } else if (rc != KC_ERR_NOT_FOUND) {
        res = api_error("writing the IPClaim status", rc, &err);
    }
    json_object_put(out);
    kc_error_clear(&err);
    return res;
}

static ctl_result claim_pending(claim_run *r, const char *reason, const char *message)
{
    json_object *st = NULL;
    int rc =
        ipr_claim_status_pending(cur_status(r), reason, message, r->generation, time(NULL), &st);
    if (rc != KC_OK)
        return ctl_error(rc, "building the IPClaim status: %s", kc_strerror(rc));
    return claim_write_status(r, st, REC_EVENT_WARNING, reason, message);
}

/* claim_pending with a message from a builder that returned rc. */
static ctl_result claim_pending_msg(claim_run *r, const char *reason, int rc, char *message)
{
    ctl_result res =
        rc == KC_OK ? claim_pending(r, reason, message) : ctl_error(rc, "out of memory");
    free(message);
    return res;
}

static ctl_result claim_ready(claim_run *r, ipam_addr a)
{
    json_object *st = NULL;
    int rc = ipr_claim_status_ready(cur_status(r), r->pool_name, r->pool_obj, r->pool, a,
                                    r->generation, time(NULL), &st);
    if (rc != KC_OK)
        return ctl_error(rc, "building the IPClaim status: %s", kc_strerror(rc));
    const char *address = status_str(st, "address");
    char *ev = NULL;
    if (msg(&ev, "Allocated %s from IPPool %s", nz(address), r->pool_name) != KC_OK) {
        json_object_put(st);
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    }
    ctl_result res = claim_write_status(r, st, REC_EVENT_NORMAL, IPR_REASON_ALLOCATED, ev);
    free(ev);
    return res;
}

/* Release one Reservation of the claim (by name). */
static int claim_release(claim_run *r, const char *name, bool *released, kc_error *err)
{
    return rec_reserve_release(r->app->client, name, r->uid, released, err);
}

/* Parse "10.20.0.5/24" (status.address) into its address. */
static bool parse_status_address(json_object *status, ipam_addr *out)
{
    const char *s = status_str(status, "address");
    ipam_cidr c;
    if (!s || !*s || ipam_cidr_parse(s, &c) != 0)
        return false;
    *out = c.addr;
    return true;
}

static ctl_result claim_deleting(claim_run *r)
{
    ipr_app *app = r->app;
    int rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    /* What status says it holds, in case the cache has not seen it. */
    ipam_addr sa;
    if (parse_status_address(cur_status(r), &sa)) {
        char *name = NULL;
        if (ipr_reservation_name(r->pool_name, sa, &name) == KC_OK && !held_add(r, name, sa))
            rc = KC_ERR_NOMEM;
        free(name);
        if (rc != KC_OK)
            return ctl_error(rc, "out of memory");
    }
    bool any = false;
    for (size_t i = 0; i < r->n_held; i++) {
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        rc = claim_release(r, r->held_names[i], &released, &err);
        if (rc != KC_OK) {
            ctl_result res = api_error("releasing the address", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        any = any || released;
    }
    inflight_forget_claim(r);
    if (rec_has_finalizer(r->cur, REC_FINALIZER)) {
        kc_error err = KC_ERROR_INIT;
        rc = rec_ensure_finalizer(app->client, &r->ref, r->cur, REC_FINALIZER, false, NULL, NULL,
                                  &err);
        ctl_result res = ctl_done();
        if (rc == KC_ERR_CONFLICT)
            res = ctl_requeue();
        else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
            res = api_error("removing the finalizer", rc, &err);
        kc_error_clear(&err);
        if (res.outcome != CTL_DONE)
            return res;
    }
    if (any) {
        const char *address = status_str(cur_status(r), "address");
        (void)rec_event(app->events, r->claim, IPR_API_VERSION, IPR_KIND_CLAIM, REC_EVENT_NORMAL,
                        "Released", "Released %s of IPPool %s",
                        address && *address ? address : "its address", r->pool_name);
    }
    return ctl_done();
}

/*
 * Acquire a of the pool for the claim. 0 acquired (and noted in flight),
 * REC_TAKEN (holder filled), or a negative kc_status (err filled).
 */
static int claim_acquire(claim_run *r, ipam_addr a, rec_reservation *holder, kc_error *err)
{
    char slot[IPAM_ADDR_STRLEN];
    ipam_addr_format(a, slot);
    const char *ns = r->ref.namespace_;
    rec_claim_ref cref = {
        .kind = IPR_KIND_CLAIM, .namespace_ = ns, .name = r->ref.name, .uid = r->uid};
    int rc = rec_reserve_acquire(r->app->client, REC_POOL_KIND_IP, r->pool_name, slot, &cref, 0,
                                 holder, err);
    if (rc == KC_OK) {
        char *name = NULL;
        if (ipr_reservation_name(r->pool_name, a, &name) == KC_OK)
            inflight_add(r, name, a);
        free(name);
    }
    return rc;
}

/*
 * After acquiring a: if the claim turns out to hold another Reservation too
 * (a lagging cache hid it before), give a back and requeue; the next reconcile
 * settles on the older one. *settled says whether a is the claim's only one.
 */
static ctl_result claim_after_acquire(claim_run *r, ipam_addr a, bool *settled)
{
    *settled = false;
    int rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    bool other = false;
    for (size_t i = 0; i < r->n_held && !other; i++)
        other = ipam_addr_cmp(r->held_addrs[i], a) != 0;
    if (!other) {
        *settled = true;
        return ctl_done();
    }
    char *name = NULL;
    rc = ipr_reservation_name(r->pool_name, a, &name);
    if (rc != KC_OK)
        return ctl_error(rc, "naming the reservation: %s", kc_strerror(rc));
    kc_error err = KC_ERROR_INIT;
    rc = claim_release(r, name, NULL, &err);
    free(name);
    ctl_result res =
        rc == KC_OK ? ctl_requeue() : api_error("releasing a second address", rc, &err);
    kc_error_clear(&err);
    inflight_forget_addr(r, a);
    return res;
}

/* Acquire a and, when it is the claim's only address, write the status. */
static ctl_result claim_settle(claim_run *r, ipam_addr a)
{
    bool settled = false;
    ctl_result res = claim_after_acquire(r, a, &settled);
    if (!settled)
        return res;
    return claim_ready(r, a);
}

/* The claim holds n_held >= 1 addresses: keep one, release the rest, write status. */
static ctl_result claim_holds(claim_run *r)
{
    ipam_addr sa, pa;
    bool has_sa = parse_status_address(cur_status(r), &sa);
    bool has_pa = r->spec_address && ipam_addr_parse(r->spec_address, &pa) == 0;
    size_t keep =
        ipr_choose_keep(r->held_addrs, r->n_held, has_sa ? &sa : NULL, has_pa ? &pa : NULL);
    for (size_t i = 0; i < r->n_held; i++) {
        if (i == keep)
            continue;
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        int rc = claim_release(r, r->held_names[i], &released, &err);
        if (rc != KC_OK) {
            ctl_result res = api_error("releasing a second address", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        inflight_forget_addr(r, r->held_addrs[i]);
        if (released) {
            char buf[IPAM_ADDR_STRLEN];
            ipam_addr_format(r->held_addrs[i], buf);
            ipr_log(r->app, REC_LOG_INFO, "ipclaim", "released a second address of a claim",
                    REC_KV("namespace", r->ref.namespace_, "name", r->ref.name, "address", buf));
        }
    }
    return claim_ready(r, r->held_addrs[keep]);
}

/* spec.address: exactly that address or a reason why not. */
static ctl_result claim_specific(claim_run *r)
{
    ipam_addr a;
    char *m = NULL;
    if (ipam_addr_parse(r->spec_address, &a) != 0) {
        int rc = msg(&m, "spec.address %s is not an IP address", r->spec_address);
        return claim_pending_msg(r, IPR_REASON_INVALID_SPEC, rc, m);
    }
    ipam_check_result chk = ipam_check(r->pool, a);
    if (chk != IPAM_ADDR_OK) {
        char *why = NULL;
        int rc = ipam_explain(r->pool, a, &why);
        if (rc == KC_OK)
            rc = ipr_msg_address_refused(r->spec_address, r->pool_name, why, &m);
        free(why);
        return claim_pending_msg(r, ipr_check_reason(chk), rc, m);
    }
    rec_reservation holder;
    kc_error err = KC_ERROR_INIT;
    int rc = claim_acquire(r, a, &holder, &err);
    ctl_result res;
    if (rc == KC_OK) {
        res = claim_settle(r, a);
    } else if (rc == REC_TAKEN) {
        rc = ipr_msg_in_use(r->spec_address, r->pool_name, holder.claim_namespace,
                            holder.claim_name, &m);
        res = claim_pending_msg(r, IPR_REASON_ADDRESS_IN_USE, rc, m);
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue();
    } else {
        res = api_error("reserving the address", rc, &err);
    }
    rec_reservation_clear(&holder);
    kc_error_clear(&err);
    return res;
}

/* Pick a free address under app->mu (used set + in-flight + tried). */
static bool pick_locked(claim_run *r, ipam_u128 hint, const ipam_addr *tried, size_t n_tried,
                        ipam_addr *out, bool *nomem)
{
    ipr_app *app = r->app;
    *nomem = false;
    pthread_mutex_lock(&app->mu);
    ipr_pool_state *ps = pool_state(app, r->pool_name, true);
    bool found = false;
    if (!ps) {
        *nomem = true;
    } else {
        inflight_prune(ps, pv_clock_monotonic());
        size_t n_skip = n_tried + ps->n_inflight;
        ipam_addr *skip = n_skip ? malloc(n_skip * sizeof *skip) : NULL;
        if (n_skip && !skip) {
            *nomem = true;
        } else {
            for (size_t i = 0; i < n_tried; i++)
                skip[i] = tried[i];
            for (size_t i = 0; i < ps->n_inflight; i++)
                skip[n_tried + i] = ps->inflight[i].addr;
            found = ipr_pick_address(r->pool, ps->used, ps->requested, skip, n_skip, hint, out);
        }
        free(skip);
    }
    pthread_mutex_unlock(&app->mu);
    return found;
}

/* Any free address, from the claim's hint. */
static ctl_result claim_allocate(claim_run *r)
{
    ipam_u128 hint = ipam_hint(r->pool, r->uid);
    ipam_addr tried[IPR_ATTEMPTS];
    size_t n_tried = 0;
    for (;;) {
        if (n_tried == IPR_ATTEMPTS) {
            ipr_log(r->app, REC_LOG_DEBUG, "ipclaim", "every address tried was taken; requeue",
                    REC_KV("namespace", r->ref.namespace_, "name", r->ref.name));
            return ctl_requeue();
        }
        ipam_addr a;
        bool nomem = false;
        if (!pick_locked(r, hint, tried, n_tried, &a, &nomem)) {
            if (nomem)
                return ctl_error(KC_ERR_NOMEM, "out of memory");
            char *m = NULL;
            int rc = ipr_msg_exhausted(r->pool_name, ipam_pool_total_i64(r->pool), &m);
            return claim_pending_msg(r, IPR_REASON_POOL_EXHAUSTED, rc, m);
        }
        rec_reservation holder;
        kc_error err = KC_ERROR_INIT;
        int rc = claim_acquire(r, a, &holder, &err);
        rec_reservation_clear(&holder);
        if (rc == KC_OK) {
            kc_error_clear(&err);
            return claim_settle(r, a);
        }
        if (rc == REC_TAKEN) {
            tried[n_tried++] = a; /* our cache lags: that one is used */
            kc_error_clear(&err);
            continue;
        }
        ctl_result res =
            rc == KC_ERR_CONFLICT ? ctl_requeue() : api_error("reserving an address", rc, &err);
        kc_error_clear(&err);
        return res;
    }
}

/*
 * status.address is set but no Reservation of the claim is known: take that
 * address again (409 with our uid: it was ours all along). true when handled
 * (*res set); false to allocate afresh (it went to another claim).
 */
static bool claim_readopt(claim_run *r, ipam_addr sa, ctl_result *res)
{
    rec_reservation holder;
    kc_error err = KC_ERROR_INIT;
    int rc = claim_acquire(r, sa, &holder, &err);
    bool handled = true;
    if (rc == KC_OK) {
        *res = claim_settle(r, sa);
    } else if (rc == REC_TAKEN) {
        char buf[IPAM_ADDR_STRLEN];
        ipam_addr_format(sa, buf);
        (void)rec_event(r->app->events, r->claim, IPR_API_VERSION, IPR_KIND_CLAIM,
                        REC_EVENT_WARNING, "AddressLost",
                        "%s was released outside the operator and is now held by IPClaim %s/%s; "
                        "taking another address",
                        buf, nz(holder.claim_namespace), nz(holder.claim_name));
        handled = false;
    } else if (rc == KC_ERR_CONFLICT) {
        *res = ctl_requeue();
    } else {
        *res = api_error("reserving the address", rc, &err);
    }
    rec_reservation_clear(&holder);
    kc_error_clear(&err);
    return handled;
}

static ctl_result claim_reconcile(claim_run *r)
{
    ipr_app *app = r->app;
    if (rec_obj_is_deleting(r->claim))
        return claim_deleting(r);

    /* The finalizer first: nothing is held by a claim that could vanish unseen. */
    if (!rec_has_finalizer(r->claim, REC_FINALIZER)) {
        kc_error err = KC_ERROR_INIT;
        json_object *updated = NULL;
        bool sent = false;
        int rc = rec_ensure_finalizer(app->client, &r->ref, r->claim, REC_FINALIZER, true, &updated,
                                      &sent, &err);
        ctl_result res = ctl_done(); /* NotFound: gone meanwhile */
        if (rc == KC_ERR_CONFLICT || rc == KC_ERR_INVALID)
            res = ctl_requeue(); /* changed, or being deleted: again from the cache */
        else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
            res = api_error("adding the finalizer", rc, &err);
        kc_error_clear(&err);
        if (rc != KC_OK) {
            json_object_put(updated);
            return res;
        }
        if (updated) {
            stale_note(app, r->uid, rec_obj_str(r->claim, "metadata.resourceVersion"));
            set_cur(r, updated);
        }
    }

    /* The pool. */
    json_object *pool_obj = NULL;
    if (store_get(inf_store(app->pools), r->pool_name, &pool_obj) == KC_OK) {
        r->pool_obj = pool_obj;
        ipam_error perr = IPAM_ERROR_INIT;
        int rc = ipr_pool_from_obj(pool_obj, &r->pool, &perr);
        if (rc == KC_ERR_NOMEM) {
            ipam_error_clear(&perr);
            return ctl_error(rc, "out of memory");
        }
        if (rc != KC_OK) {
            r->pool_problem = perr.message;
            perr.message = NULL;
        }
        ipam_error_clear(&perr);
    }

    int rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    if (r->n_held > 0)
        return claim_holds(r);

    bool pool_deleting = r->pool_obj && rec_obj_is_deleting(r->pool_obj);
    ipam_addr sa;
    if (r->pool && !pool_deleting && parse_status_address(cur_status(r), &sa) &&
        ipam_contains(r->pool, sa)) {
        ctl_result res;
        if (claim_readopt(r, sa, &res))
            return res;
    }

    char *m = NULL;
    if (!r->pool_obj) {
        rc = ipr_msg_pool_not_found(r->pool_name, &m);
        return claim_pending_msg(r, IPR_REASON_POOL_NOT_FOUND, rc, m);
    }
    if (pool_deleting) {
        rc = ipr_msg_pool_terminating(r->pool_name, &m);
        return claim_pending_msg(r, IPR_REASON_POOL_TERMINATING, rc, m);
    }
    if (!r->pool) {
        rc = ipr_msg_pool_invalid(r->pool_name, r->pool_problem, &m);
        return claim_pending_msg(r, IPR_REASON_INVALID_SPEC, rc, m);
    }
    if (r->spec_address)
        return claim_specific(r);
    return claim_allocate(r);
}

static ctl_result reconcile_claim(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                  void *user)
{
    ipr_app *app = user;
    if (!caches_ready(app))
        return ctl_requeue_after(IPR_SYNC_RETRY);
    char *key = NULL;
    if (msg(&key, "%s/%s", namespace_, name) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    json_object *claim = NULL;
    int rc = store_get(inf_store(app->claims), key, &claim);
    free(key);
    if (rc == KC_ERR_NOT_FOUND)
        return ctl_done(); /* gone: its Reservations are the sweep's */
    if (rc != KC_OK)
        return ctl_error(rc, "reading the claim cache: %s", kc_strerror(rc));

    claim_run r = {
        .app = app,
        .ctx = ctx,
        .claim = claim,
        .cur = claim,
        .uid = rec_obj_str(claim, "metadata.uid"),
        .pool_name = rec_obj_str(claim, "spec.pool"),
        .spec_address = rec_obj_str(claim, "spec.address"),
        .generation = rec_obj_generation(claim),
    };
    r.ref = ipr_claims_ref;
    r.ref.namespace_ = namespace_;
    r.ref.name = name;
    if (r.spec_address && !*r.spec_address)
        r.spec_address = NULL;

    ctl_result res;
    if (!r.uid || !r.pool_name || !*r.pool_name)
        res = ctl_done(); /* the schema requires both: nothing to do with such an object */
    else if (stale_check(app, r.uid, rec_obj_str(claim, "metadata.resourceVersion")))
        res = ctl_done(); /* our newer write is on its way and enqueues the claim */
    else
        res = claim_reconcile(&r);
    claim_run_clear(&r);
    return res;
}

/* ==== IPPool ======================================================================= */

/* "ns/name addr" of up to IPR_HOLDERS_SHOWN holders of the pool, sorted by name. */
static int pool_holders(ipr_app *app, const char *pool, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char **keys = NULL;
    size_t n = 0;
    int rc = store_index_keys(inf_store(app->resv), IDX_BY_POOL, pool, &keys, &n);
    if (rc != KC_OK)
        return rc;
    /* The IPR_HOLDERS_SHOWN smallest names, by a partial selection sort. */
    size_t shown = n < IPR_HOLDERS_SHOWN ? n : IPR_HOLDERS_SHOWN;
    for (size_t i = 0; i < shown; i++) {
        size_t min = i;
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(keys[j], keys[min]) < 0)
                min = j;
        char *t = keys[i];
        keys[i] = keys[min];
        keys[min] = t;
    }
    char **list = shown ? calloc(shown, sizeof *list) : NULL;
    if (shown && !list) {
        store_keys_free(keys, n);
        return KC_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < shown && rc == KC_OK; i++) {
        json_object *obj = NULL;
        if (store_get(inf_store(app->resv), keys[i], &obj) != KC_OK)
            continue;
        rc = msg(&list[k], "%s/%s %s", nz(rec_obj_str(obj, "spec.claim.namespace")),
                 nz(rec_obj_str(obj, "spec.claim.name")), nz(rec_obj_str(obj, "spec.slot")));
        if (rc == KC_OK)
            k++;
        store_obj_put(obj);
    }
    store_keys_free(keys, n);
    if (rc != KC_OK) {
        for (size_t i = 0; i < k; i++)
            free(list[i]);
        free(list);
        return rc;
    }
    *out = list;
    *n_out = k;
    return KC_OK;
}

/* Write a pool's status (consumed) if it changed; Event on a Ready transition. */
static ctl_result pool_write_status(ipr_app *app, const kc_ref *ref, json_object *cur,
                                    json_object *new_status, bool throttle)
{
    json_object *cached_status = rec_obj_at(cur, "status");
    const char *uid = rec_obj_str(cur, "metadata.uid");
    if (!pv_json_add_i64(new_status, "observedGeneration", rec_obj_generation(cur))) {
        json_object_put(new_status);
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    }
    if (cached_status && json_object_equal(cached_status, new_status)) {
        json_object_put(new_status);
        return ctl_done();
    }
    json_object *old_ready = rec_get_condition(cached_status, REC_COND_READY);
    json_object *new_ready = rec_get_condition(new_status, REC_COND_READY);
    bool same_ready = old_ready && new_ready && json_object_equal(old_ready, new_ready);

    /* Only the counts changed: space the writes out. */
    double now = pv_clock_monotonic();
    if (throttle && same_ready) {
        double wait = 0;
        pthread_mutex_lock(&app->mu);
        ipr_pool_state *ps = pool_state(app, ref->name, false);
        if (ps && ps->last_status_write > 0 &&
            now - ps->last_status_write < IPR_POOL_WRITE_INTERVAL)
            wait = IPR_POOL_WRITE_INTERVAL - (now - ps->last_status_write);
        pthread_mutex_unlock(&app->mu);
        if (wait > 0) {
            json_object_put(new_status);
            return ctl_requeue_after(wait);
        }
    }

    kc_error err = KC_ERROR_INIT;
    bool written = false;
    const char *before_rv = rec_obj_str(cur, "metadata.resourceVersion");
    int rc = rec_update_status(app->client, ref, cur, new_status, NULL, &written, &err);
    ctl_result res = ctl_done();
    if (rc == KC_OK && written) {
        stale_note(app, uid, before_rv);
        pthread_mutex_lock(&app->mu);
        ipr_pool_state *ps = pool_state(app, ref->name, true);
        if (ps)
            ps->last_status_write = now;
        pthread_mutex_unlock(&app->mu);
        /* Events for trouble and for the recovery from it, not for every new pool. */
        const char *st = status_str(new_ready, "status");
        const char *was = old_ready ? status_str(old_ready, "status") : NULL;
        bool ok = st && !strcmp(st, REC_COND_TRUE);
        bool was_ok = !old_ready || (was && !strcmp(was, REC_COND_TRUE));
        bool moved =
            !old_ready || strcmp(nz(was), nz(st)) != 0 ||
            strcmp(nz(status_str(old_ready, "reason")), nz(status_str(new_ready, "reason"))) != 0;
        if (new_ready && moved && (!ok || !was_ok))
            (void)rec_event(app->events, cur, IPR_API_VERSION, IPR_KIND_POOL,
                            ok ? REC_EVENT_NORMAL : REC_EVENT_WARNING,
                            nz(status_str(new_ready, "reason")), "%s",
                            nz(status_str(new_ready, "message")));
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue();
    } else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND) {
        res = api_error("writing the IPPool status", rc, &err);
    }
    kc_error_clear(&err);
    json_object_put(new_status);
    return res;
}

/*
 * Counts of the pool from its used set (pool may be NULL: invalid spec).
 * pool_obj is the pool's object: its uid and generation say whether the
 * kept in-pool count (ipr_pool_state.counted) is for this spec.
 */
static void pool_counts(ipr_app *app, const char *name, json_object *pool_obj,
                        const ipam_pool *pool, ipr_pool_counts *counts, int64_t *n_held)
{
    const char *uid = nz(rec_obj_str(pool_obj, "metadata.uid"));
    int64_t gen = rec_obj_generation(pool_obj);
    pthread_mutex_lock(&app->mu);
    ipr_pool_state *ps = pool_state(app, name, pool != NULL);
    bool kept = false;
    if (pool && ps) {
        kept = ps->counted && ps->counted_gen == gen && ps->counted_uid &&
               strcmp(ps->counted_uid, uid) == 0;
        if (!kept) {
            /* A new spec: count once by walking the runs, then keep it up to
             * date as Reservations come and go. */
            ipam_pool *copy = NULL;
            ipam_error perr = IPAM_ERROR_INIT;
            char *uid_copy = strdup(uid);
            if (uid_copy && ipr_pool_from_obj(pool_obj, &copy, &perr) == KC_OK) {
                ipam_pool_free(ps->counted);
                free(ps->counted_uid);
                ps->counted = copy;
                ps->counted_uid = uid_copy;
                ps->counted_gen = gen;
                ipam_u128 held = ipam_used_count_in_pool(copy, ps->used);
                ps->in_pool = held > UINT64_MAX ? UINT64_MAX : (uint64_t)held;
                kept = true;
            } else {
                ipam_pool_free(copy);
                free(uid_copy);
            }
            ipam_error_clear(&perr);
        }
    }
    if (kept)
        ipr_pool_counts_from(pool, ipam_used_count(ps->used), ps->in_pool, counts);
    else
        ipr_pool_counts_of(pool, ps ? ps->used : NULL, counts);
    *n_held = counts->allocated + (ps ? (int64_t)ps->n_inflight : 0);
    pthread_mutex_unlock(&app->mu);
}

/* The pool is being deleted: it goes when nothing of it is held any more. */
static ctl_result pool_deleting(ipr_app *app, const kc_ref *ref, json_object *pool_obj)
{
    if (!rec_has_finalizer(pool_obj, REC_FINALIZER))
        return ctl_done();
    ipam_pool *pool = NULL;
    (void)ipr_pool_from_obj(pool_obj, &pool, NULL);
    ipr_pool_counts counts;
    int64_t n_held = 0;
    pool_counts(app, ref->name, pool_obj, pool, &counts, &n_held);
    ipam_pool_free(pool);

    kc_error err = KC_ERROR_INIT;
    int rc;
    if (n_held == 0) {
        /* The cache may lag: ask the API server whether any Reservation is left. */
        char *selector = NULL;
        if (msg(&selector, "%s=%s,%s=%s", REC_LABEL_POOL_KIND, REC_POOL_KIND_IP, REC_LABEL_POOL,
                ref->name) != KC_OK)
            return ctl_error(KC_ERR_NOMEM, "out of memory");
        kc_list_opts lo = {.label_selector = selector, .limit = 1};
        json_object *list = NULL;
        rc = kc_list(app->client, &rec_reservations_ref, &lo, &list, &err);
        free(selector);
        if (rc != KC_OK) {
            ctl_result res = api_error("listing the pool's reservations", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        json_object *items = rec_obj_at(list, "items");
        size_t left = items && json_object_is_type(items, json_type_array)
                          ? json_object_array_length(items)
                          : 0;
        json_object_put(list);
        if (left > 0)
            return ctl_requeue_after(IPR_POOL_GONE_RETRY);
        rc = rec_ensure_finalizer(app->client, ref, pool_obj, REC_FINALIZER, false, NULL, NULL,
                                  &err);
        ctl_result res = ctl_done();
        if (rc == KC_ERR_CONFLICT)
            res = ctl_requeue();
        else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
            res = api_error("removing the IPPool finalizer", rc, &err);
        kc_error_clear(&err);
        return res;
    }

    char **holders = NULL;
    size_t n_holders = 0;
    char *m = NULL;
    rc = pool_holders(app, ref->name, &holders, &n_holders);
    if (rc == KC_OK)
        rc = ipr_msg_pool_in_use(n_held, (const char *const *)holders, n_holders, &m);
    for (size_t i = 0; i < n_holders; i++)
        free(holders[i]);
    free(holders);
    json_object *st = NULL;
    if (rc == KC_OK)
        rc = ipr_pool_status(rec_obj_at(pool_obj, "status"), &counts, REC_COND_FALSE,
                             IPR_REASON_TERMINATING, m, rec_obj_generation(pool_obj), time(NULL),
                             &st);
    free(m);
    if (rc != KC_OK)
        return ctl_error(rc, "building the IPPool status: %s", kc_strerror(rc));
    return pool_write_status(app, ref, pool_obj, st, true);
}

static ctl_result reconcile_pool(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                 void *user)
{
    (void)ctx;
    (void)namespace_;
    ipr_app *app = user;
    if (!caches_ready(app))
        return ctl_requeue_after(IPR_SYNC_RETRY);
    json_object *pool_obj = NULL;
    int rc = store_get(inf_store(app->pools), name, &pool_obj);
    if (rc == KC_ERR_NOT_FOUND)
        return ctl_done();
    if (rc != KC_OK)
        return ctl_error(rc, "reading the pool cache: %s", kc_strerror(rc));
    if (stale_check(app, rec_obj_str(pool_obj, "metadata.uid"),
                    rec_obj_str(pool_obj, "metadata.resourceVersion"))) {
        store_obj_put(pool_obj);
        return ctl_done();
    }
    kc_ref ref = ipr_pools_ref;
    ref.name = name;
    if (rec_obj_is_deleting(pool_obj)) {
        ctl_result res = pool_deleting(app, &ref, pool_obj);
        store_obj_put(pool_obj);
        return res;
    }

    json_object *cur = pool_obj;
    json_object *updated = NULL;
    if (!rec_has_finalizer(pool_obj, REC_FINALIZER)) {
        kc_error err = KC_ERROR_INIT;
        rc = rec_ensure_finalizer(app->client, &ref, pool_obj, REC_FINALIZER, true, &updated, NULL,
                                  &err);
        ctl_result res = ctl_done();
        if (rc == KC_ERR_CONFLICT || rc == KC_ERR_INVALID)
            res = ctl_requeue();
        else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
            res = api_error("adding the IPPool finalizer", rc, &err);
        kc_error_clear(&err);
        if (rc != KC_OK) {
            json_object_put(updated);
            store_obj_put(pool_obj);
            return res;
        }
        if (updated) {
            stale_note(app, rec_obj_str(pool_obj, "metadata.uid"),
                       rec_obj_str(pool_obj, "metadata.resourceVersion"));
            cur = updated;
        }
    }

    ipam_pool *pool = NULL;
    ipam_error perr = IPAM_ERROR_INIT;
    rc = ipr_pool_from_obj(cur, &pool, &perr);
    ctl_result res;
    if (rc == KC_ERR_NOMEM) {
        res = ctl_error(rc, "out of memory");
    } else {
        ipr_pool_counts counts;
        int64_t n_held;
        pool_counts(app, name, cur, pool, &counts, &n_held);
        char *m = NULL;
        json_object *st = NULL;
        if (pool)
            rc = ipr_msg_pool_valid(pool, &m);
        else
            rc = msg(&m, "%s", perr.message ? perr.message : "the spec is invalid");
        if (rc == KC_OK)
            rc = ipr_pool_status(rec_obj_at(cur, "status"), &counts,
                                 pool ? REC_COND_TRUE : REC_COND_FALSE,
                                 pool ? IPR_REASON_VALID : IPR_REASON_INVALID_SPEC, m,
                                 rec_obj_generation(cur), time(NULL), &st);
        free(m);
        if (rc != KC_OK)
            res = ctl_error(rc, "building the IPPool status: %s", kc_strerror(rc));
        else
            res = pool_write_status(app, &ref, cur, st, true);
    }
    ipam_error_clear(&perr);
    ipam_pool_free(pool);
    json_object_put(updated);
    store_obj_put(pool_obj);
    return res;
}

/* ==== Reservations: the orphan sweep ================================================= */

/*
 * Whether the claim ns/name with this uid is in the claims cache (a lookup
 * by key, not an index of uids: that index would cost ~180 bytes a claim).
 * Out of memory answers true: the sweep never frees on a doubt.
 */
static bool claim_cached(ipr_app *app, const char *ns, const char *name, const char *uid)
{
    if (!ns || !name)
        return false;
    char *key = NULL;
    if (msg(&key, "%s/%s", ns, name) != KC_OK)
        return true;
    json_object *c = NULL;
    int rc = store_get(inf_store(app->claims), key, &c);
    free(key);
    if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        return true;
    bool same = rc == KC_OK && !strcmp(nz(rec_obj_str(c, "metadata.uid")), uid);
    store_obj_put(c);
    return same;
}

static ctl_result reconcile_resv(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                 void *user)
{
    (void)ctx;
    (void)namespace_;
    ipr_app *app = user;
    if (!caches_ready(app))
        return ctl_requeue_after(IPR_SYNC_RETRY);
    json_object *obj = NULL;
    int rc = store_get(inf_store(app->resv), name, &obj);
    if (rc == KC_ERR_NOT_FOUND)
        return ctl_done();
    if (rc != KC_OK)
        return ctl_error(rc, "reading the reservation cache: %s", kc_strerror(rc));
    const char *ns = rec_obj_str(obj, "spec.claim.namespace");
    const char *uid = rec_obj_str(obj, "spec.claim.uid");
    ctl_result res = ctl_done();
    bool ours = !app->watch_namespace || (ns && !strcmp(ns, app->watch_namespace));
    if (ours && uid && !claim_cached(app, ns, rec_obj_str(obj, "spec.claim.name"), uid)) {
        /* Not in the cache: only the API server can say the claim is gone. */
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        rc = rec_reserve_sweep_orphan(app->client, obj, &released, &err);
        if (rc != KC_OK)
            res = api_error("sweeping an orphaned reservation", rc, &err);
        else if (released)
            ipr_log(app, REC_LOG_INFO, "ipreservation",
                    "released the address of a claim that no longer exists",
                    REC_KV("reservation", name, "namespace", nz(ns), "claim",
                           nz(rec_obj_str(obj, "spec.claim.name")), "address",
                           nz(rec_obj_str(obj, "spec.slot"))));
        kc_error_clear(&err);
    }
    store_obj_put(obj);
    return res;
}

/* ==== setup ============================================================================ */

static void ip_app_free(void *arg)
{
    ipr_app *app = arg;
    if (!app)
        return;
    if (app->h_claims)
        inf_remove_handler(app->claims, app->h_claims);
    if (app->h_pools)
        inf_remove_handler(app->pools, app->h_pools);
    if (app->h_resv)
        inf_remove_handler(app->resv, app->h_resv);
    rec_events_free(app->events);
    size_t pos = 0;
    void *v;
    while (inf_map_next(&app->pool_states, &pos, NULL, &v))
        pool_state_free(v);
    inf_map_close(&app->pool_states);
    pos = 0;
    while (inf_map_next(&app->stale, &pos, NULL, &v))
        stale_free(v);
    inf_map_close(&app->stale);
    pthread_mutex_destroy(&app->mu);
    free(app->watch_namespace);
    free(app);
}

/*
 * Sender thread of app->events (or a worker, for a full queue). expected: the
 * Event's namespace is being deleted or is gone, as when a claim goes with its
 * namespace: its last Event has nowhere to go, which is no error.
 */
static void events_log(int code, bool expected, const char *message, void *user)
{
    ipr_app *app = user;
    ipr_log(app, expected ? REC_LOG_DEBUG : REC_LOG_ERROR, "ipclaim", "unable to write an Event",
            REC_KV("error", rec_events_strerror(code), "detail", nz(message)));
}

static int setup_informers(ipr_app *app, const rec_env *env)
{
    kc_ref cref = ipr_claims_ref;
    cref.namespace_ = app->watch_namespace;
    inf_opts copts = {.store_mode = INF_STORE_COMPACT};
    inf_opts popts = {.store_mode = INF_STORE_SHARED};
    inf_opts ropts = {
        .label_selector = IPR_RESERVATION_SELECTOR,
        .store_mode = INF_STORE_COMPACT,
        .resync_period = IPR_RESV_RESYNC,
    };
    int rc;
    if ((rc = inf_factory_get(env->factory, &cref, &copts, &app->claims)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &ipr_pools_ref, &popts, &app->pools)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &rec_reservations_ref, &ropts, &app->resv)) != KC_OK)
        return rc;
    /* Index functions get their path as user data; string literals live forever. */
    if ((rc = inf_add_index(app->claims, IDX_BY_POOL, store_index_field, (void *)"spec.pool")) !=
            KC_OK ||
        (rc = inf_add_index(app->claims, IDX_WAITING, index_waiting, NULL)) != KC_OK ||
        (rc = inf_add_index(app->claims, IDX_REQUESTED, index_requested, NULL)) != KC_OK ||
        (rc = inf_add_index(app->resv, IDX_BY_POOL, store_index_field, (void *)"spec.pool.name")) !=
            KC_OK ||
        (rc = inf_add_index(app->resv, IDX_CLAIM_UID, store_index_field,
                            (void *)"spec.claim.uid")) != KC_OK)
        return rc;
    return KC_OK;
}

static int setup_controllers(ipr_app *app, const rec_env *env)
{
    int rc;
    if ((rc = rec_env_new_controller(env, "ipclaim", reconcile_claim, app, &app->c_claim)) !=
            KC_OK ||
        (rc = ctl_watch_for(app->c_claim, app->claims)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, "ippool", reconcile_pool, app, &app->c_pool)) != KC_OK ||
        (rc = ctl_watch_for(app->c_pool, app->pools)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, "ipreservation", reconcile_resv, app, &app->c_resv)) !=
            KC_OK ||
        (rc = ctl_watch_for(app->c_resv, app->resv)) != KC_OK)
        return rc;

    /* Handlers last: they enqueue to the controllers above. */
    inf_handler_fns hc = {
        .on_add = claims_on_add, .on_delete = claims_on_delete, .user = app, .no_resync = true};
    inf_handler_fns hp = {.on_add = pools_on_add,
                          .on_update = pools_on_update,
                          .on_delete = pools_on_delete,
                          .user = app,
                          .no_resync = true};
    inf_handler_fns hr = {.on_add = resv_on_add,
                          .on_update = resv_on_update,
                          .on_delete = resv_on_delete,
                          .user = app,
                          .no_resync = true};
    if ((rc = inf_add_handler(app->claims, &hc, &app->h_claims)) != KC_OK ||
        (rc = inf_add_handler(app->pools, &hp, &app->h_pools)) != KC_OK ||
        (rc = inf_add_handler(app->resv, &hr, &app->h_resv)) != KC_OK)
        return rc;
    return KC_OK;
}

int ip_setup(const rec_env *env)
{
    if (!env || !env->client || !env->factory || !env->add_cleanup)
        return KC_ERR_INVALID_ARG;
    ipr_app *app = calloc(1, sizeof *app);
    if (!app)
        return KC_ERR_NOMEM;
    pthread_mutex_init(&app->mu, NULL);
    inf_map_init(&app->pool_states);
    inf_map_init(&app->stale);
    app->env = *env;
    app->client = env->client;
    if (env->watch_namespace && *env->watch_namespace) {
        app->watch_namespace = strdup(env->watch_namespace);
        if (!app->watch_namespace) {
            ip_app_free(app);
            return KC_ERR_NOMEM;
        }
    }
    /* From here on the manager frees app, after the controllers and informers. */
    int rc = env->add_cleanup(env, ip_app_free, app);
    if (rc != KC_OK) {
        ip_app_free(app);
        return rc;
    }
    rec_events_opts eo = {
        .reporting_instance = env->identity,
        .senders = IPR_EVENT_SENDERS,
        .log = events_log,
        .log_user = app,
    };
    if ((rc = rec_events_new(env->client, &eo, &app->events)) != KC_OK)
        return rc;
    if ((rc = setup_informers(app, env)) != KC_OK)
        return rc;
    return setup_controllers(app, env);
}
