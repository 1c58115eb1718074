/*
 * ipam_pool - pools: the allocatable set of an IPPool spec as segments,
 * checks and explanations of single addresses, offsets and hints
 * (ipam_addr.c describes the representation).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam_internal.h"

/* ---- pools --------------------------------------------------------------- */

static bool absent(const char *s)
{
    return !s || !*s;
}

static const char *family_name(int family)
{
    return family == 4 ? "IPv4" : "IPv6";
}

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

/* Sort and merge overlapping or adjacent spans in place; returns the new count. */
static size_t merge_spans(span *s, size_t n)
{
    if (n == 0)
        return 0;
    qsort(s, n, sizeof *s, cmp_span);
    size_t k = 0;
    for (size_t i = 1; i < n; i++) {
        if (s[k].hi == U128_MAX || s[i].lo <= s[k].hi + 1) {
            if (s[i].hi > s[k].hi)
                s[k].hi = s[i].hi;
        } else {
            s[++k] = s[i];
        }
    }
    return k + 1;
}

/* True for IPv4 prefixes <= 30: network and broadcast are not hosts. */
static bool v4_has_net_bcast(const ipam_pool *p)
{
    return p->cidr.family == 4 && p->cidr.prefix <= 30;
}

/* True for IPv6 prefixes <= 126: the all-zero host is the subnet-router anycast. */
static bool v6_has_anycast(const ipam_pool *p)
{
    return p->cidr.family == 6 && p->cidr.prefix <= 126;
}

/* Parse an optional single address field of the spec into *out. */
static int parse_field(const ipam_pool *p, const char *field, const char *text, ipam_u128 *out,
                       ipam_error *err)
{
    char cb[IPAM_CIDR_STRLEN];
    ipam_u128 v;
    bool v4s;
    if (ipam_parse_addr(text, &v, &v4s) != 0)
        return ipam_set_problem(err, IPAM_PROBLEM_ADDRESS_SYNTAX,
                                "%s \"%s\" is not an IP address; write one such as %s", field,
                                ipam_show(text).s, p->cidr.family == 4 ? "10.20.0.1" : "fd00::1");
    int fam = ipam_is_v4(v) ? 4 : 6;
    if (fam != p->cidr.family)
        return ipam_set_problem(err, IPAM_PROBLEM_FAMILY_MISMATCH,
                                "%s \"%s\" is %s but spec.cidr %s is %s", field, ipam_show(text).s,
                                family_name(fam), ipam_cidr_format(&p->cidr, cb),
                                family_name(p->cidr.family));
    *out = v;
    return 0;
}

/* Build segments = [range_lo, range_hi] minus the merged holes. */
static int build_segments(ipam_pool *p, span *holes, size_t n_holes)
{
    n_holes = merge_spans(holes, n_holes);
    p->segs = malloc((n_holes + 1) * sizeof *p->segs);
    if (!p->segs)
        return KC_ERR_NOMEM;
    ipam_u128 cur = p->range_lo, total = 0;
    bool done = false;
    for (size_t i = 0; i < n_holes; i++) {
        const span *h = &holes[i];
        if (h->hi < cur)
            continue;
        if (h->lo > p->range_hi)
            break;
        if (h->lo > cur) {
            seg *s = &p->segs[p->n_segs++];
            s->lo = cur;
            s->hi = h->lo - 1;
            s->before = total;
            total += s->hi - s->lo + 1;
        }
        if (h->hi >= p->range_hi) {
            done = true;
            break;
        }
        cur = h->hi + 1;
    }
    if (!done) {
        seg *s = &p->segs[p->n_segs++];
        s->lo = cur;
        s->hi = p->range_hi;
        s->before = total;
        total += s->hi - s->lo + 1;
    }
    p->total = total;
    return 0;
}

