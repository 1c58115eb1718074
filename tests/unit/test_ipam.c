/*
 * Unit tests of ipam: address/CIDR parsing and formatting, pool allocatable
 * sets and their validation, the used-address set, next-free search and
 * reservation names. The property tests cross-check the pool and the search
 * against a naive enumeration written independently here.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam.h"

/* ---- helpers ------------------------------------------------------------- */

static ipam_addr A(const char *s)
{
    ipam_addr a;
    cr_assert_eq(ipam_addr_parse(s, &a), 0, "parse %s", s);
    return a;
}

/* Formats into one of a few rotating buffers (tests only). */
static const char *F(ipam_addr a)
{
    static char bufs[8][IPAM_ADDR_STRLEN];
    static int i;
    i = (i + 1) % 8;
    return ipam_addr_format(a, bufs[i]);
}

static const char *U(ipam_u128 v)
{
    static char bufs[4][IPAM_U128_STRLEN];
    static int i;
    i = (i + 1) % 4;
    return ipam_u128_format(v, bufs[i]);
}

static ipam_pool *pool_ex(const char *cidr, const char *rs, const char *re, const char *gw,
                          const char *const *ex, size_t n)
{
    ipam_pool_spec spec = {cidr, rs, re, gw, ex, n};
    ipam_pool *p = NULL;
    ipam_error err = IPAM_ERROR_INIT;
    int rc = ipam_pool_new(&spec, &p, &err);
    cr_assert_eq(rc, 0, "pool %s: %s", cidr, err.message ? err.message : "?");
    ipam_error_clear(&err);
    return p;
}

static ipam_pool *pool(const char *cidr)
{
    return pool_ex(cidr, NULL, NULL, NULL, NULL, 0);
}

/* Expect the spec to be rejected with problem; returns the message (caller frees). */
static char *bad(const char *cidr, const char *rs, const char *re, const char *gw,
                 const char *const *ex, size_t n, ipam_problem problem)
{
    ipam_pool_spec spec = {cidr, rs, re, gw, ex, n};
    ipam_pool *p = NULL;
    ipam_error err = IPAM_ERROR_INIT;
    cr_assert_eq(ipam_pool_new(&spec, &p, &err), KC_ERR_INVALID_ARG);
    cr_assert_null(p);
    cr_assert_eq(err.problem, problem, "problem %d, want %d (%s)", err.problem, problem,
                 err.message);
    cr_assert_not_null(err.message);
    char *m = err.message;
    err.message = NULL;
    ipam_error_clear(&err);
    return m;
}

static void expect_msg(char *m, const char *needle)
{
    cr_expect(strstr(m, needle) != NULL, "message \"%s\" lacks \"%s\"", m, needle);
    free(m);
}

