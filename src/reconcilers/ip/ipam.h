/*
 * ipam - the pure (network-free) core of IP address management for IPPool /
 * IPClaim: address and CIDR parsing and formatting, the allocatable set of a
 * pool, a sparse set of used addresses, "next free address from a hint", and
 * the deterministic Reservation object name of (pool, address).
 *
 * How the reconciler uses it. Each held address is a cluster-scoped
 * Reservation named ipam_reservation_name(pool, address) and created with
 * POST, so a second creator gets 409 AlreadyExists: the API server is the only
 * lock. The reconciler builds an ipam_pool from the IPPool spec (an invalid
 * spec gives an ipam_error whose message goes into a Ready=False condition
 * with reason InvalidSpec), rebuilds an ipam_used per pool from the informer
 * cache of Reservations (ipam_reservation_name_parse + ipam_used_add), and
 * picks an address with ipam_next_free(pool, used, ipam_hint(pool, claim
 * uid)). The hint spreads concurrent allocations over the pool, so two
 * workers or replicas allocating for different claims rarely race for the
 * same address; on a 409 the reconciler marks the address used (its cache
 * lags) and asks again from the same hint, which yields the next free one.
 * Because the hint is a function of the claim's UID, a retry after a crash
 * tries the same address first and finds the Reservation it already created.
 *
 * Addresses. An ipam_addr is one 128-bit number in the IPv6 space; an IPv4
 * address is stored as its IPv4-mapped form ::ffff:a.b.c.d, so input written
 * as "::ffff:10.0.0.1" *is* 10.0.0.1 (it formats as "10.0.0.1" and belongs to
 * IPv4 pools). Zones ("fe80::1%eth0") are rejected. IPv4 octets with leading
 * zeros ("010.0.0.1") are rejected (inet_pton; Go's net/netip agree). IPv6
 * is formatted per RFC 5952 (lower case, longest run of two or more zero
 * groups compressed, first run on a tie); unlike glibc's inet_ntop this never
 * uses dotted notation for ::/96, so output matches Go's and kubectl's.
 *
 * The allocatable set of a pool (what counts in status.total) is
 *     cidr ∩ [rangeStart, rangeEnd]
 *     minus gateway, minus every exclude (addresses or CIDRs),
 *     minus, for IPv4, the network and broadcast addresses -- except for /31
 *       and /32, where every address is usable (RFC 3021 point-to-point; a
 *       /32 is its single address),
 *     minus, for IPv6, the subnet-router anycast address (the all-zero host,
 *       RFC 4291 2.6.1: routers answer it, a host must not hold it) -- except
 *       for /127 and /128, where every address is usable (RFC 6164). The
 *       all-ones IPv6 address is allocatable: IPv6 has no broadcast. This is
 *       what Python's ipaddress hosts() and the Kubernetes Service allocator
 *       do. (Whereabouts skips the first *and* last address of IPv6 ranges
 *       too, treating them like IPv4; we follow the RFC instead.)
 *     minus, for IPv6 pools, the IPv4-mapped block ::ffff:0:0/96 where the
 *       cidr overlaps it: those addresses are IPv4 addresses here.
 * Because an IPv6 pool of prefix <= 126 loses its all-zero address, the
 * total always fits in 128 bits (::/0 has 2^128 - 1 - 2^32).
 *
 * Spec rules (ipam_pool_new; NULL or "" means the optional field is absent):
 *   - cidr is required and must be canonical: host bits set is an error that
 *     names the network meant ("did you mean 10.20.0.0/16?"), as is an
 *     exclude CIDR with host bits set. "::ffff:10.0.0.0/104" is 10.0.0.0/8.
 *   - rangeStart, rangeEnd and gateway must be addresses of the cidr's family
 *     inside the cidr; rangeEnd must not be before rangeStart. A range that
 *     starts on the network address is fine (that address is skipped anyway).
 *   - exclude entries must be of the cidr's family; entries outside the cidr
 *     are allowed and ignored (the part inside the cidr of one that overlaps
 *     it is excluded), so one exclude list can be shared by several pools.
 *   - a spec whose allocatable set is empty is valid: total 0.
 *
 * Offsets. The allocatable set, in address order, is numbered 0 .. total-1;
 * ipam_offset_to_addr / ipam_addr_to_offset map both ways in O(log holes).
 *
 * Status codes are kc_status values (kc_error.h): 0 ok, KC_ERR_INVALID_ARG,
 * KC_ERR_NOMEM.
 *
 * Threading: an ipam_pool is immutable once made, so any number of threads
 * may read one at once. An ipam_used is not locked: one thread owns it (or
 * the caller locks). Every other function is pure and thread-safe.
 */