static int parse_excludes(ipam_pool *p, const ipam_pool_spec *spec, span *holes, size_t *n_holes,
                          ipam_error *err)
{
    char cb[IPAM_CIDR_STRLEN], nb[IPAM_CIDR_STRLEN];
    for (size_t i = 0; i < spec->n_exclude; i++) {
        const char *e = spec->exclude[i];
        span sp;
        int fam;
        if (absent(e))
            return ipam_set_problem(err, IPAM_PROBLEM_EXCLUDE_SYNTAX,
                                    "spec.exclude[%zu] is empty; write an IP address or a CIDR", i);
        if (strchr(e, '/')) {
            ipam_cidr c;
            int rc = ipam_cidr_parse(e, &c);
            if (rc == KC_ERR_NOMEM)
                return rc;
            if (rc)
                return ipam_set_problem(err, IPAM_PROBLEM_EXCLUDE_SYNTAX,
                                        "spec.exclude[%zu] \"%s\" is not an IP address or CIDR", i,
                                        ipam_show(e).s);
            fam = c.family;
            if (fam == p->cidr.family && !ipam_cidr_is_canonical(&c))
                return ipam_set_problem(
                    err, IPAM_PROBLEM_EXCLUDE_HOST_BITS,
                    "spec.exclude[%zu] \"%s\" has host bits set; did you mean %s?", i,
                    ipam_show(e).s, ipam_cidr_format(&c, nb));
            sp.lo = c.network.v;
            sp.hi = c.network.v | ~ipam_prefix_mask(ipam_plen128(&c));
        } else {
            bool v4s;
            if (ipam_parse_addr(e, &sp.lo, &v4s) != 0)
                return ipam_set_problem(err, IPAM_PROBLEM_EXCLUDE_SYNTAX,
                                        "spec.exclude[%zu] \"%s\" is not an IP address or CIDR", i,
                                        ipam_show(e).s);
            sp.hi = sp.lo;
            fam = ipam_is_v4(sp.lo) ? 4 : 6;
        }
        if (fam != p->cidr.family)
            return ipam_set_problem(err, IPAM_PROBLEM_FAMILY_MISMATCH,
                                    "spec.exclude[%zu] \"%s\" is %s but spec.cidr %s is %s", i,
                                    ipam_show(e).s, family_name(fam),
                                    ipam_cidr_format(&p->cidr, cb), family_name(p->cidr.family));
        /* Outside the cidr: allowed, ignored; overlapping: clipped. */
        if (sp.hi < p->first || sp.lo > p->last)
            continue;
        if (sp.lo < p->first)
            sp.lo = p->first;
        if (sp.hi > p->last)
            sp.hi = p->last;
        holes[(*n_holes)++] = sp;
        p->excl[p->n_excl++] = sp;
    }
    p->n_excl = merge_spans(p->excl, p->n_excl);
    return 0;
}