static ipam_used *used_new(void)
{
    ipam_used *u = NULL;
    cr_assert_eq(ipam_used_new(&u), 0);
    return u;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint32_t rnd_below(uint32_t n)
{
    return n ? (uint32_t)(rnd() % n) : 0;
}

/* ---- addresses ----------------------------------------------------------- */

Test(ipam_addr, ipv4_parses_and_formats_canonically)
{
    const char *cases[] = {"10.20.0.5", "0.0.0.0", "255.255.255.255", "192.168.1.1"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_addr a = A(cases[i]);
        cr_expect_eq(ipam_addr_family(a), 4);
        cr_expect_str_eq(F(a), cases[i]);
    }
    cr_expect_eq(ipam_addr_v4(A("10.20.0.5")), 0x0a140005u);
    cr_expect_eq(ipam_addr_cmp(ipam_addr_from_v4(0x0a140005u), A("10.20.0.5")), 0);
    cr_expect_lt(ipam_addr_cmp(A("10.0.0.9"), A("10.0.0.10")), 0);
}

Test(ipam_addr, ipv6_formats_per_rfc5952)
{
    const char *cases[][2] = {
        {"FD00:0:0:0:0:0:0:A", "fd00::a"},
        {"2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"},
        {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},    /* tie: first run */
        {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"}, /* one zero group stays */
        {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},          /* longest run wins */
        {"::", "::"},
        {"::1", "::1"},
        {"1::", "1::"},
        {"::2:3", "::2:3"}, /* glibc inet_ntop would say ::0.2.0.3 */
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_addr a = A(cases[i][0]);
        cr_expect_eq(ipam_addr_family(a), 6, "%s", cases[i][0]);
        cr_expect_str_eq(F(a), cases[i][1]);
    }
}

Test(ipam_addr, ipv4_mapped_is_treated_as_ipv4)
{
    ipam_addr a = A("::ffff:10.0.0.1");
    cr_expect_eq(ipam_addr_family(a), 4);
    cr_expect_eq(ipam_addr_cmp(a, A("10.0.0.1")), 0);
    cr_expect_eq(ipam_addr_cmp(A("::ffff:a00:1"), A("10.0.0.1")), 0);
    cr_expect_str_eq(F(a), "10.0.0.1");
    /* Just outside the mapped block is IPv6. */
    cr_expect_eq(ipam_addr_family(A("::fffe:a00:1")), 6);
    cr_expect_eq(ipam_addr_family(A("::1:ffff:a00:1")), 6);
}

Test(ipam_addr, malformed_addresses_are_rejected)
{
    const char *cases[] = {"",           "10.0.0",      "10.0.0.256",        "010.0.0.1",
                           " 10.0.0.1",  "10.0.0.1 ",   "fe80::1%eth0",      "1:2:3:4:5:6:7:8:9",
                           "::g",        "10.0.0.1/24", "1:2:3:4:5:6:7:8::", "10.0.0.-1",
                           "0x0a.0.0.1", ":::1"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_addr a = {42};
        cr_expect_eq(ipam_addr_parse(cases[i], &a), KC_ERR_INVALID_ARG, "\"%s\"", cases[i]);
        cr_expect(a.v == 42, "out touched for \"%s\"", cases[i]);
    }
    ipam_addr a;
    cr_expect_eq(ipam_addr_parse(NULL, &a), KC_ERR_INVALID_ARG);
}

Test(ipam_addr, ipv6_format_agrees_with_inet_ntop_and_round_trips)
{
    for (int n = 0; n < 20000; n++) {
        unsigned char b[16];
        for (int g = 0; g < 8; g++) {
            uint16_t w = (rnd() & 1) ? 0 : (uint16_t)rnd();
            if ((rnd() & 3) == 0)
                w &= 0x00ff; /* short groups too */
            b[2 * g] = (unsigned char)(w >> 8);
            b[2 * g + 1] = (unsigned char)w;
        }
        ipam_u128 v = 0;
        for (int i = 0; i < 16; i++)
            v = (v << 8) | b[i];
        ipam_addr a = {v};
        const char *mine = F(a);
        /* Round trip through the parser, whatever the block. */
        cr_assert_eq(ipam_addr_cmp(A(mine), a), 0, "%s", mine);
        /* glibc prints ::/96 and ::ffff:0:0/96 dotted; we print v4 for the latter. */
        if ((v >> 32) == 0 || (v >> 32) == 0xffff)
            continue;
        char ref[INET6_ADDRSTRLEN];
        cr_assert_not_null(inet_ntop(AF_INET6, b, ref, sizeof ref));
        cr_assert_str_eq(mine, ref);
    }
}

/* ---- CIDRs --------------------------------------------------------------- */

Test(ipam_cidr, canonical_check_and_network)
{
    ipam_cidr c;
    char buf[IPAM_CIDR_STRLEN];
    cr_assert_eq(ipam_cidr_parse("10.20.0.5/16", &c), 0);
    cr_expect_not(ipam_cidr_is_canonical(&c));
    cr_expect_eq(c.family, 4);
    cr_expect_eq(c.prefix, 16);
    cr_expect_str_eq(F(c.addr), "10.20.0.5");
    cr_expect_str_eq(F(c.network), "10.20.0.0");
    cr_expect_str_eq(ipam_cidr_format(&c, buf), "10.20.0.0/16");

    cr_assert_eq(ipam_cidr_parse("10.20.0.0/16", &c), 0);
    cr_expect(ipam_cidr_is_canonical(&c));

    cr_assert_eq(ipam_cidr_parse("FD00::/64", &c), 0);
    cr_expect(ipam_cidr_is_canonical(&c));
    cr_expect_eq(c.family, 6);
    cr_expect_str_eq(ipam_cidr_format(&c, buf), "fd00::/64");

    cr_assert_eq(ipam_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
    cr_expect_eq(c.family, 4);
    cr_expect_eq(c.prefix, 8);
    cr_expect_str_eq(ipam_cidr_format(&c, buf), "10.0.0.0/8");

    cr_assert_eq(ipam_cidr_parse("0.0.0.0/0", &c), 0);
    cr_expect(ipam_cidr_is_canonical(&c));
    cr_assert_eq(ipam_cidr_parse("1.2.3.4/0", &c), 0);
    cr_expect_not(ipam_cidr_is_canonical(&c));
    cr_assert_eq(ipam_cidr_parse("fd00::1/128", &c), 0);
    cr_expect(ipam_cidr_is_canonical(&c));
}

Test(ipam_cidr, bad_prefixes_are_rejected)
{
    const char *cases[] = {"10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/08", "10.0.0.0/",
                           "10.0.0.0",    "/8",          "fd00::/129",  "10.0.0.0/8/8",
                           "10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0/8 ", "10.0.0/8",
                           "fd00::/0128", "x/8",         "fd00::%0/64"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_cidr c;
        cr_expect_eq(ipam_cidr_parse(cases[i], &c), KC_ERR_INVALID_ARG, "\"%s\"", cases[i]);
    }
}

/* ---- pool totals --------------------------------------------------------- */

Test(ipam_pool, v4_slash24_has_254_addresses)
{
    ipam_pool *p = pool("10.20.0.0/24");
    cr_expect(ipam_pool_total(p) == 254);
    cr_expect_eq(ipam_pool_total_i64(p), 254);
    cr_expect_eq(ipam_pool_family(p), 4);
    ipam_addr a;
    cr_assert(ipam_offset_to_addr(p, 0, &a));
    cr_expect_str_eq(F(a), "10.20.0.1");
    cr_assert(ipam_offset_to_addr(p, 253, &a));
    cr_expect_str_eq(F(a), "10.20.0.254");
    cr_expect_not(ipam_offset_to_addr(p, 254, &a));
    ipam_pool_free(p);
}

Test(ipam_pool, v4_slash16_has_65534_addresses)
{
    ipam_pool *p = pool("10.20.0.0/16");
    cr_expect(ipam_pool_total(p) == 65534);
    cr_expect_eq(ipam_pool_segments(p), 1);
    ipam_pool_free(p);
}

Test(ipam_pool, v4_slash31_and_slash32_use_every_address)
{
    /* RFC 3021: a /31 has no network or broadcast address; a /32 is one host. */
    ipam_pool *p = pool("10.0.0.0/31");
    cr_expect(ipam_pool_total(p) == 2);
    cr_expect(ipam_contains(p, A("10.0.0.0")));
    cr_expect(ipam_contains(p, A("10.0.0.1")));
    ipam_pool_free(p);

    p = pool("10.0.0.7/32");
    cr_expect(ipam_pool_total(p) == 1);
    cr_expect(ipam_contains(p, A("10.0.0.7")));
    ipam_pool_free(p);

    p = pool("10.0.0.4/30");
    cr_expect(ipam_pool_total(p) == 2);
    cr_expect_not(ipam_contains(p, A("10.0.0.4")));
    cr_expect_not(ipam_contains(p, A("10.0.0.7")));
    ipam_pool_free(p);
}

Test(ipam_pool, range_narrows_the_allocatable_set)
{
    ipam_pool *p = pool_ex("10.20.0.0/24", "10.20.0.10", "10.20.0.20", NULL, NULL, 0);
    cr_expect(ipam_pool_total(p) == 11);
    ipam_addr a;
    cr_assert(ipam_offset_to_addr(p, 0, &a));
    cr_expect_str_eq(F(a), "10.20.0.10");
    ipam_pool_free(p);

    /* A range starting on the network address still never yields it. */
    p = pool_ex("10.20.0.0/24", "10.20.0.0", "10.20.0.3", NULL, NULL, 0);
    cr_expect(ipam_pool_total(p) == 3);
    ipam_pool_free(p);

    /* Only one end given. */
    p = pool_ex("10.20.0.0/24", "10.20.0.200", NULL, NULL, NULL, 0);
    cr_expect(ipam_pool_total(p) == 55);
    ipam_pool_free(p);
    p = pool_ex("10.20.0.0/24", "", "10.20.0.9", "", NULL, 0); /* "" means absent */
    cr_expect(ipam_pool_total(p) == 9);
    ipam_pool_free(p);
}

Test(ipam_pool, gateway_and_single_excludes_are_subtracted)
{
    const char *ex[] = {"10.20.0.5", "10.20.0.6", "10.20.0.1", "10.20.0.255"};
    ipam_pool *p = pool_ex("10.20.0.0/24", NULL, NULL, "10.20.0.1", ex, 4);
    /* 254 - gateway - .5 - .6 (the excluded gateway and broadcast are not counted twice) */
    cr_expect(ipam_pool_total(p) == 251, "total %s", U(ipam_pool_total(p)));
    ipam_addr g;
    cr_assert(ipam_pool_gateway(p, &g));
    cr_expect_str_eq(F(g), "10.20.0.1");
    ipam_addr a;
    cr_assert(ipam_offset_to_addr(p, 0, &a));
    cr_expect_str_eq(F(a), "10.20.0.2");
    cr_assert(ipam_offset_to_addr(p, 3, &a));
    cr_expect_str_eq(F(a), "10.20.0.7");
    ipam_pool_free(p);

    p = pool("10.20.0.0/24");
    cr_expect_not(ipam_pool_gateway(p, &g));
    ipam_pool_free(p);
}

Test(ipam_pool, exclude_cidrs_are_subtracted_and_overlaps_merged)
{
    const char *ex[] = {"10.20.0.0/28", "10.20.0.8/29", "10.20.0.128/25", "10.20.0.200"};
    ipam_pool *p = pool_ex("10.20.0.0/24", NULL, NULL, NULL, ex, 4);
    /* hosts .1-.254 minus .0/28 (.1-.15) minus .128/25 (.128-.254): .16-.127 */
    cr_expect(ipam_pool_total(p) == 112, "total %s", U(ipam_pool_total(p)));
    cr_expect_eq(ipam_pool_segments(p), 1);
    ipam_pool_free(p);
}

Test(ipam_pool, excludes_outside_the_cidr_are_ignored_and_overlaps_clipped)
{
    const char *ex1[] = {"10.0.1.0/24", "192.168.0.1"};
    ipam_pool *p = pool_ex("10.0.0.0/24", NULL, NULL, NULL, ex1, 2);
    cr_expect(ipam_pool_total(p) == 254);
    ipam_pool_free(p);

    /* A wider exclude covers the whole pool: valid, and empty. */
    const char *ex2[] = {"10.0.0.0/23"};
    p = pool_ex("10.0.0.0/24", NULL, NULL, NULL, ex2, 1);
    cr_expect(ipam_pool_total(p) == 0);
    cr_expect_eq(ipam_pool_total_i64(p), 0);
    cr_expect_eq(ipam_pool_segments(p), 0);
    ipam_addr a;
    cr_expect_not(ipam_next_free(p, NULL, 0, &a));
    cr_expect(ipam_hint(p, "uid") == 0);
    ipam_pool_free(p);
}

Test(ipam_pool, v6_slash64_narrowed_by_range_counts_exactly)
{
    ipam_pool *p = pool_ex("fd00::/64", "fd00::100", "fd00::1ff", NULL, NULL, 0);
    cr_expect(ipam_pool_total(p) == 256);
    ipam_pool_free(p);

    const char *ex[] = {"fd00::180/121"};
    p = pool_ex("fd00::/64", "fd00::100", "fd00::1ff", "fd00::1", ex, 1);
    cr_expect(ipam_pool_total(p) == 128);
    ipam_addr a;
    cr_assert(ipam_offset_to_addr(p, 127, &a));
    cr_expect_str_eq(F(a), "fd00::17f");
    ipam_pool_free(p);

    /* Range over the top half of a /64: 2^63 addresses, exactly. */
    p = pool_ex("fd00::/64", "fd00::8000:0:0:0", NULL, NULL, NULL, 0);
    cr_expect(ipam_pool_total(p) == ((ipam_u128)1 << 63));
    cr_expect_eq(ipam_pool_total_i64(p), INT64_MAX); /* 2^63 > INT64_MAX */
    ipam_pool_free(p);
}

Test(ipam_pool, v6_totals_beyond_int64_are_exact_and_saturate)
{
    ipam_pool *p = pool("fd00::/64");
    /* The subnet-router anycast fd00:: is never allocated. */
    cr_expect(ipam_pool_total(p) == (((ipam_u128)1 << 64) - 1));
    cr_expect_str_eq(U(ipam_pool_total(p)), "18446744073709551615");
    cr_expect_eq(ipam_pool_total_i64(p), INT64_MAX);
    ipam_pool_free(p);

    p = pool("::/0"); /* minus :: and the IPv4-mapped block */
    cr_expect(ipam_pool_total(p) == ~(ipam_u128)0 - ((ipam_u128)1 << 32));
    ipam_pool_free(p);

    p = pool("fd00::/127"); /* RFC 6164: both */
    cr_expect(ipam_pool_total(p) == 2);
    cr_expect(ipam_contains(p, A("fd00::")));
    ipam_pool_free(p);
    p = pool("fd00::5/128");
    cr_expect(ipam_pool_total(p) == 1);
    ipam_pool_free(p);
    cr_expect_eq(ipam_u128_to_i64_sat(5), 5);
    cr_expect_eq(ipam_u128_to_i64_sat((ipam_u128)INT64_MAX), INT64_MAX);
    cr_expect_eq(ipam_u128_to_i64_sat((ipam_u128)INT64_MAX + 1), INT64_MAX);
}

Test(ipam_pool, v6_pool_never_allocates_the_ipv4_mapped_block)
{
    ipam_pool *p = pool("::/64");
    cr_expect(ipam_pool_total(p) == (((ipam_u128)1 << 64) - 1 - ((ipam_u128)1 << 32)));
    cr_expect_eq(ipam_check(p, A("::ffff:10.0.0.1")), IPAM_ADDR_WRONG_FAMILY);
    cr_expect(ipam_contains(p, A("::fffe:ffff:ffff")));
    cr_expect(ipam_contains(p, A("::1:0:0:0")));
    ipam_addr a;
    ipam_u128 off;
    cr_assert(ipam_addr_to_offset(p, A("::1:0:0:0"), &off));
    cr_assert(ipam_offset_to_addr(p, off - 1, &a));
    cr_expect_str_eq(F(a), "::fffe:ffff:ffff");
    ipam_pool_free(p);
}

/* ---- invalid specs ------------------------------------------------------- */

Test(ipam_spec, invalid_cidr_messages_say_what_to_write)
{
    expect_msg(bad(NULL, NULL, NULL, NULL, NULL, 0, IPAM_PROBLEM_CIDR_MISSING),
               "spec.cidr is required");
    expect_msg(bad("", NULL, NULL, NULL, NULL, 0, IPAM_PROBLEM_CIDR_MISSING), "10.20.0.0/16");
    expect_msg(bad("10.20.0.0", NULL, NULL, NULL, NULL, 0, IPAM_PROBLEM_CIDR_SYNTAX),
               "spec.cidr \"10.20.0.0\" is not a CIDR");
    expect_msg(bad("10.20.0.5/16", NULL, NULL, NULL, NULL, 0, IPAM_PROBLEM_CIDR_HOST_BITS),
               "spec.cidr \"10.20.0.5/16\" has host bits set; did you mean 10.20.0.0/16?");
    expect_msg(bad("fd00::1/64", NULL, NULL, NULL, NULL, 0, IPAM_PROBLEM_CIDR_HOST_BITS),
               "did you mean fd00::/64?");
}

Test(ipam_spec, invalid_range_messages_name_the_field_and_the_bounds)
{
    expect_msg(bad("10.20.0.0/16", "10.21.0.1", NULL, NULL, NULL, 0,
                   IPAM_PROBLEM_RANGE_START_OUTSIDE_CIDR),
               "spec.rangeStart \"10.21.0.1\" is outside spec.cidr 10.20.0.0/16 (10.20.0.0 to "
               "10.20.255.255)");
    expect_msg(bad("10.20.0.0/16", NULL, "10.19.255.255", NULL, NULL, 0,
                   IPAM_PROBLEM_RANGE_END_OUTSIDE_CIDR),
               "spec.rangeEnd \"10.19.255.255\" is outside spec.cidr 10.20.0.0/16");
    expect_msg(
        bad("10.20.0.0/16", "10.20.0.50", "10.20.0.40", NULL, NULL, 0, IPAM_PROBLEM_RANGE_REVERSED),
        "spec.rangeEnd \"10.20.0.40\" is before spec.rangeStart \"10.20.0.50\"");
    expect_msg(bad("10.20.0.0/16", "10.20.0.x", NULL, NULL, NULL, 0, IPAM_PROBLEM_ADDRESS_SYNTAX),
               "spec.rangeStart \"10.20.0.x\" is not an IP address");
    expect_msg(bad("fd00::/64", NULL, "10.20.0.1", NULL, NULL, 0, IPAM_PROBLEM_FAMILY_MISMATCH),
               "spec.rangeEnd \"10.20.0.1\" is IPv4 but spec.cidr fd00::/64 is IPv6");
}

Test(ipam_spec, invalid_gateway_and_exclude_messages)
{
    expect_msg(bad("10.20.0.0/16", NULL, NULL, "fd00::1", NULL, 0, IPAM_PROBLEM_FAMILY_MISMATCH),
               "spec.gateway \"fd00::1\" is IPv6 but spec.cidr 10.20.0.0/16 is IPv4");
    expect_msg(
        bad("10.20.0.0/16", NULL, NULL, "10.30.0.1", NULL, 0, IPAM_PROBLEM_GATEWAY_OUTSIDE_CIDR),
        "spec.gateway \"10.30.0.1\" is outside spec.cidr 10.20.0.0/16");
    expect_msg(bad("10.20.0.0/16", NULL, NULL, "gw", NULL, 0, IPAM_PROBLEM_ADDRESS_SYNTAX),
               "spec.gateway \"gw\" is not an IP address");
    const char *ex1[] = {"10.20.0.1", "10.20.0.0/40"};
    expect_msg(bad("10.20.0.0/16", NULL, NULL, NULL, ex1, 2, IPAM_PROBLEM_EXCLUDE_SYNTAX),
               "spec.exclude[1] \"10.20.0.0/40\" is not an IP address or CIDR");
    const char *ex2[] = {"fd00::/120"};
    expect_msg(bad("10.20.0.0/16", NULL, NULL, NULL, ex2, 1, IPAM_PROBLEM_FAMILY_MISMATCH),
               "spec.exclude[0] \"fd00::/120\" is IPv6 but spec.cidr 10.20.0.0/16 is IPv4");
    const char *ex3[] = {"10.20.1.7/24"};
    expect_msg(bad("10.20.0.0/16", NULL, NULL, NULL, ex3, 1, IPAM_PROBLEM_EXCLUDE_HOST_BITS),
               "spec.exclude[0] \"10.20.1.7/24\" has host bits set; did you mean 10.20.1.0/24?");
    const char *ex4[] = {""};
    expect_msg(bad("10.20.0.0/16", NULL, NULL, NULL, ex4, 1, IPAM_PROBLEM_EXCLUDE_SYNTAX),
               "spec.exclude[0] is empty");
}

Test(ipam_spec, messages_quote_at_most_64_printable_characters)
{
    char junk[300];
    memset(junk, 'z', sizeof junk - 1);
    junk[sizeof junk - 1] = '\0';
    junk[3] = '\n';
    char *m = bad(junk, NULL, NULL, NULL, NULL, 0, IPAM_PROBLEM_CIDR_SYNTAX);
    cr_expect(strstr(m, "zzz?zzz") != NULL, "%s", m);
    cr_expect(strstr(m, "...\"") != NULL, "%s", m);
    cr_expect(strchr(m, '\n') == NULL);
    cr_expect_lt(strlen(m), 220);
    free(m);
}

/* ---- contains / check ---------------------------------------------------- */

Test(ipam_check, rejects_network_broadcast_gateway_excluded_and_outside)
{
    const char *ex[] = {"10.20.0.64/26", "10.20.0.7"};
    ipam_pool *p = pool_ex("10.20.0.0/24", "10.20.0.0", "10.20.0.199", "10.20.0.1", ex, 2);
    struct {
        const char *a;
        ipam_check_result want;
        const char *msg;
    } cases[] = {
        {"10.20.0.0", IPAM_ADDR_NETWORK, "10.20.0.0 is the network address of 10.20.0.0/24"},
        {"10.20.0.255", IPAM_ADDR_BROADCAST, "10.20.0.255 is the broadcast address"},
        {"10.20.0.1", IPAM_ADDR_GATEWAY, "10.20.0.1 is the pool's gateway"},
        {"10.20.0.7", IPAM_ADDR_EXCLUDED, "exclude list"},
        {"10.20.0.100", IPAM_ADDR_EXCLUDED, "exclude list"},
        {"10.20.0.200", IPAM_ADDR_OUTSIDE_RANGE,
         "outside the pool's range 10.20.0.0 to 10.20.0.199"},
        {"10.20.1.5", IPAM_ADDR_OUTSIDE_CIDR, "outside the pool's cidr 10.20.0.0/24"},
        {"fd00::5", IPAM_ADDR_WRONG_FAMILY,
         "fd00::5 is IPv6 but the pool's cidr 10.20.0.0/24 is IPv4"},
        {"10.20.0.2", IPAM_ADDR_OK, "can be allocated"},
        {"10.20.0.63", IPAM_ADDR_OK, "can be allocated"},
        {"10.20.0.128", IPAM_ADDR_OK, "can be allocated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_addr a = A(cases[i].a);
        cr_expect_eq(ipam_check(p, a), cases[i].want, "%s", cases[i].a);
        cr_expect_eq(ipam_contains(p, a), cases[i].want == IPAM_ADDR_OK, "%s", cases[i].a);
        char *m = NULL;
        cr_assert_eq(ipam_explain(p, a, &m), 0);
        expect_msg(m, cases[i].msg);
    }
    ipam_pool_free(p);
}

Test(ipam_check, v6_skips_subnet_router_anycast_but_not_all_ones)
{
    ipam_pool *p = pool("fd00::/120");
    cr_expect(ipam_pool_total(p) == 255);
    cr_expect_eq(ipam_check(p, A("fd00::")), IPAM_ADDR_SUBNET_ROUTER_ANYCAST);
    cr_expect(ipam_contains(p, A("fd00::ff")));
    cr_expect(ipam_contains(p, A("fd00::1")));
    cr_expect_eq(ipam_check(p, A("fd00::100")), IPAM_ADDR_OUTSIDE_CIDR);
    char *m = NULL;
    cr_assert_eq(ipam_explain(p, A("fd00::"), &m), 0);
    expect_msg(m, "subnet-router anycast");
    ipam_pool_free(p);
}

Test(ipam_pool, offsets_map_both_ways_across_holes)
{
    const char *ex[] = {"10.0.0.16/28", "10.0.0.40"};
    ipam_pool *p = pool_ex("10.0.0.0/26", NULL, NULL, "10.0.0.3", ex, 2);
    ipam_u128 total = ipam_pool_total(p);
    cr_expect(total == 62 - 1 - 16 - 1);
    ipam_u128 expect_off = 0;
    for (uint32_t x = 0x0a000000u; x <= 0x0a00003fu; x++) {
        ipam_addr a = ipam_addr_from_v4(x), b;
        ipam_u128 off;
        bool in = ipam_addr_to_offset(p, a, &off);
        cr_expect_eq(in, ipam_contains(p, a), "%s", F(a));
        if (!in)
            continue;
        cr_expect(off == expect_off, "%s at %s", F(a), U(off));
        cr_assert(ipam_offset_to_addr(p, off, &b));
        cr_expect_eq(ipam_addr_cmp(a, b), 0);
        expect_off++;
    }
    cr_expect(expect_off == total);
    ipam_pool_free(p);
}

Test(ipam_pool, status_address_uses_the_pool_prefix)
{
    char buf[IPAM_CIDR_STRLEN];
    ipam_pool *p = pool("10.20.0.0/16");
    cr_expect_str_eq(ipam_pool_format_address(p, A("10.20.0.5"), buf), "10.20.0.5/16");
    ipam_pool_free(p);
    p = pool("fd00::/64");
    cr_expect_str_eq(ipam_pool_format_address(p, A("fd00::5"), buf), "fd00::5/64");
    cr_expect_eq(ipam_pool_cidr(p)->family, 6);
    cr_expect_eq(ipam_pool_cidr(p)->prefix, 64);
    ipam_pool_free(p);
    p = pool("::ffff:10.0.0.0/104");
    cr_expect_str_eq(ipam_pool_format_address(p, A("10.0.0.9"), buf), "10.0.0.9/8");
    ipam_pool_free(p);
}

/* ---- used set ------------------------------------------------------------ */

Test(ipam_used, runs_merge_and_split)
{
    ipam_used *u = used_new();
    ipam_addr a1 = A("10.0.0.1"), a2 = A("10.0.0.2"), a3 = A("10.0.0.3");
    cr_assert_eq(ipam_used_add(u, a1), 0);
    cr_assert_eq(ipam_used_add(u, a3), 0);
    cr_expect_eq(ipam_used_runs(u), 2);
    cr_assert_eq(ipam_used_add(u, a2), 0);
    cr_expect_eq(ipam_used_runs(u), 1);
    cr_expect_eq(ipam_used_count(u), 3);
    cr_assert_eq(ipam_used_add(u, a2), 0); /* idempotent */
    cr_expect_eq(ipam_used_count(u), 3);
    cr_assert_eq(ipam_used_remove(u, a2), 0);
    cr_expect_eq(ipam_used_runs(u), 2);
    cr_expect_not(ipam_used_contains(u, a2));
    cr_expect(ipam_used_contains(u, a1));
    cr_expect(ipam_used_contains(u, a3));
    cr_assert_eq(ipam_used_remove(u, A("10.9.9.9")), 0); /* absent */
    cr_expect_eq(ipam_used_count(u), 2);
    /* Both families and the extremes of the space live in one set. */
    cr_assert_eq(ipam_used_add(u, A("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), 0);
    cr_assert_eq(ipam_used_add(u, A("::")), 0);
    cr_expect(ipam_used_contains(u, A("::")));
    cr_expect_not(ipam_used_contains(u, A("::1")));
    cr_expect_not(ipam_used_contains(u, A("::ffff:10.0.0.2")));
    cr_expect(ipam_used_contains(u, A("::ffff:10.0.0.3")));
    cr_expect_eq(ipam_used_count(u), 4);
    ipam_used_clear(u);
    cr_expect_eq(ipam_used_count(u), 0);
    cr_expect_eq(ipam_used_runs(u), 0);
    cr_expect_not(ipam_used_contains(u, a1));
    ipam_used_free(u);
    ipam_used_free(NULL);
    ipam_pool_free(NULL);
}

Test(ipam_used, random_operations_match_a_bitmap)
{
    enum { N = 2048 };
    static bool bit[N];
    memset(bit, 0, sizeof bit);
    ipam_used *u = used_new();
    uint64_t count = 0;
    for (int step = 0; step < 60000; step++) {
        uint32_t x = rnd_below(N);
        ipam_addr a = ipam_addr_from_v4(0x0a000000u + x);
        /* Bias towards adding early and removing late to get long runs and splits. */
        bool add = rnd_below(100) < (step < 30000 ? 70u : 35u);
        if (add) {
            cr_assert_eq(ipam_used_add(u, a), 0);
            count += !bit[x];
            bit[x] = true;
        } else {
            cr_assert_eq(ipam_used_remove(u, a), 0);
            count -= bit[x];
            bit[x] = false;
        }
        if (step % 997 == 0) {
            size_t runs = 0;
            for (uint32_t i = 0; i < N; i++) {
                runs += bit[i] && (i == 0 || !bit[i - 1]);
                cr_assert_eq(ipam_used_contains(u, ipam_addr_from_v4(0x0a000000u + i)), bit[i]);
            }
            cr_assert_eq(ipam_used_runs(u), runs, "step %d", step);
        }
        cr_assert_eq(ipam_used_count(u), count);
    }
    ipam_used_free(u);
}

Test(ipam_used, count_in_pool_ignores_unallocatable_addresses)
{
    const char *ex[] = {"10.0.0.8/30"};
    ipam_pool *p = pool_ex("10.0.0.0/27", "10.0.0.0", "10.0.0.20", "10.0.0.1", ex, 1);
    ipam_used *u = used_new();
    /* .0 (network) .1 (gateway) .2-.12 (.8-.11 excluded) .25 (out of range) 10.1.0.1 fd00::1 */
    for (uint32_t x = 0; x <= 12; x++)
        cr_assert_eq(ipam_used_add(u, ipam_addr_from_v4(0x0a000000u + x)), 0);
    cr_assert_eq(ipam_used_add(u, A("10.0.0.25")), 0);
    cr_assert_eq(ipam_used_add(u, A("10.1.0.1")), 0);
    cr_assert_eq(ipam_used_add(u, A("fd00::1")), 0);
    /* allocatable among them: .2-.7 and .12 */
    cr_expect(ipam_used_count_in_pool(p, u) == 7, "%s", U(ipam_used_count_in_pool(p, u)));
    cr_expect(ipam_used_count_in_pool(p, NULL) == 0);
    ipam_used_free(u);
    ipam_pool_free(p);
}

/* ---- next free ----------------------------------------------------------- */

Test(ipam_next_free, returns_the_first_free_address)
{
    ipam_pool *p = pool_ex("10.20.0.0/24", NULL, NULL, "10.20.0.1", NULL, 0);
    ipam_addr a;
    cr_assert(ipam_next_free(p, NULL, 0, &a));
    cr_expect_str_eq(F(a), "10.20.0.2");
    ipam_used *u = used_new();
    cr_assert(ipam_next_free(p, u, 0, &a));
    cr_expect_str_eq(F(a), "10.20.0.2");
    cr_assert(ipam_next_free(p, u, 10, &a));
    cr_expect_str_eq(F(a), "10.20.0.12");
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipam_next_free, skips_used_runs_and_holes)
{
    const char *ex[] = {"10.20.0.8/29", "10.20.0.20"};
    ipam_pool *p = pool_ex("10.20.0.0/24", NULL, NULL, "10.20.0.1", ex, 2);
    ipam_used *u = used_new();
    for (uint32_t x = 2; x <= 7; x++)
        cr_assert_eq(ipam_used_add(u, ipam_addr_from_v4(0x0a140000u + x)), 0);
    for (uint32_t x = 16; x <= 19; x++)
        cr_assert_eq(ipam_used_add(u, ipam_addr_from_v4(0x0a140000u + x)), 0);
    cr_assert_eq(ipam_used_add(u, A("10.20.0.21")), 0);
    ipam_addr a;
    /* .2-.7 used, .8-.15 excluded, .16-.19 used, .20 excluded, .21 used -> .22 */
    cr_assert(ipam_next_free(p, u, 0, &a));
    cr_expect_str_eq(F(a), "10.20.0.22");
    /* From offset 3 (.5): same. */
    cr_assert(ipam_next_free(p, u, 3, &a));
    cr_expect_str_eq(F(a), "10.20.0.22");
    /* Hints beyond the total wrap modulo total. */
    cr_assert(ipam_next_free(p, u, ipam_pool_total(p) * 5 + 3, &a));
    cr_expect_str_eq(F(a), "10.20.0.22");
    cr_expect(ipam_contains(p, a));
    cr_expect_not(ipam_used_contains(u, a));
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipam_next_free, wraps_around_to_the_start)
{
    ipam_pool *p = pool_ex("10.20.0.0/24", "10.20.0.10", "10.20.0.19", NULL, NULL, 0);
    ipam_used *u = used_new();
    for (uint32_t x = 14; x <= 19; x++)
        cr_assert_eq(ipam_used_add(u, ipam_addr_from_v4(0x0a140000u + x)), 0);
    cr_assert_eq(ipam_used_add(u, A("10.20.0.10")), 0);
    ipam_addr a;
    cr_assert(ipam_next_free(p, u, 5, &a)); /* offset 5 is .15: used to the end */
    cr_expect_str_eq(F(a), "10.20.0.11");
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipam_next_free, reports_exhaustion)
{
    const char *ex[] = {"10.20.0.2"};
    ipam_pool *p = pool_ex("10.20.0.0/29", NULL, NULL, "10.20.0.1", ex, 1);
    ipam_used *u = used_new();
    ipam_addr a;
    int got = 0;
    while (ipam_next_free(p, u, 2, &a)) {
        cr_assert(ipam_contains(p, a));
        cr_assert_eq(ipam_used_add(u, a), 0);
        cr_assert_lt(++got, 10);
    }
    cr_expect_eq(got, 4); /* .3 .4 .5 .6 */
    cr_expect(ipam_used_count_in_pool(p, u) == ipam_pool_total(p));
    /* Freeing one makes exactly it available again, from any hint. */
    cr_assert_eq(ipam_used_remove(u, A("10.20.0.4")), 0);
    for (ipam_u128 h = 0; h < 8; h++) {
        cr_assert(ipam_next_free(p, u, h, &a));
        cr_expect_str_eq(F(a), "10.20.0.4");
    }
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipam_next_free, jumps_over_a_long_used_run_in_a_v6_slash64)
{
    ipam_pool *p = pool_ex("fd00::/64", "fd00::1:0", "fd00::ffff:ffff:ffff:0", NULL, NULL, 0);
    ipam_used *u = used_new();
    ipam_u128 start = A("fd00::1:0").v + 1000;
    for (ipam_u128 i = 0; i < 200000; i++) {
        ipam_addr a = {start + i};
        cr_assert_eq(ipam_used_add(u, a), 0);
    }
    cr_expect_eq(ipam_used_runs(u), 1);
    ipam_addr a;
    cr_assert(ipam_next_free(p, u, 1000 + 77, &a));
    cr_expect(a.v == start + 200000, "%s", F(a));
    /* The last address of the range wraps to the first one. */
    ipam_addr last = A("fd00::ffff:ffff:ffff:0");
    cr_assert_eq(ipam_used_add(u, last), 0);
    ipam_u128 off;
    cr_assert(ipam_addr_to_offset(p, last, &off));
    cr_assert(ipam_next_free(p, u, off, &a));
    cr_expect_str_eq(F(a), "fd00::1:0");
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipam_next_free, hint_is_deterministic_and_spreads_claims)
{
    ipam_pool *p = pool("10.20.0.0/16");
    ipam_u128 h1 = ipam_hint(p, "5f0c7f5e-8a3b-4c1e-9d2a-0b6e4f1a2c3d");
    cr_expect(h1 == ipam_hint(p, "5f0c7f5e-8a3b-4c1e-9d2a-0b6e4f1a2c3d"));
    cr_expect(h1 != ipam_hint(p, "5f0c7f5e-8a3b-4c1e-9d2a-0b6e4f1a2c3e"));
    /* 1000 UIDs over 65534 addresses: nearly all distinct (birthday: ~7.6 pairs). */
    static ipam_u128 seen[1000];
    int dup = 0;
    for (int i = 0; i < 1000; i++) {
        char uid[64];
        snprintf(uid, sizeof uid, "0000%04x-aaaa-4bbb-8ccc-%012d", i * 7919, i);
        seen[i] = ipam_hint(p, uid);
        cr_assert(seen[i] < ipam_pool_total(p));
        for (int j = 0; j < i; j++)
            dup += seen[j] == seen[i];
    }
    cr_expect_lt(dup, 30);
    /* And evenly: each eighth of the pool gets 125 +- 45 of them. */
    int bucket[8] = {0};
    for (int i = 0; i < 1000; i++)
        bucket[(int)(seen[i] * 8 / ipam_pool_total(p))]++;
    for (int b = 0; b < 8; b++)
        cr_expect(bucket[b] > 80 && bucket[b] < 170, "eighth %d has %d hints", b, bucket[b]);
    ipam_pool_free(p);
}

/* ---- reservation names --------------------------------------------------- */

Test(ipam_names, round_trip_v4_and_v6)
{
    struct {
        const char *pool, *addr, *name;
    } cases[] = {
        {"pool-a", "10.20.0.5", "pool-a.10-20-0-5"},
        {"pool-a", "0.0.0.0", "pool-a.0-0-0-0"},
        {"net.example", "255.255.255.255", "net.example.255-255-255-255"},
        {"v6", "fd00::a", "v6.fd00-0-0-0-0-0-0-a"},
        {"v6", "::", "v6.0-0-0-0-0-0-0-0"},
        {"v6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "v6.ffff-ffff-ffff-ffff-ffff-ffff-ffff-ffff"},
        {"p", "::ffff:10.0.0.1", "p.10-0-0-1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_addr a = A(cases[i].addr), back;
        char *name = NULL, *pool_name = NULL;
        cr_assert_eq(ipam_reservation_name(cases[i].pool, a, &name), 0);
        cr_expect_str_eq(name, cases[i].name);
        cr_assert_eq(ipam_reservation_name_parse(name, &pool_name, &back), 0);
        cr_expect_str_eq(pool_name, cases[i].pool);
        cr_expect_eq(ipam_addr_cmp(a, back), 0);
        free(name);
        free(pool_name);
    }
    /* Random addresses of both families round-trip too. */
    for (int i = 0; i < 5000; i++) {
        ipam_addr a = {((ipam_u128)rnd() << 64) | rnd()}, back;
        if (i & 1)
            a = ipam_addr_from_v4((uint32_t)rnd());
        else if ((a.v >> 32) == 0xffff)
            continue;
        char *name = NULL;
        cr_assert_eq(ipam_reservation_name("pool", a, &name), 0);
        cr_assert_eq(ipam_reservation_name_parse(name, NULL, &back), 0, "%s", name);
        cr_assert_eq(ipam_addr_cmp(a, back), 0, "%s", name);
        free(name);
    }
}

Test(ipam_names, pool_name_limits_and_noncanonical_names_are_rejected)
{
    char *name = NULL;
    const char *bad_pools[] = {"", "Pool", "-pool", "pool-", "po..ol", "pool_a", ".pool", "pool."};
    for (size_t i = 0; i < sizeof bad_pools / sizeof *bad_pools; i++)
        cr_expect_eq(ipam_reservation_name(bad_pools[i], A("10.0.0.1"), &name), KC_ERR_INVALID_ARG,
                     "\"%s\"", bad_pools[i]);

    /* Longest pool names: every address of the family must fit in 253. */
    cr_expect_eq(ipam_reservation_pool_name_max(4), 237);
    cr_expect_eq(ipam_reservation_pool_name_max(6), 213);
    char longest[240];
    memset(longest, 'a', 237);
    longest[237] = '\0';
    cr_assert_eq(ipam_reservation_name(longest, A("255.255.255.255"), &name), 0);
    cr_expect_eq(strlen(name), 253);
    free(name);
    cr_expect_eq(ipam_reservation_name(longest, A("fd00::1"), &name), KC_ERR_INVALID_ARG);
    longest[213] = '\0';
    cr_assert_eq(
        ipam_reservation_name(longest, A("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), &name), 0);
    cr_expect_eq(strlen(name), 253);
    free(name);
    memset(longest, 'a', 238);
    longest[238] = '\0';
    cr_expect_eq(ipam_reservation_name(longest, A("10.0.0.1"), &name), KC_ERR_INVALID_ARG);

    const char *bad_names[] = {
        "p.010-0-0-1",
        "p.10-0-0-256",
        "p.10-0-0",
        "p.10-0-0-1-",
        "p.10--0-1",
        "10-0-0-1",
        ".10-0-0-1",
        "P.10-0-0-1",
        "p.FD00-0-0-0-0-0-0-A",
        "p.fd00-0-0-0-0-0-0-0a",
        "p.fd00-0-0-0-0-0-0-fffff",
        "p.0-0-0-0-0-ffff-a00-1",
        "p.fd00--a",
        "p.10.0.0.1",
        "p.",
        "p-.10-0-0-1",
        "p.+10-0-0-1",
    };
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        ipam_addr a = {7};
        char *pn = NULL;
        cr_expect_eq(ipam_reservation_name_parse(bad_names[i], &pn, &a), KC_ERR_INVALID_ARG,
                     "\"%s\"", bad_names[i]);
        cr_expect_null(pn);
        cr_expect(a.v == 7);
    }
}

/* ---- property test against a naive enumeration --------------------------- */

/* A spec drawn at random, kept as numbers so the oracle does not use ipam. */
typedef struct naive_pool {
    bool v6;
    ipam_u128 base, last; /* cidr bounds, as ipam addresses */
    unsigned prefix;
    ipam_u128 rs, re;
    bool has_gw;
    ipam_u128 gw;
    size_t n_ex;
    ipam_u128 ex_lo[6], ex_hi[6];
    char text[10][IPAM_CIDR_STRLEN];
} naive_pool;

static bool naive_allocatable(const naive_pool *n, ipam_u128 v)
{
    if (v < n->base || v > n->last || v < n->rs || v > n->re)
        return false;
    if (!n->v6 && n->prefix <= 30 && (v == n->base || v == n->last))
        return false;
    if (n->v6 && n->prefix <= 126 && v == n->base)
        return false;
    if (n->has_gw && v == n->gw)
        return false;
    for (size_t i = 0; i < n->n_ex; i++)
        if (v >= n->ex_lo[i] && v <= n->ex_hi[i])
            return false;
    return true;
}

static ipam_pool *naive_make(naive_pool *n)
{
    n->v6 = rnd_below(4) == 0;
    unsigned host_bits = 2 + rnd_below(9); /* /22../30 or /118../126 */
    n->prefix = (n->v6 ? 128 : 32) - host_bits;
    ipam_u128 size = (ipam_u128)1 << host_bits;
    if (n->v6)
        n->base = (A("fd00::").v | ((ipam_u128)rnd() << 16)) & ~(size - 1);
    else
        n->base = ipam_addr_from_v4((uint32_t)rnd() & ~(uint32_t)(size - 1)).v;
    n->last = n->base + size - 1;
    n->rs = n->base;
    n->re = n->last;
    const char *rs = NULL, *re = NULL, *gw = NULL;
    const char *ex[6];
    if (rnd_below(2)) {
        n->rs = n->base + rnd_below((uint32_t)size);
        rs = ipam_addr_format((ipam_addr){n->rs}, n->text[0]);
    }
    if (rnd_below(2)) {
        n->re = n->rs + rnd_below((uint32_t)(n->last - n->rs + 1));
        re = ipam_addr_format((ipam_addr){n->re}, n->text[1]);
    }
    n->has_gw = rnd_below(2);
    if (n->has_gw) {
        n->gw = n->base + rnd_below((uint32_t)size);
        gw = ipam_addr_format((ipam_addr){n->gw}, n->text[2]);
    }
    n->n_ex = rnd_below(7);
    for (size_t i = 0; i < n->n_ex; i++) {
        char *t = n->text[3 + i];
        if (rnd_below(2)) { /* one address, sometimes just outside the cidr */
            ipam_u128 v = n->base - 4 + rnd_below((uint32_t)size + 8);
            if (ipam_addr_family((ipam_addr){v}) != (n->v6 ? 6 : 4))
                v = n->base; /* fell off the IPv4 space at 0.0.0.0 or 255.255.255.255 */
            n->ex_lo[i] = n->ex_hi[i] = v;
            ipam_addr_format((ipam_addr){v}, t);
        } else { /* a CIDR from a /(prefix-1) down to a single address */
            unsigned hb = rnd_below(host_bits + 2);
            ipam_u128 esz = (ipam_u128)1 << hb;
            ipam_u128 v = (n->base + rnd_below((uint32_t)size)) & ~(esz - 1);
            n->ex_lo[i] = v;
            n->ex_hi[i] = v + esz - 1;
            char ab[IPAM_ADDR_STRLEN];
            snprintf(t, IPAM_CIDR_STRLEN, "%s/%u", ipam_addr_format((ipam_addr){v}, ab),
                     (n->v6 ? 128 : 32) - hb);
        }
        ex[i] = t;
    }
    char cidr[IPAM_CIDR_STRLEN], ab[IPAM_ADDR_STRLEN];
    snprintf(cidr, sizeof cidr, "%s/%u", ipam_addr_format((ipam_addr){n->base}, ab), n->prefix);
    return pool_ex(cidr, rs, re, gw, ex, n->n_ex);
}

Test(ipam_property, random_small_pools_match_naive_enumeration, .timeout = 120)
{
    static ipam_u128 list[1024];
    static bool used_bit[1024];
    for (int round = 0; round < 250; round++) {
        naive_pool n;
        memset(&n, 0, sizeof n);
        ipam_pool *p = naive_make(&n);
        size_t size = (size_t)(n.last - n.base + 1);

        /* The allocatable set, in order. */
        size_t total = 0;
        for (size_t i = 0; i < size; i++)
            if (naive_allocatable(&n, n.base + i))
                list[total++] = n.base + i;
        cr_assert(ipam_pool_total(p) == total, "round %d: total %s want %zu", round,
                  U(ipam_pool_total(p)), total);
        for (ipam_u128 v = n.base - 3; v <= n.last + 3; v++)
            cr_assert_eq(ipam_contains(p, (ipam_addr){v}), naive_allocatable(&n, v), "round %d: %s",
                         round, F((ipam_addr){v}));
        for (size_t i = 0; i < total; i++) {
            ipam_addr a;
            ipam_u128 off;
            cr_assert(ipam_offset_to_addr(p, i, &a));
            cr_assert(a.v == list[i]);
            cr_assert(ipam_addr_to_offset(p, a, &off));
            cr_assert(off == i);
        }

        /* A random used set (with some unallocatable addresses in it too). */
        ipam_used *u = used_new();
        uint32_t density = rnd_below(101);
        size_t n_used = 0;
        for (size_t i = 0; i < total; i++) {
            used_bit[i] = rnd_below(100) < density;
            if (used_bit[i]) {
                cr_assert_eq(ipam_used_add(u, (ipam_addr){list[i]}), 0);
                n_used++;
            }
        }
        if (rnd_below(2))
            cr_assert_eq(ipam_used_add(u, (ipam_addr){n.base}), 0);
        if (n.has_gw)
            cr_assert_eq(ipam_used_add(u, (ipam_addr){n.gw}), 0);
        cr_assert(ipam_used_count_in_pool(p, u) == n_used);

        /* next_free from every offset is the first unused one at or after it. */
        for (size_t h = 0; h < total; h++) {
            size_t want = total;
            for (size_t k = 0; k < total; k++) {
                size_t j = (h + k) % total;
                if (!used_bit[j]) {
                    want = j;
                    break;
                }
            }
            ipam_addr a;
            bool found = ipam_next_free(p, u, h + (ipam_u128)total * (h & 3), &a);
            cr_assert_eq(found, want < total, "round %d hint %zu", round, h);
            if (found) {
                cr_assert(a.v == list[want], "round %d hint %zu: %s want %s", round, h, F(a),
                          F((ipam_addr){list[want]}));
                cr_assert(ipam_contains(p, a));
                cr_assert_not(ipam_used_contains(u, a));
            }
        }

        /* From empty, allocating with random hints until exhaustion yields exactly total. */
        ipam_used_clear(u);
        size_t got = 0;
        ipam_addr a;
        while (ipam_next_free(p, u, ((ipam_u128)rnd() << 64) | rnd(), &a)) {
            cr_assert(naive_allocatable(&n, a.v), "round %d: %s", round, F(a));
            cr_assert_not(ipam_used_contains(u, a));
            cr_assert_eq(ipam_used_add(u, a), 0);
            cr_assert_leq(++got, total);
        }
        cr_assert_eq(got, total, "round %d", round);
        cr_assert_eq(ipam_used_count(u), total);
        cr_assert(ipam_used_count_in_pool(p, u) == total);
        cr_assert(ipam_used_runs(u) <= ipam_pool_segments(p));

        ipam_used_free(u);
        ipam_pool_free(p);
    }
}