#ifndef PROVISIO_IPAM_H
#define PROVISIO_IPAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kc_error.h"

__extension__ typedef unsigned __int128 ipam_u128;

/* One address; IPv4 is kept IPv4-mapped (see above). Plain value, copy freely. */
typedef struct ipam_addr {
    ipam_u128 v;
} ipam_addr;

/* A parsed CIDR. prefix counts in the family's own bits (0..32 or 0..128). */
typedef struct ipam_cidr {
    ipam_addr addr;    /* as written: "10.20.0.5/16" gives 10.20.0.5 */
    ipam_addr network; /* host bits cleared: 10.20.0.0 */
    int family;        /* 4 or 6 */
    unsigned prefix;
} ipam_cidr;

/* Buffer sizes for the formatters (include the NUL). */
#define IPAM_ADDR_STRLEN 40 /* "ffff:ffff:...:ffff" is 39 */
#define IPAM_CIDR_STRLEN 44 /* address + "/128" */
#define IPAM_U128_STRLEN 40 /* 2^128-1 has 39 decimal digits */
#define IPAM_RESERVATION_NAME_MAX 253

/* ---- addresses ----------------------------------------------------------- */

/*
 * Parse an IPv4 or IPv6 address (s borrowed, NUL-terminated). 0 or
 * KC_ERR_INVALID_ARG (out untouched).
 */
int ipam_addr_parse(const char *s, ipam_addr *out);

/* Write the canonical text of a into buf and return buf. Never fails. */
const char *ipam_addr_format(ipam_addr a, char buf[IPAM_ADDR_STRLEN]);

/* 4 for an IPv4(-mapped) address, else 6. */
int ipam_addr_family(ipam_addr a);

ipam_addr ipam_addr_from_v4(uint32_t host_order);

/* The IPv4 address in host order; only meaningful when family is 4. */
uint32_t ipam_addr_v4(ipam_addr a);

/* <0, 0, >0 in numeric (address) order. */
int ipam_addr_cmp(ipam_addr a, ipam_addr b);

/*
 * Parse "addr/prefix". The prefix is decimal without sign or leading zeros,
 * at most 32 (IPv4) or 128 (IPv6); host bits may be set (check
 * ipam_cidr_is_canonical). 0 or KC_ERR_INVALID_ARG, KC_ERR_NOMEM.
 */
int ipam_cidr_parse(const char *s, ipam_cidr *out);

/* True if addr == network (no host bits set). */
bool ipam_cidr_is_canonical(const ipam_cidr *c);

/* "network/prefix" into buf; returns buf. */
const char *ipam_cidr_format(const ipam_cidr *c, char buf[IPAM_CIDR_STRLEN]);

/* Decimal text of v into buf; returns buf. */
const char *ipam_u128_format(ipam_u128 v, char buf[IPAM_U128_STRLEN]);

/* v clamped to INT64_MAX (status fields are int64). */
int64_t ipam_u128_to_i64_sat(ipam_u128 v);

/* ---- pools --------------------------------------------------------------- */

/* The IPPool spec fields, all borrowed for the call only. */
typedef struct ipam_pool_spec {
    const char *cidr;           /* required */
    const char *range_start;    /* optional: NULL or "" */
    const char *range_end;      /* optional */
    const char *gateway;        /* optional */
    const char *const *exclude; /* n_exclude addresses or CIDRs; may be NULL if 0 */
    size_t n_exclude;
} ipam_pool_spec;

/* What is wrong with a spec; tests and callers may switch on it. */
typedef enum ipam_problem {
    IPAM_PROBLEM_NONE = 0,
    IPAM_PROBLEM_CIDR_MISSING,
    IPAM_PROBLEM_CIDR_SYNTAX,
    IPAM_PROBLEM_CIDR_HOST_BITS,
    IPAM_PROBLEM_ADDRESS_SYNTAX,  /* rangeStart, rangeEnd or gateway */
    IPAM_PROBLEM_FAMILY_MISMATCH, /* any field of the other family than cidr */
    IPAM_PROBLEM_RANGE_START_OUTSIDE_CIDR,
    IPAM_PROBLEM_RANGE_END_OUTSIDE_CIDR,
    IPAM_PROBLEM_RANGE_REVERSED,
    IPAM_PROBLEM_GATEWAY_OUTSIDE_CIDR,
    IPAM_PROBLEM_EXCLUDE_SYNTAX,
    IPAM_PROBLEM_EXCLUDE_HOST_BITS,
} ipam_problem;

