/*
 * ipam - address math, pool allocatable sets, used-address sets and
 * reservation names for the IP reconcilers (see ipam.h for the contract).
 *
 * Every address lives in one 128-bit space (IPv4 as ::ffff:a.b.c.d), so one
 * comparison orders any two addresses and one set holds both families.
 *
 * A pool is reduced, once, to a sorted array of *segments*: maximal runs
 * [lo, hi] of allocatable addresses, each with `before`, the number of
 * allocatable addresses in earlier segments. Invariants: segments are sorted
 * and disjoint; every address inside a segment is allocatable and every
 * address between two consecutive segments is not (at least one hole
 * separates them); segs[i].before is the sum of the sizes of segs[0..i-1] and
 * total the sum of all sizes.
 * Segments come from [rangeStart, rangeEnd] minus the sorted, merged list of
 * holes (gateway, excludes, network/broadcast, IPv6 anycast, IPv4-mapped
 * block), so their number is at most holes + 1. Offset <-> address is a binary
 * search over them.
 *
 * The used set is a treap of disjoint, non-adjacent runs [lo, hi] keyed by
 * lo (adjacent runs are always merged, so a run's hi + 1 is never used). Nodes
 * sit in one growable array addressed by 32-bit indexes (0 is "none"), with
 * a free list; the treap operations never allocate, and the operations that
 * may need a new node reserve it first, so an out-of-memory leaves the set
 * unchanged.
 *
 * ipam_next_free therefore moves in big steps: from the hint's address, one
 * lookup finds the end of the used run there; end + 1 is free unless it
 * leaves the segment, in which case it continues at the next segment's
 * start (wrapping once). Each step crosses a whole run or a whole hole.
 */
#include "ipam.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U128_MAX (~(ipam_u128)0)
/* ::ffff:0:0, the IPv4-mapped block (/96). */
#define V4_BASE (((ipam_u128)0xffffu) << 32)

/* ---- small helpers ------------------------------------------------------- */

static bool is_v4(ipam_u128 v)
{
    return (v >> 32) == 0xffffu;
}

/* Mask of the top plen bits of 128. */
static ipam_u128 prefix_mask(unsigned plen)
{
    return plen == 0 ? 0 : U128_MAX << (128 - plen);
}

/* A short, printable excerpt of user input for messages (explicitly cut). */
typedef struct excerpt {
    char s[72];
} excerpt;

static excerpt show(const char *in)
{
    excerpt e;
    size_t i = 0;
    if (!in)
        in = "";
    for (; in[i] && i < 64; i++) {
        unsigned char c = (unsigned char)in[i];
        e.s[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (in[i]) {
        memcpy(e.s + i, "...", 3);
        i += 3;
    }
    e.s[i] = '\0';
    return e;
}

__attribute__((format(printf, 3, 4))) static int set_problem(ipam_error *err, ipam_problem problem,
                                                             const char *fmt, ...)
{
    if (!err)
        return KC_ERR_INVALID_ARG;
    free(err->message);
    err->message = NULL;
    err->problem = problem;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    err->message = msg;
    return KC_ERR_INVALID_ARG;
}

void ipam_error_clear(ipam_error *err)
{
    if (!err)
        return;
    free(err->message);
    err->message = NULL;
    err->problem = IPAM_PROBLEM_NONE;
}

/* ---- addresses ----------------------------------------------------------- */

static ipam_u128 from_bytes(const unsigned char b[16])
{
    ipam_u128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | b[i];
    return v;
}

/* Parse; *v4_syntax tells whether it was written dotted-quad. */
static int parse_addr(const char *s, ipam_u128 *out, bool *v4_syntax)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        *out = V4_BASE | (ipam_u128)ntohl(a4.s_addr);
        *v4_syntax = true;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &a6) == 1) {
        *out = from_bytes(a6.s6_addr);
        *v4_syntax = false;
        return 0;
    }
    return KC_ERR_INVALID_ARG;
}

int ipam_addr_parse(const char *s, ipam_addr *out)
{
    if (!s || !out)
        return KC_ERR_INVALID_ARG;
    ipam_u128 v;
    bool v4s;
    int rc = parse_addr(s, &v, &v4s);
    if (rc == 0)
        out->v = v;
    return rc;
}

