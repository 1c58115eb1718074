/*
 * ipam_internal - what the files of ipam (ipam_addr.c, ipam_pool.c,
 * ipam_used.c, ipam_names.c) share: the 128-bit address space's constants,
 * the pool's segments, and a few helpers. ipam_addr.c's opening comment
 * describes the representation. Not for users of ipam: they see ipam.h.
 */
#ifndef PROVISIO_IPAM_INTERNAL_H
#define PROVISIO_IPAM_INTERNAL_H

#include "ipam.h"

#define U128_MAX (~(ipam_u128)0)
/* ::ffff:0:0, the IPv4-mapped block (/96). */
#define V4_BASE (((ipam_u128)0xffffu) << 32)

/* A short, printable excerpt of user input for messages (explicitly cut). */
typedef struct excerpt {
    char s[72];
} excerpt;

/* ipam_addr.c */
bool ipam_is_v4(ipam_u128 v);
excerpt ipam_show(const char *in);
int ipam_set_problem(ipam_error *err, ipam_problem problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ipam_parse_addr(const char *s, ipam_u128 *out, bool *v4_syntax);
unsigned ipam_plen128(const ipam_cidr *c);
/* Mask of the top plen bits of 128. */
ipam_u128 ipam_prefix_mask(unsigned plen);

/* ipam_pool.c: the allocatable set as sorted, disjoint segments. */
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

/* The segment holding allocatable offset off (< total). */
size_t ipam_seg_of_offset(const ipam_pool *p, ipam_u128 off);

#endif