/*
 * Filled by ipam_pool_new on KC_ERR_INVALID_ARG. message is owned (free with
 * ipam_error_clear) and reads like
 *   spec.rangeStart "10.21.0.1" is outside spec.cidr 10.20.0.0/16
 * naming the field, quoting what was written (at most 64 characters of it,
 * non-printable bytes as '?'), and saying what would be valid. It is NULL
 * only if memory ran out while writing it. Zero it before first use
 * (IPAM_ERROR_INIT).
 */
typedef struct ipam_error {
    ipam_problem problem;
    char *message;
} ipam_error;

#define IPAM_ERROR_INIT                                                                            \
    {                                                                                              \
        IPAM_PROBLEM_NONE, NULL                                                                    \
    }

/* Free the message and zero err; err may be NULL. */
void ipam_error_clear(ipam_error *err);

typedef struct ipam_pool ipam_pool;

/*
 * Validate spec and build the pool; *out is owned by the caller
 * (ipam_pool_free). Returns 0; KC_ERR_INVALID_ARG with err (may be NULL)
 * filled when the spec is invalid; KC_ERR_NOMEM. O(n log n) in the number of
 * excludes; memory O(excludes).
 */
int ipam_pool_new(const ipam_pool_spec *spec, ipam_pool **out, ipam_error *err);

/* NULL is a no-op. */
void ipam_pool_free(ipam_pool *pool);

int ipam_pool_family(const ipam_pool *pool);

/* The cidr, canonical (the spec's). */
const ipam_cidr *ipam_pool_cidr(const ipam_pool *pool);

/* The gateway into *out and true, or false when the spec has none. */
bool ipam_pool_gateway(const ipam_pool *pool, ipam_addr *out);

/* Size of the allocatable set; exact (see above why it fits). */
ipam_u128 ipam_pool_total(const ipam_pool *pool);

/* Same, saturating at INT64_MAX, for status.total. */
int64_t ipam_pool_total_i64(const ipam_pool *pool);

/* Number of maximal runs of allocatable addresses (1 + holes, roughly). */
size_t ipam_pool_segments(const ipam_pool *pool);

/*
 * status.address form, "10.20.0.5/16" / "fd00::5/64": a with the pool's
 * prefix, into buf; returns buf.
 */
const char *ipam_pool_format_address(const ipam_pool *pool, ipam_addr a,
                                     char buf[IPAM_CIDR_STRLEN]);

/* Why an address can or cannot be allocated from a pool (first reason that applies). */
typedef enum ipam_check_result {
    IPAM_ADDR_OK = 0,
    IPAM_ADDR_WRONG_FAMILY,
    IPAM_ADDR_OUTSIDE_CIDR,
    IPAM_ADDR_NETWORK,               /* IPv4 network address (prefix <= 30) */
    IPAM_ADDR_BROADCAST,             /* IPv4 broadcast address (prefix <= 30) */
    IPAM_ADDR_SUBNET_ROUTER_ANYCAST, /* IPv6 all-zero host (prefix <= 126) */
    IPAM_ADDR_GATEWAY,
    IPAM_ADDR_OUTSIDE_RANGE, /* in cidr, outside [rangeStart, rangeEnd] */
    IPAM_ADDR_EXCLUDED,
} ipam_check_result;

/* O(log excludes). */
ipam_check_result ipam_check(const ipam_pool *pool, ipam_addr a);

/* True iff ipam_check(pool, a) == IPAM_ADDR_OK: a is in the allocatable set. */
bool ipam_contains(const ipam_pool *pool, ipam_addr a);

/*
 * Whether two pools' allocatable sets share an address (their CIDRs may
 * overlap while ranges, excludes or gateways keep them apart: then they do
 * not overlap). Pools of different families never do. O(segments of both).
 */
bool ipam_pool_overlap(const ipam_pool *a, const ipam_pool *b);

/*
 * A sentence for a person about ipam_check(pool, a), e.g.
 *   10.20.0.0 is the network address of 10.20.0.0/16
 * for a claim condition message (spec.address requests). *out is owned by the
 * caller (free). 0 or KC_ERR_NOMEM.
 */
int ipam_explain(const ipam_pool *pool, ipam_addr a, char **out);