static int pool_init(ipam_pool *p, const ipam_pool_spec *spec, span *holes, ipam_error *err)
{
    char cb[IPAM_CIDR_STRLEN], ab[IPAM_ADDR_STRLEN], bb[IPAM_ADDR_STRLEN];
    size_t n_holes = 0;

    if (absent(spec->cidr))
        return ipam_set_problem(
            err, IPAM_PROBLEM_CIDR_MISSING,
            "spec.cidr is required: an IPv4 or IPv6 CIDR such as 10.20.0.0/16 or "
            "fd00::/64");
    int rc = ipam_cidr_parse(spec->cidr, &p->cidr);
    if (rc == KC_ERR_NOMEM)
        return rc;
    if (rc)
        return ipam_set_problem(
            err, IPAM_PROBLEM_CIDR_SYNTAX,
            "spec.cidr \"%s\" is not a CIDR; write a network address and a prefix "
            "length such as 10.20.0.0/16 or fd00::/64",
            ipam_show(spec->cidr).s);
    if (!ipam_cidr_is_canonical(&p->cidr))
        return ipam_set_problem(err, IPAM_PROBLEM_CIDR_HOST_BITS,
                                "spec.cidr \"%s\" has host bits set; did you mean %s?",
                                ipam_show(spec->cidr).s, ipam_cidr_format(&p->cidr, cb));
    ipam_cidr_format(&p->cidr, cb);
    p->first = p->cidr.network.v;
    p->last = p->first | ~ipam_prefix_mask(ipam_plen128(&p->cidr));
    ipam_addr fa = {p->first}, la = {p->last};
    ipam_addr_format(fa, ab);
    ipam_addr_format(la, bb);

    p->range_lo = p->first;
    p->range_hi = p->last;
    if (!absent(spec->range_start)) {
        if ((rc = parse_field(p, "spec.rangeStart", spec->range_start, &p->range_lo, err)))
            return rc;
        if (p->range_lo < p->first || p->range_lo > p->last)
            return ipam_set_problem(err, IPAM_PROBLEM_RANGE_START_OUTSIDE_CIDR,
                                    "spec.rangeStart \"%s\" is outside spec.cidr %s (%s to %s)",
                                    ipam_show(spec->range_start).s, cb, ab, bb);
    }
    if (!absent(spec->range_end)) {
        if ((rc = parse_field(p, "spec.rangeEnd", spec->range_end, &p->range_hi, err)))
            return rc;
        if (p->range_hi < p->first || p->range_hi > p->last)
            return ipam_set_problem(err, IPAM_PROBLEM_RANGE_END_OUTSIDE_CIDR,
                                    "spec.rangeEnd \"%s\" is outside spec.cidr %s (%s to %s)",
                                    ipam_show(spec->range_end).s, cb, ab, bb);
    }
    if (p->range_hi < p->range_lo)
        return ipam_set_problem(
            err, IPAM_PROBLEM_RANGE_REVERSED,
            "spec.rangeEnd \"%s\" is before spec.rangeStart \"%s\"; rangeEnd must "
            "be the same as or after rangeStart",
            ipam_show(spec->range_end).s, ipam_show(spec->range_start).s);
    if (!absent(spec->gateway)) {
        if ((rc = parse_field(p, "spec.gateway", spec->gateway, &p->gateway, err)))
            return rc;
        if (p->gateway < p->first || p->gateway > p->last)
            return ipam_set_problem(err, IPAM_PROBLEM_GATEWAY_OUTSIDE_CIDR,
                                    "spec.gateway \"%s\" is outside spec.cidr %s (%s to %s); the "
                                    "gateway must be on the pool's subnet",
                                    ipam_show(spec->gateway).s, cb, ab, bb);
        p->has_gateway = true;
        holes[n_holes].lo = holes[n_holes].hi = p->gateway;
        n_holes++;
    }

    if (v4_has_net_bcast(p)) {
        holes[n_holes].lo = holes[n_holes].hi = p->first;
        n_holes++;
        holes[n_holes].lo = holes[n_holes].hi = p->last;
        n_holes++;
    }
    if (v6_has_anycast(p)) {
        holes[n_holes].lo = holes[n_holes].hi = p->first;
        n_holes++;
    }
    if (p->cidr.family == 6) {
        span m = {V4_BASE, V4_BASE | 0xffffffffu};
        if (!(m.hi < p->first || m.lo > p->last)) {
            holes[n_holes].lo = m.lo > p->first ? m.lo : p->first;
            holes[n_holes].hi = m.hi < p->last ? m.hi : p->last;
            n_holes++;
        }
    }

    if ((rc = parse_excludes(p, spec, holes, &n_holes, err)))
        return rc;
    return build_segments(p, holes, n_holes);
}