int ipam_addr_family(ipam_addr a)
{
    return is_v4(a.v) ? 4 : 6;
}

ipam_addr ipam_addr_from_v4(uint32_t host_order)
{
    ipam_addr a = {V4_BASE | host_order};
    return a;
}

uint32_t ipam_addr_v4(ipam_addr a)
{
    return (uint32_t)(a.v & 0xffffffffu);
}

int ipam_addr_cmp(ipam_addr a, ipam_addr b)
{
    return a.v < b.v ? -1 : a.v > b.v ? 1 : 0;
}

/*
 * RFC 5952 text: lower-case hex groups without leading zeros, the longest run
 * of at least two zero groups (the first on a tie) as "::".
 */
static void format_v6(ipam_u128 v, char *buf)
{
    unsigned g[8];
    for (int i = 0; i < 8; i++)
        g[i] = (unsigned)((v >> (16 * (7 - i))) & 0xffffu);
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (g[i] != 0) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && g[j] == 0)
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j;
    }
    if (best_len < 2) {
        best = -1;
        best_len = 0;
    }
    char *p = buf;
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            *p++ = ':';
            *p++ = ':';
            i += best_len - 1;
            continue;
        }
        if (i > 0 && i != best + best_len)
            *p++ = ':';
        p += sprintf(p, "%x", g[i]);
    }
    *p = '\0';
}

const char *ipam_addr_format(ipam_addr a, char buf[IPAM_ADDR_STRLEN])
{
    if (is_v4(a.v)) {
        uint32_t x = ipam_addr_v4(a);
        snprintf(buf, IPAM_ADDR_STRLEN, "%u.%u.%u.%u", x >> 24, (x >> 16) & 0xffu, (x >> 8) & 0xffu,
                 x & 0xffu);
    } else {
        format_v6(a.v, buf);
    }
    return buf;
}