/* The address at offset off (< total) into *out: true; false when off >= total. */
bool ipam_offset_to_addr(const ipam_pool *pool, ipam_u128 off, ipam_addr *out);

/* The offset of a: true; false when a is not allocatable. */
bool ipam_addr_to_offset(const ipam_pool *pool, ipam_addr a, ipam_u128 *off);

/*
 * A start offset for a claim: a 128-bit hash of key (the claim's UID;
 * borrowed) reduced modulo the pool's total, 0 if total is 0. Same key, same
 * pool spec: same hint, in every replica and across restarts.
 */
ipam_u128 ipam_hint(const ipam_pool *pool, const char *key);

/* ---- used addresses ------------------------------------------------------ */

/*
 * A set of addresses, kept as a balanced tree (treap) of maximal runs of
 * consecutive addresses, so "the end of the run of used addresses starting
 * here" is O(log runs) however long the run. Memory: about 48 bytes per run
 * (at most one run per address). Addresses of any family and of no pool may
 * be held; the set is independent of pool specs, so a spec change needs no
 * rebuild.
 */
typedef struct ipam_used ipam_used;

/* New empty set into *out (owned; ipam_used_free). 0 or KC_ERR_NOMEM. */
int ipam_used_new(ipam_used **out);

/* NULL is a no-op. */
void ipam_used_free(ipam_used *u);

/* Add a (idempotent). 0 or KC_ERR_NOMEM (the set is unchanged then). O(log runs). */
int ipam_used_add(ipam_used *u, ipam_addr a);

/*
 * Remove a if present (removing an absent address is 0). 0 or KC_ERR_NOMEM
 * (splitting a run needs a node; the set is unchanged then). O(log runs).
 */
int ipam_used_remove(ipam_used *u, ipam_addr a);

bool ipam_used_contains(const ipam_used *u, ipam_addr a);

/* Number of addresses held. */
uint64_t ipam_used_count(const ipam_used *u);

/* Number of maximal runs of consecutive addresses held. */
size_t ipam_used_runs(const ipam_used *u);

/* Empty the set (keeps its memory for reuse). */
void ipam_used_clear(ipam_used *u);

/*
 * How many addresses of u are in pool's allocatable set (status.allocated as
 * the pool sees it; available = total - this). O(runs + segments).
 */
ipam_u128 ipam_used_count_in_pool(const ipam_pool *pool, const ipam_used *u);

/*
 * The first allocatable address not in used (NULL = empty set) at offset
 * >= hint % total, wrapping around to offset 0: into *out, true. false when
 * every allocatable address is used (PoolExhausted) or total is 0.
 * O((1 + segments crossed) * log runs): it jumps over whole runs of used
 * addresses and whole holes, never walks the range address by address.
 */
bool ipam_next_free(const ipam_pool *pool, const ipam_used *used, ipam_u128 hint, ipam_addr *out);

/* ---- reservation names --------------------------------------------------- */

/*
 * The Reservation object name of (pool, a): "<pool>.<address>" where the
 * address is written with '-' for separators and nothing else:
 *   IPv4 10.20.0.5            -> "<pool>.10-20-0-5"        (4 decimal groups)
 *   IPv6 fd00::a              -> "<pool>.fd00-0-0-0-0-0-0-a" (8 hex groups, no
 *                                 leading zeros, no "::" -- a compressed form
 *                                 could start or end with '-', which a DNS
 *                                 label may not)
 * It is a DNS-1123 subdomain, lower case, unique (the address part has no
 * '.', so the last '.' splits it; 4 vs 8 groups tells the family) and
 * reversible (ipam_reservation_name_parse). pool_name (borrowed) must be a
 * DNS-1123 subdomain itself and short enough that every address of its
 * family fits in 253 characters: ipam_reservation_pool_name_max(family).
 * *out is owned by the caller (free). 0, KC_ERR_INVALID_ARG, KC_ERR_NOMEM.
 */
int ipam_reservation_name(const char *pool_name, ipam_addr a, char **out);

/* 237 for IPv4 (address part <= 15), 213 for IPv6 (<= 39). */
size_t ipam_reservation_pool_name_max(int family);

/*
 * Reverse of ipam_reservation_name. Accepts exactly the names it makes (the
 * canonical encoding only). pool_out (may be NULL) gets a new string owned by
 * the caller (free). 0, KC_ERR_INVALID_ARG (outputs untouched), KC_ERR_NOMEM.
 */
int ipam_reservation_name_parse(const char *name, char **pool_out, ipam_addr *addr_out);

#endif