int ipam_pool_new(const ipam_pool_spec *spec, ipam_pool **out, ipam_error *err)
{
    if (err)
        ipam_error_clear(err);
    if (!spec || !out || (spec->n_exclude && !spec->exclude))
        return KC_ERR_INVALID_ARG;
    if (spec->n_exclude > (SIZE_MAX / sizeof(seg)) - 8)
        return KC_ERR_NOMEM;
    ipam_pool *p = calloc(1, sizeof *p);
    /* Holes: every exclude plus gateway, network, broadcast/anycast, mapped block. */
    span *holes = malloc((spec->n_exclude + 4) * sizeof *holes);
    if (p)
        p->excl = malloc((spec->n_exclude ? spec->n_exclude : 1) * sizeof *p->excl);
    if (!p || !holes || !p->excl) {
        free(holes);
        ipam_pool_free(p);
        return KC_ERR_NOMEM;
    }
    int rc = pool_init(p, spec, holes, err);
    free(holes);
    if (rc) {
        ipam_pool_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void ipam_pool_free(ipam_pool *pool)
{
    if (!pool)
        return;
    free(pool->excl);
    free(pool->segs);
    free(pool);
}

int ipam_pool_family(const ipam_pool *pool)
{
    return pool->cidr.family;
}

const ipam_cidr *ipam_pool_cidr(const ipam_pool *pool)
{
    return &pool->cidr;
}

bool ipam_pool_gateway(const ipam_pool *pool, ipam_addr *out)
{
    if (!pool->has_gateway)
        return false;
    if (out)
        out->v = pool->gateway;
    return true;
}

ipam_u128 ipam_pool_total(const ipam_pool *pool)
{
    return pool->total;
}

int64_t ipam_pool_total_i64(const ipam_pool *pool)
{
    return ipam_u128_to_i64_sat(pool->total);
}

size_t ipam_pool_segments(const ipam_pool *pool)
{
    return pool->n_segs;
}

const char *ipam_pool_format_address(const ipam_pool *pool, ipam_addr a, char buf[IPAM_CIDR_STRLEN])
{
    char ab[IPAM_ADDR_STRLEN];
    snprintf(buf, IPAM_CIDR_STRLEN, "%s/%u", ipam_addr_format(a, ab), pool->cidr.prefix);
    return buf;
}

static bool in_excludes(const ipam_pool *p, ipam_u128 v)
{
    size_t lo = 0, hi = p->n_excl;
    while (lo < hi) { /* first span with span.hi >= v */
        size_t mid = lo + (hi - lo) / 2;
        if (p->excl[mid].hi < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n_excl && p->excl[lo].lo <= v;
}

ipam_check_result ipam_check(const ipam_pool *pool, ipam_addr a)
{
    if (ipam_addr_family(a) != pool->cidr.family)
        return IPAM_ADDR_WRONG_FAMILY;
    if (a.v < pool->first || a.v > pool->last)
        return IPAM_ADDR_OUTSIDE_CIDR;
    if (v4_has_net_bcast(pool) && a.v == pool->first)
        return IPAM_ADDR_NETWORK;
    if (v4_has_net_bcast(pool) && a.v == pool->last)
        return IPAM_ADDR_BROADCAST;
    if (v6_has_anycast(pool) && a.v == pool->first)
        return IPAM_ADDR_SUBNET_ROUTER_ANYCAST;
    if (pool->has_gateway && a.v == pool->gateway)
        return IPAM_ADDR_GATEWAY;
    if (a.v < pool->range_lo || a.v > pool->range_hi)
        return IPAM_ADDR_OUTSIDE_RANGE;
    if (in_excludes(pool, a.v))
        return IPAM_ADDR_EXCLUDED;
    return IPAM_ADDR_OK;
}

bool ipam_contains(const ipam_pool *pool, ipam_addr a)
{
    return ipam_check(pool, a) == IPAM_ADDR_OK;
}

int ipam_explain(const ipam_pool *pool, ipam_addr a, char **out)
{
    char ab[IPAM_ADDR_STRLEN], cb[IPAM_CIDR_STRLEN], s[IPAM_ADDR_STRLEN], e[IPAM_ADDR_STRLEN];
    ipam_addr_format(a, ab);
    ipam_cidr_format(&pool->cidr, cb);
    ipam_addr rs = {pool->range_lo}, re = {pool->range_hi};
    int n = -1;
    switch (ipam_check(pool, a)) {
    case IPAM_ADDR_OK:
        n = asprintf(out, "%s can be allocated from %s", ab, cb);
        break;
    case IPAM_ADDR_WRONG_FAMILY:
        n = asprintf(out, "%s is %s but the pool's cidr %s is %s", ab,
                     family_name(ipam_addr_family(a)), cb, family_name(pool->cidr.family));
        break;
    case IPAM_ADDR_OUTSIDE_CIDR:
        n = asprintf(out, "%s is outside the pool's cidr %s", ab, cb);
        break;
    case IPAM_ADDR_NETWORK:
        n = asprintf(out, "%s is the network address of %s and is never allocated", ab, cb);
        break;
    case IPAM_ADDR_BROADCAST:
        n = asprintf(out, "%s is the broadcast address of %s and is never allocated", ab, cb);
        break;
    case IPAM_ADDR_SUBNET_ROUTER_ANYCAST:
        n = asprintf(out,
                     "%s is the subnet-router anycast address of %s (RFC 4291) and is never "
                     "allocated",
                     ab, cb);
        break;
    case IPAM_ADDR_GATEWAY:
        n = asprintf(out, "%s is the pool's gateway and is never allocated", ab);
        break;
    case IPAM_ADDR_OUTSIDE_RANGE:
        n = asprintf(out, "%s is outside the pool's range %s to %s", ab, ipam_addr_format(rs, s),
                     ipam_addr_format(re, e));
        break;
    case IPAM_ADDR_EXCLUDED:
        n = asprintf(out, "%s is in the pool's exclude list", ab);
        break;
    }
    if (n < 0) {
        *out = NULL;
        return KC_ERR_NOMEM;
    }
    return 0;
}

/* Index of the segment holding offset off (< total). */
size_t ipam_seg_of_offset(const ipam_pool *p, ipam_u128 off)
{
    size_t lo = 0, hi = p->n_segs;
    while (hi - lo > 1) { /* last segment with before <= off */
        size_t mid = lo + (hi - lo) / 2;
        if (p->segs[mid].before <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the segment holding address v, or n_segs. */
static size_t seg_of_addr(const ipam_pool *p, ipam_u128 v)
{
    size_t lo = 0, hi = p->n_segs;
    while (lo < hi) { /* first segment with hi >= v */
        size_t mid = lo + (hi - lo) / 2;
        if (p->segs[mid].hi < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < p->n_segs && p->segs[lo].lo <= v) ? lo : p->n_segs;
}

bool ipam_offset_to_addr(const ipam_pool *pool, ipam_u128 off, ipam_addr *out)
{
    if (off >= pool->total)
        return false;
    const seg *s = &pool->segs[ipam_seg_of_offset(pool, off)];
    out->v = s->lo + (off - s->before);
    return true;
}

bool ipam_addr_to_offset(const ipam_pool *pool, ipam_addr a, ipam_u128 *off)
{
    size_t i = seg_of_addr(pool, a.v);
    if (i == pool->n_segs)
        return false;
    *off = pool->segs[i].before + (a.v - pool->segs[i].lo);
    return true;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

ipam_u128 ipam_hint(const ipam_pool *pool, const char *key)
{
    if (pool->total == 0)
        return 0;
    /*
     * FNV-1a over the key, then splitmix64 finalizers; widened to 128 bits
     * only when the total needs it (a 64-bit modulo is much cheaper).
     */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *k = (const unsigned char *)(key ? key : ""); *k; k++)
        h = (h ^ *k) * 0x100000001b3ull;
    uint64_t lo = mix64(h + 0x632be59bd9b4e019ull);
    if (pool->total <= UINT64_MAX)
        return lo % (uint64_t)pool->total;
    ipam_u128 wide = ((ipam_u128)mix64(h ^ 0x9e3779b97f4a7c15ull) << 64) | lo;
    return wide % pool->total;
}

bool ipam_pool_overlap(const ipam_pool *a, const ipam_pool *b)
{
    if (!a || !b)
        return false;
    /* Both segment lists are sorted and disjoint: walk them together. */
    size_t i = 0, j = 0;
    while (i < a->n_segs && j < b->n_segs) {
        const seg *x = &a->segs[i], *y = &b->segs[j];
        if (x->hi < y->lo)
            i++;
        else if (y->hi < x->lo)
            j++;
        else
            return true;
    }
    return false;
}
