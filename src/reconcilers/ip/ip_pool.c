/*
 * ip_pool - IPPools as the claim flow sees them: the ipam pool of an IPPool
 * object, the used set of a pool's Reservations with its counts, and the
 * choice of a free address (from a hint derived from the claim's uid, past
 * addresses in flight and those other claims ask for by spec.address).
 */
#include <stdlib.h>
#include <string.h>

#include "ip_internal.h"
#include "kc_error.h"
#include "rec_util.h"

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

int ip_pool_from_obj(json_object *pool, ipam_pool **out, ipam_error *err)
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

void ip_pool_counts_from(const ipam_pool *pool, uint64_t n_used, ipam_u128 held_in_pool,
                         rec_pool_counts *out)
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

void ip_pool_counts_of(const ipam_pool *pool, const ipam_used *used, rec_pool_counts *out)
{
    ip_pool_counts_from(pool, used ? ipam_used_count(used) : 0,
                        pool && used ? ipam_used_count_in_pool(pool, used) : 0, out);
}

bool ip_pool_pick(const ipam_pool *pool, const ipam_used *used, const ipam_used *reserved,
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

size_t ip_pool_choose_keep(const ipam_addr *held, size_t n, const ipam_addr *status_addr,
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

const char *ip_pool_check_reason(ipam_check_result r)
{
    switch (r) {
    case IPAM_ADDR_OK:
        return NULL;
    case IPAM_ADDR_WRONG_FAMILY:
    case IPAM_ADDR_OUTSIDE_CIDR:
        return IP_REASON_INVALID_SPEC;
    default:
        return IP_REASON_ADDRESS_UNAVAILABLE;
    }
}

/* ---- the used set (def->set_*; the domain's lock held) ------------------------ */

int ip_pool_set_new(void **set)
{
    ip_pool_set *s = calloc(1, sizeof *s);
    if (!s || ipam_used_new(&s->used) != KC_OK) {
        free(s);
        return KC_ERR_NOMEM;
    }
    *set = s;
    return KC_OK;
}

void ip_pool_set_free(void *set)
{
    ip_pool_set *s = set;
    if (!s)
        return;
    ipam_used_free(s->used);
    ipam_pool_free(s->counted);
    free(s->counted_uid);
    free(s);
}

int ip_pool_set_update(void *set, const char *slot, const char *holder, bool add)
{
    (void)holder; /* an address's holder is its Reservation's: not kept here */
    ip_pool_set *s = set;
    ipam_addr a;
    if (!slot || ipam_addr_parse(slot, &a) != 0)
        return KC_ERR_INVALID_ARG;
    uint64_t before = ipam_used_count(s->used);
    int rc = add ? ipam_used_add(s->used, a) : ipam_used_remove(s->used, a);
    if (ipam_used_count(s->used) == before || !s->counted || !ipam_contains(s->counted, a))
        return rc;
    if (add)
        s->in_pool++;
    else if (s->in_pool > 0)
        s->in_pool--;
    return rc;
}

void ip_pool_set_counts(void *set, json_object *pool_obj, const void *pool, rec_pool_counts *out)
{
    ip_pool_set *s = set;
    const char *uid = rec_obj_str(pool_obj, "metadata.uid");
    int64_t gen = rec_obj_generation(pool_obj);
    bool kept = false;
    if (pool && uid) {
        kept = s->counted && s->counted_gen == gen && s->counted_uid &&
               strcmp(s->counted_uid, uid) == 0;
        if (!kept) {
            /* A new spec: count once by walking the runs, then keep it up to
             * date as Reservations come and go. */
            ipam_pool *copy = NULL;
            char *uid_copy = strdup(uid);
            if (uid_copy && ip_pool_from_obj(pool_obj, &copy, NULL) == KC_OK) {
                ipam_pool_free(s->counted);
                free(s->counted_uid);
                s->counted = copy;
                s->counted_uid = uid_copy;
                s->counted_gen = gen;
                ipam_u128 held = ipam_used_count_in_pool(copy, s->used);
                s->in_pool = held > UINT64_MAX ? UINT64_MAX : (uint64_t)held;
                kept = true;
            } else {
                ipam_pool_free(copy);
                free(uid_copy);
            }
        }
    }
    if (kept)
        ip_pool_counts_from(pool, ipam_used_count(s->used), s->in_pool, out);
    else
        ip_pool_counts_of(pool, s->used, out);
}

void ip_pool_scope_counts(const void *set, const void *scope_set, const void *pool,
                          rec_pool_counts *out)
{
    const ip_pool_set *own = set, *scope = scope_set;
    /* The network holds only what this pool holds (it is alone in it, or the
     * others hold nothing): the pool's own count stands. */
    if (!pool || !scope || ipam_used_count(scope->used) == ipam_used_count(own->used))
        return;
    ipam_u128 held = ipam_used_count_in_pool(pool, scope->used);
    ipam_u128 total = ipam_pool_total(pool);
    out->available = ipam_u128_to_i64_sat(held < total ? total - held : 0);
}

bool ip_pool_overlap(const void *a, const void *b)
{
    return ipam_pool_overlap(a, b);
}