const char *ipam_u128_format(ipam_u128 v, char buf[IPAM_U128_STRLEN])
{
    char tmp[IPAM_U128_STRLEN];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

int64_t ipam_u128_to_i64_sat(ipam_u128 v)
{
    return v > (ipam_u128)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* ---- CIDRs --------------------------------------------------------------- */

/* Prefix in the 128-bit space. */
static unsigned plen128(const ipam_cidr *c)
{
    return c->family == 4 ? c->prefix + 96 : c->prefix;
}

int ipam_cidr_parse(const char *s, ipam_cidr *out)
{
    if (!s || !out)
        return KC_ERR_INVALID_ARG;
    const char *slash = strrchr(s, '/');
    if (!slash || slash == s)
        return KC_ERR_INVALID_ARG;
    /* Prefix: decimal, no sign, no leading zeros, at most 3 digits. */
    const char *d = slash + 1;
    size_t nd = strlen(d);
    if (nd == 0 || nd > 3 || (nd > 1 && d[0] == '0'))
        return KC_ERR_INVALID_ARG;
    unsigned prefix = 0;
    for (size_t i = 0; i < nd; i++) {
        if (d[i] < '0' || d[i] > '9')
            return KC_ERR_INVALID_ARG;
        prefix = prefix * 10 + (unsigned)(d[i] - '0');
    }
    char *a = strndup(s, (size_t)(slash - s));
    if (!a)
        return KC_ERR_NOMEM;
    ipam_u128 v;
    bool v4s;
    int rc = parse_addr(a, &v, &v4s);
    free(a);
    if (rc)
        return rc;
    ipam_cidr c;
    if (v4s) {
        if (prefix > 32)
            return KC_ERR_INVALID_ARG;
        c.family = 4;
        c.prefix = prefix;
    } else {
        if (prefix > 128)
            return KC_ERR_INVALID_ARG;
        if (is_v4(v) && prefix >= 96) {
            c.family = 4; /* ::ffff:10.0.0.0/104 is 10.0.0.0/8 */
            c.prefix = prefix - 96;
        } else {
            c.family = 6;
            c.prefix = prefix;
        }
    }
    c.addr.v = v;
    c.network.v = v & prefix_mask(plen128(&c));
    *out = c;
    return 0;
}

bool ipam_cidr_is_canonical(const ipam_cidr *c)
{
    return c && c->addr.v == c->network.v;
}

const char *ipam_cidr_format(const ipam_cidr *c, char buf[IPAM_CIDR_STRLEN])
{
    char a[IPAM_ADDR_STRLEN];
    snprintf(buf, IPAM_CIDR_STRLEN, "%s/%u", ipam_addr_format(c->network, a), c->prefix);
    return buf;
}

/* ---- pools --------------------------------------------------------------- */

typedef struct span {
    ipam_u128 lo, hi;
} span;

typedef struct seg {
    ipam_u128 lo, hi, before;
} seg;

struct ipam_pool {
    ipam_cidr cidr;
    ipam_u128 first, last;        /* cidr bounds */
    ipam_u128 range_lo, range_hi; /* rangeStart/rangeEnd, defaulted to the bounds */
    bool has_gateway;
    ipam_u128 gateway;
    span *excl; /* excludes clipped to the cidr, sorted, merged */
    size_t n_excl;
    seg *segs;
    size_t n_segs;
    ipam_u128 total;
};

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
    if (parse_addr(text, &v, &v4s) != 0)
        return set_problem(err, IPAM_PROBLEM_ADDRESS_SYNTAX,
                           "%s \"%s\" is not an IP address; write one such as %s", field,
                           show(text).s, p->cidr.family == 4 ? "10.20.0.1" : "fd00::1");
    int fam = is_v4(v) ? 4 : 6;
    if (fam != p->cidr.family)
        return set_problem(err, IPAM_PROBLEM_FAMILY_MISMATCH,
                           "%s \"%s\" is %s but spec.cidr %s is %s", field, show(text).s,
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
            return set_problem(err, IPAM_PROBLEM_EXCLUDE_SYNTAX,
                               "spec.exclude[%zu] is empty; write an IP address or a CIDR", i);
        if (strchr(e, '/')) {
            ipam_cidr c;
            int rc = ipam_cidr_parse(e, &c);
            if (rc == KC_ERR_NOMEM)
                return rc;
            if (rc)
                return set_problem(err, IPAM_PROBLEM_EXCLUDE_SYNTAX,
                                   "spec.exclude[%zu] \"%s\" is not an IP address or CIDR", i,
                                   show(e).s);
            fam = c.family;
            if (fam == p->cidr.family && !ipam_cidr_is_canonical(&c))
                return set_problem(err, IPAM_PROBLEM_EXCLUDE_HOST_BITS,
                                   "spec.exclude[%zu] \"%s\" has host bits set; did you mean %s?",
                                   i, show(e).s, ipam_cidr_format(&c, nb));
            sp.lo = c.network.v;
            sp.hi = c.network.v | ~prefix_mask(plen128(&c));
        } else {
            bool v4s;
            if (parse_addr(e, &sp.lo, &v4s) != 0)
                return set_problem(err, IPAM_PROBLEM_EXCLUDE_SYNTAX,
                                   "spec.exclude[%zu] \"%s\" is not an IP address or CIDR", i,
                                   show(e).s);
            sp.hi = sp.lo;
            fam = is_v4(sp.lo) ? 4 : 6;
        }
        if (fam != p->cidr.family)
            return set_problem(err, IPAM_PROBLEM_FAMILY_MISMATCH,
                               "spec.exclude[%zu] \"%s\" is %s but spec.cidr %s is %s", i,
                               show(e).s, family_name(fam), ipam_cidr_format(&p->cidr, cb),
                               family_name(p->cidr.family));
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
        return set_problem(err, IPAM_PROBLEM_CIDR_MISSING,
                           "spec.cidr is required: an IPv4 or IPv6 CIDR such as 10.20.0.0/16 or "
                           "fd00::/64");
    int rc = ipam_cidr_parse(spec->cidr, &p->cidr);
    if (rc == KC_ERR_NOMEM)
        return rc;
    if (rc)
        return set_problem(err, IPAM_PROBLEM_CIDR_SYNTAX,
                           "spec.cidr \"%s\" is not a CIDR; write a network address and a prefix "
                           "length such as 10.20.0.0/16 or fd00::/64",
                           show(spec->cidr).s);
    if (!ipam_cidr_is_canonical(&p->cidr))
        return set_problem(err, IPAM_PROBLEM_CIDR_HOST_BITS,
                           "spec.cidr \"%s\" has host bits set; did you mean %s?",
                           show(spec->cidr).s, ipam_cidr_format(&p->cidr, cb));
    ipam_cidr_format(&p->cidr, cb);
    p->first = p->cidr.network.v;
    p->last = p->first | ~prefix_mask(plen128(&p->cidr));
    ipam_addr fa = {p->first}, la = {p->last};
    ipam_addr_format(fa, ab);
    ipam_addr_format(la, bb);

    p->range_lo = p->first;
    p->range_hi = p->last;
    if (!absent(spec->range_start)) {
        if ((rc = parse_field(p, "spec.rangeStart", spec->range_start, &p->range_lo, err)))
            return rc;
        if (p->range_lo < p->first || p->range_lo > p->last)
            return set_problem(err, IPAM_PROBLEM_RANGE_START_OUTSIDE_CIDR,
                               "spec.rangeStart \"%s\" is outside spec.cidr %s (%s to %s)",
                               show(spec->range_start).s, cb, ab, bb);
    }
    if (!absent(spec->range_end)) {
        if ((rc = parse_field(p, "spec.rangeEnd", spec->range_end, &p->range_hi, err)))
            return rc;
        if (p->range_hi < p->first || p->range_hi > p->last)
            return set_problem(err, IPAM_PROBLEM_RANGE_END_OUTSIDE_CIDR,
                               "spec.rangeEnd \"%s\" is outside spec.cidr %s (%s to %s)",
                               show(spec->range_end).s, cb, ab, bb);
    }
    if (p->range_hi < p->range_lo)
        return set_problem(err, IPAM_PROBLEM_RANGE_REVERSED,
                           "spec.rangeEnd \"%s\" is before spec.rangeStart \"%s\"; rangeEnd must "
                           "be the same as or after rangeStart",
                           show(spec->range_end).s, show(spec->range_start).s);
    if (!absent(spec->gateway)) {
        if ((rc = parse_field(p, "spec.gateway", spec->gateway, &p->gateway, err)))
            return rc;
        if (p->gateway < p->first || p->gateway > p->last)
            return set_problem(err, IPAM_PROBLEM_GATEWAY_OUTSIDE_CIDR,
                               "spec.gateway \"%s\" is outside spec.cidr %s (%s to %s); the "
                               "gateway must be on the pool's subnet",
                               show(spec->gateway).s, cb, ab, bb);
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
static size_t seg_of_offset(const ipam_pool *p, ipam_u128 off)
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
    const seg *s = &pool->segs[seg_of_offset(pool, off)];
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

/* ---- used set: a treap of runs ------------------------------------------- */

typedef struct used_node {
    ipam_u128 lo, hi;
    uint32_t left, right; /* 0 = none; also the free list's link (left) */
    uint32_t prio;
} used_node;

struct ipam_used {
    used_node *n; /* n[0] unused: index 0 means "none" */
    uint32_t cap; /* entries allocated */
    uint32_t hw;  /* entries ever handed out, >= 1 */
    uint32_t free_list;
    uint32_t root;
    size_t runs;
    uint64_t count;
    uint64_t rng;
};

int ipam_used_new(ipam_used **out)
{
    ipam_used *u = calloc(1, sizeof *u);
    if (!u)
        return KC_ERR_NOMEM;
    u->cap = 16;
    u->n = malloc(u->cap * sizeof *u->n);
    if (!u->n) {
        free(u);
        return KC_ERR_NOMEM;
    }
    u->hw = 1;
    u->rng = 0x2545f4914f6cdd1dull;
    *out = u;
    return 0;
}

void ipam_used_free(ipam_used *u)
{
    if (!u)
        return;
    free(u->n);
    free(u);
}

void ipam_used_clear(ipam_used *u)
{
    u->root = 0;
    u->hw = 1;
    u->free_list = 0;
    u->runs = 0;
    u->count = 0;
}

/* Make sure one node can be taken without allocating. */
static int reserve_node(ipam_used *u)
{
    if (u->free_list || u->hw < u->cap)
        return 0;
    if (u->cap > UINT32_MAX / 2)
        return KC_ERR_NOMEM;
    uint32_t cap = u->cap * 2;
    used_node *n = realloc(u->n, (size_t)cap * sizeof *n);
    if (!n)
        return KC_ERR_NOMEM;
    u->n = n;
    u->cap = cap;
    return 0;
}

/* Take a node (reserve_node must have succeeded). */
static uint32_t take_node(ipam_used *u, ipam_u128 lo, ipam_u128 hi)
{
    uint32_t k;
    if (u->free_list) {
        k = u->free_list;
        u->free_list = u->n[k].left;
    } else {
        k = u->hw++;
    }
    /* xorshift64*: priorities only need to look random to the key order. */
    u->rng ^= u->rng >> 12;
    u->rng ^= u->rng << 25;
    u->rng ^= u->rng >> 27;
    u->n[k].lo = lo;
    u->n[k].hi = hi;
    u->n[k].left = u->n[k].right = 0;
    u->n[k].prio = (uint32_t)((u->rng * 0x2545f4914f6cdd1dull) >> 32);
    u->runs++;
    return k;
}

static void give_node(ipam_used *u, uint32_t k)
{
    u->n[k].left = u->free_list;
    u->free_list = k;
    u->runs--;
}

/* Split t into nodes with lo < key (*l) and lo >= key (*r). */
static void split(used_node *n, uint32_t t, ipam_u128 key, uint32_t *l, uint32_t *r)
{
    if (!t) {
        *l = *r = 0;
        return;
    }
    if (n[t].lo < key) {
        split(n, n[t].right, key, &n[t].right, r);
        *l = t;
    } else {
        split(n, n[t].left, key, l, &n[t].left);
        *r = t;
    }
}

/* Join a and b where every key of a is below every key of b. */
static uint32_t merge(used_node *n, uint32_t a, uint32_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (n[a].prio > n[b].prio) {
        n[a].right = merge(n, n[a].right, b);
        return a;
    }
    n[b].left = merge(n, a, n[b].left);
    return b;
}

/* Put k into the subtree t by key, rotating it up by priority; returns the new subtree root. */
static uint32_t insert_at(used_node *n, uint32_t t, uint32_t k)
{
    if (!t)
        return k;
    if (n[k].prio > n[t].prio) {
        split(n, t, n[k].lo, &n[k].left, &n[k].right);
        return k;
    }
    if (n[k].lo < n[t].lo) {
        uint32_t c = insert_at(n, n[t].left, k);
        n[t].left = c;
    } else {
        uint32_t c = insert_at(n, n[t].right, k);
        n[t].right = c;
    }
    return t;
}

static void insert_node(ipam_used *u, uint32_t k)
{
    u->root = insert_at(u->n, u->root, k);
}

/* Unlink the node whose lo is key (it must exist); returns its index. */
static uint32_t erase(used_node *n, uint32_t *t, ipam_u128 key)
{
    while (n[*t].lo != key)
        t = key < n[*t].lo ? &n[*t].left : &n[*t].right;
    uint32_t k = *t;
    *t = merge(n, n[k].left, n[k].right);
    return k;
}

/* The run with the largest lo <= v, or 0. */
static uint32_t find_le(const ipam_used *u, ipam_u128 v)
{
    uint32_t t = u->root, best = 0;
    while (t) {
        if (u->n[t].lo <= v) {
            best = t;
            t = u->n[t].right;
        } else {
            t = u->n[t].left;
        }
    }
    return best;
}

/* In one descent: the run with the largest lo <= v (*le) and the one with the smallest lo > v
 * (*gt), 0 if none. */
static void find_neighbours(const ipam_used *u, ipam_u128 v, uint32_t *le, uint32_t *gt)
{
    uint32_t t = u->root;
    *le = *gt = 0;
    while (t) {
        if (u->n[t].lo <= v) {
            *le = t;
            t = u->n[t].right;
        } else {
            *gt = t;
            t = u->n[t].left;
        }
    }
}

/* If v is used, the last address of its run into *end: true. */
static bool run_end(const ipam_used *u, ipam_u128 v, ipam_u128 *end)
{
    uint32_t p = find_le(u, v);
    if (!p || u->n[p].hi < v)
        return false;
    *end = u->n[p].hi;
    return true;
}

bool ipam_used_contains(const ipam_used *u, ipam_addr a)
{
    ipam_u128 end;
    return run_end(u, a.v, &end);
}

int ipam_used_add(ipam_used *u, ipam_addr a)
{
    ipam_u128 x = a.v;
    uint32_t p, s;
    find_neighbours(u, x, &p, &s);
    if (p && u->n[p].hi >= x)
        return 0;
    bool join_left = p && u->n[p].hi + 1 == x;  /* n[p].hi < x: no overflow */
    bool join_right = s && x + 1 == u->n[s].lo; /* x < n[s].lo: no overflow */
    if (join_left && join_right) {
        u->n[p].hi = u->n[s].hi;
        give_node(u, erase(u->n, &u->root, u->n[s].lo));
    } else if (join_left) {
        u->n[p].hi = x;
    } else if (join_right) {
        u->n[s].lo = x; /* no key lies in (x, lo): order holds */
    } else {
        if (reserve_node(u))
            return KC_ERR_NOMEM;
        insert_node(u, take_node(u, x, x));
    }
    u->count++;
    return 0;
}

int ipam_used_remove(ipam_used *u, ipam_addr a)
{
    ipam_u128 x = a.v;
    uint32_t p = find_le(u, x);
    if (!p || u->n[p].hi < x)
        return 0;
    if (u->n[p].lo == u->n[p].hi) {
        give_node(u, erase(u->n, &u->root, x));
    } else if (x == u->n[p].lo) {
        u->n[p].lo = x + 1; /* x < hi */
    } else if (x == u->n[p].hi) {
        u->n[p].hi = x - 1; /* x > lo */
    } else {
        if (reserve_node(u)) /* may move u->n; p stays valid as an index */
            return KC_ERR_NOMEM;
        ipam_u128 hi = u->n[p].hi;
        u->n[p].hi = x - 1;
        insert_node(u, take_node(u, x + 1, hi));
    }
    u->count--;
    return 0;
}

uint64_t ipam_used_count(const ipam_used *u)
{
    return u->count;
}

size_t ipam_used_runs(const ipam_used *u)
{
    return u->runs;
}

typedef struct count_walk {
    const ipam_pool *pool;
    size_t seg; /* first segment that may overlap the next run */
    ipam_u128 n;
} count_walk;

/* In-order over the runs, merging against the segments. */
static void count_runs(const used_node *n, uint32_t t, count_walk *w)
{
    if (!t)
        return;
    count_runs(n, n[t].left, w);
    const seg *segs = w->pool->segs;
    size_t ns = w->pool->n_segs;
    while (w->seg < ns && segs[w->seg].hi < n[t].lo)
        w->seg++;
    for (size_t i = w->seg; i < ns && segs[i].lo <= n[t].hi; i++) {
        ipam_u128 lo = segs[i].lo > n[t].lo ? segs[i].lo : n[t].lo;
        ipam_u128 hi = segs[i].hi < n[t].hi ? segs[i].hi : n[t].hi;
        w->n += hi - lo + 1;
    }
    count_runs(n, n[t].right, w);
}

ipam_u128 ipam_used_count_in_pool(const ipam_pool *pool, const ipam_used *u)
{
    count_walk w = {pool, 0, 0};
    if (u)
        count_runs(u->n, u->root, &w);
    return w.n;
}

bool ipam_next_free(const ipam_pool *pool, const ipam_used *used, ipam_u128 hint, ipam_addr *out)
{
    if (pool->total == 0)
        return false;
    ipam_u128 off = hint % pool->total;
    size_t s = seg_of_offset(pool, off);
    ipam_u128 a = pool->segs[s].lo + (off - pool->segs[s].before);
    /*
     * Visit the hint's segment from the hint, every other segment once, and
     * the hint's segment again from its start: n_segs + 1 steps at most. A
     * run's end + 1 is never used (runs are maximal), so each step either
     * returns or moves on to the next segment.
     */
    for (size_t step = 0; step <= pool->n_segs; step++) {
        ipam_u128 end;
        if (!used || !run_end(used, a, &end)) {
            out->v = a;
            return true;
        }
        if (end < pool->segs[s].hi) {
            out->v = end + 1;
            return true;
        }
        s = s + 1 == pool->n_segs ? 0 : s + 1;
        a = pool->segs[s].lo;
    }
    return false;
}

/* ---- reservation names --------------------------------------------------- */

#define V4_NAME_MAX 15 /* 255-255-255-255 */
#define V6_NAME_MAX 39 /* ffff-ffff-ffff-ffff-ffff-ffff-ffff-ffff */

size_t ipam_reservation_pool_name_max(int family)
{
    return IPAM_RESERVATION_NAME_MAX - 1 - (family == 4 ? V4_NAME_MAX : V6_NAME_MAX);
}

static bool is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A DNS-1123 subdomain of len characters (len > 0 checked here). */
static bool is_subdomain(const char *s, size_t len)
{
    if (len == 0 || len > IPAM_RESERVATION_NAME_MAX)
        return false;
    size_t label_start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (i == label_start || !is_alnum_lower(s[label_start]) || !is_alnum_lower(s[i - 1]))
                return false;
            label_start = i + 1;
        } else if (!is_alnum_lower(s[i]) && s[i] != '-') {
            return false;
        }
    }
    return true;
}

/* Address part of a reservation name into buf (>= V6_NAME_MAX + 1). */
static void encode_addr(ipam_addr a, char *buf)
{
    if (is_v4(a.v)) {
        uint32_t x = ipam_addr_v4(a);
        sprintf(buf, "%u-%u-%u-%u", x >> 24, (x >> 16) & 0xffu, (x >> 8) & 0xffu, x & 0xffu);
        return;
    }
    char *p = buf;
    for (int i = 0; i < 8; i++)
        p += sprintf(p, i ? "-%x" : "%x", (unsigned)((a.v >> (16 * (7 - i))) & 0xffffu));
}

int ipam_reservation_name(const char *pool_name, ipam_addr a, char **out)
{
    if (!pool_name || !out)
        return KC_ERR_INVALID_ARG;
    size_t len = strlen(pool_name);
    if (len > ipam_reservation_pool_name_max(ipam_addr_family(a)) || !is_subdomain(pool_name, len))
        return KC_ERR_INVALID_ARG;
    char enc[V6_NAME_MAX + 1];
    encode_addr(a, enc);
    if (asprintf(out, "%s.%s", pool_name, enc) < 0) {
        *out = NULL;
        return KC_ERR_NOMEM;
    }
    return 0;
}

/*
 * One group of the address part: 1..maxd digits of the base (lower-case hex
 * for 16), no leading zero unless it is "0". Returns the value or -1.
 */
static long parse_group(const char *s, size_t n, int base, size_t maxd)
{
    if (n == 0 || n > maxd || (n > 1 && s[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        int d;
        if (s[i] >= '0' && s[i] <= '9')
            d = s[i] - '0';
        else if (base == 16 && s[i] >= 'a' && s[i] <= 'f')
            d = s[i] - 'a' + 10;
        else
            return -1;
        v = v * base + d;
    }
    return v;
}

static bool decode_addr(const char *s, ipam_addr *out)
{
    size_t groups = 1;
    for (const char *p = s; *p; p++)
        groups += *p == '-';
    if (groups != 4 && groups != 8)
        return false;
    int base = groups == 4 ? 10 : 16;
    ipam_u128 v = 0;
    const char *p = s;
    for (size_t g = 0; g < groups; g++) {
        const char *dash = strchr(p, '-');
        size_t n = dash ? (size_t)(dash - p) : strlen(p);
        long x = parse_group(p, n, base, base == 10 ? 3 : 4);
        if (x < 0 || (base == 10 && x > 255))
            return false;
        v = (v << (base == 10 ? 8 : 16)) | (ipam_u128)(unsigned long)x;
        p += n + 1;
    }
    if (base == 10)
        v |= V4_BASE;
    else if (is_v4(v))
        return false; /* an IPv4 address is always named in the 4-group form */
    out->v = v;
    return true;
}

int ipam_reservation_name_parse(const char *name, char **pool_out, ipam_addr *addr_out)
{
    if (!name)
        return KC_ERR_INVALID_ARG;
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return KC_ERR_INVALID_ARG;
    ipam_addr a;
    if (!decode_addr(dot + 1, &a))
        return KC_ERR_INVALID_ARG;
    size_t len = (size_t)(dot - name);
    if (len > ipam_reservation_pool_name_max(ipam_addr_family(a)) || !is_subdomain(name, len))
        return KC_ERR_INVALID_ARG;
    if (pool_out) {
        char *pool = strndup(name, len);
        if (!pool)
            return KC_ERR_NOMEM;
        *pool_out = pool;
    }
    if (addr_out)
        *addr_out = a;
    return 0;
}
