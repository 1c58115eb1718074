/*
 * ipam - address math, pool allocatable sets, used-address sets and
 * reservation names for the network domain (see ipam.h for the contract).
 * This file: addresses and CIDRs; ipam_pool.c pools, ipam_used.c used sets
 * and next_free, ipam_names.c Reservation names.
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
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam_internal.h"
#include "pv_strbuf.h"

/* ---- small helpers ------------------------------------------------------- */

bool ipam_is_v4(ipam_u128 v)
{
    return (v >> 32) == 0xffffu;
}

/* Mask of the top plen bits of 128. */
ipam_u128 ipam_prefix_mask(unsigned plen)
{
    return plen == 0 ? 0 : U128_MAX << (128 - plen);
}

excerpt ipam_show(const char *in)
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

int ipam_set_problem(ipam_error *err, ipam_problem problem, const char *fmt, ...)
{
    if (!err)
        return KC_ERR_INVALID_ARG;
    free(err->message);
    err->message = NULL;
    err->problem = problem;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (pv_vasprintf(&msg, fmt, ap) < 0)
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
int ipam_parse_addr(const char *s, ipam_u128 *out, bool *v4_syntax)
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
    int rc = ipam_parse_addr(s, &v, &v4s);
    if (rc == 0)
        out->v = v;
    return rc;
}

int ipam_addr_family(ipam_addr a)
{
    return ipam_is_v4(a.v) ? 4 : 6;
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
    if (ipam_is_v4(a.v)) {
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
unsigned ipam_plen128(const ipam_cidr *c)
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
    int rc = ipam_parse_addr(a, &v, &v4s);
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
        if (ipam_is_v4(v) && prefix >= 96) {
            c.family = 4; /* ::ffff:10.0.0.0/104 is 10.0.0.0/8 */
            c.prefix = prefix - 96;
        } else {
            c.family = 6;
            c.prefix = prefix;
        }
    }
    c.addr.v = v;
    c.network.v = v & ipam_prefix_mask(ipam_plen128(&c));
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
