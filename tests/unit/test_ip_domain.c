/*
 * Unit tests of the pure parts of the IP reconcilers (ip_internal.h):
 * Reservation names, pools from IPPool objects, status counts, address
 * choice with skipped addresses, which of several held addresses to keep,
 * condition reasons and messages, and the status objects (idempotent, so an
 * unchanged claim is never written again). The reconcile loops themselves run
 * against the real API server in tests/e2e/ip_test.sh.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "ip_internal.h"
#include "rec_reserve.h"
#include "rec_util.h"

static ipam_addr addr(const char *s)
{
    ipam_addr a;
    cr_assert_eq(ipam_addr_parse(s, &a), 0, "parse %s", s);
    return a;
}

static json_object *parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o, "bad test JSON: %s", text);
    return o;
}

static ipam_pool *pool_of(const char *json)
{
    json_object *obj = parse(json);
    ipam_pool *p = NULL;
    ipam_error err = IPAM_ERROR_INIT;
    int rc = ip_pool_from_obj(obj, &p, &err);
    cr_assert_eq(rc, 0, "pool %s: %s", json, err.message ? err.message : "?");
    ipam_error_clear(&err);
    json_object_put(obj);
    return p;
}

static const char *str_at(json_object *o, const char *path)
{
    return rec_obj_str(o, path);
}

/* ---- reservation names ------------------------------------------------------ */

Test(ipr_names, reservation_names_follow_the_crd_rule)
{
    /* ipnet.<network>.<address>: the lock of the address in its network,
     * whichever pool of it the address is taken through. */
    char *n = NULL;
    cr_assert_eq(ip_names_reservation("default", addr("10.20.0.5"), &n), 0);
    cr_assert_str_eq(n, "ipnet.default.10-20-0-5");
    free(n);
    cr_assert_eq(ip_names_reservation("blue", addr("fd00:10::100"), &n), 0);
    cr_assert_str_eq(n, "ipnet.blue.fd00-10-0-0-0-0-0-100");
    free(n);
    cr_assert_eq(ip_names_reservation("a", addr("::"), &n), 0);
    cr_assert_str_eq(n, "ipnet.a.0-0-0-0-0-0-0-0");
    free(n);
    /* The names before networks: one lock per pool. */
    cr_assert_eq(ip_names_legacy("demo-v4", addr("10.20.0.5"), &n), 0);
    cr_assert_str_eq(n, "ippool.demo-v4.10-20-0-5");
    free(n);
}

Test(ipr_names, the_slot_name_is_the_same_for_every_pool_and_spelling_in_a_network)
{
    /* def->slot_name is called with the network: two pools of one network
     * (overlapping CIDRs) make one name for one address, whatever its form;
     * two networks make two. */
    const char *forms[] = {"10.88.0.1", "::ffff:10.88.0.1", "::ffff:a58:1"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char *n = NULL, *canon = NULL;
        cr_assert_eq(ip_domain_def.slot_name("default", forms[i], &n, &canon), 0, "%s", forms[i]);
        cr_assert_str_eq(n, "ipnet.default.10-88-0-1", "%s", forms[i]);
        cr_assert_str_eq(canon, "10.88.0.1");
        free(n);
        free(canon);
    }
    char *a = NULL, *b = NULL;
    cr_assert_eq(ip_domain_def.slot_name("default", "fd00::1", &a, NULL), 0);
    cr_assert_eq(ip_domain_def.slot_name("blue", "fd00:0::1", &b, NULL), 0);
    cr_assert_str_eq(a, "ipnet.default.fd00-0-0-0-0-0-0-1");
    cr_assert_str_eq(b, "ipnet.blue.fd00-0-0-0-0-0-0-1");
    free(a);
    free(b);
    cr_assert_eq(ip_domain_def.slot_name("default", "10.88.0.256", &a, NULL), KC_ERR_INVALID_ARG);
}

Test(ipr_names, network_names_that_are_not_dns_labels_are_refused)
{
    char *n = (char *)"untouched";
    cr_assert_eq(ip_names_reservation("Demo", addr("10.0.0.1"), &n), KC_ERR_INVALID_ARG);
    cr_assert_eq(ip_names_reservation("a.b", addr("10.0.0.1"), &n), KC_ERR_INVALID_ARG);
    cr_assert_eq(ip_names_reservation("", addr("10.0.0.1"), &n), KC_ERR_INVALID_ARG);
    cr_assert_eq(ip_names_reservation(NULL, addr("10.0.0.1"), &n), KC_ERR_INVALID_ARG);
    cr_assert_eq(ip_names_legacy("a.b", addr("10.0.0.1"), &n), KC_ERR_INVALID_ARG);
}

Test(ipr_names, parse_is_the_reverse_and_only_takes_its_own_scheme)
{
    char *net = NULL;
    ipam_addr a;
    cr_assert_eq(ip_names_parse("ipnet.default.10-20-0-5", &net, &a), 0);
    cr_assert_str_eq(net, "default");
    cr_assert_eq(ipam_addr_cmp(a, addr("10.20.0.5")), 0);
    free(net);
    cr_assert_eq(ip_names_parse("ipnet.p.fd00-10-0-0-0-0-0-100", NULL, &a), 0);
    cr_assert_eq(ipam_addr_cmp(a, addr("fd00:10::100")), 0);
    cr_assert_eq(ip_names_legacy_parse("ippool.demo.10-20-0-5", &net, &a), 0);
    cr_assert_str_eq(net, "demo");
    free(net);

    const char *bad[] = {
        "default.10-20-0-5",             /* no prefix */
        "ippool.demo.10-20-0-5",         /* the legacy scheme */
        "devicepool.demo.10-20-0-5",     /* another kind */
        "ipnet.demo.010-20-0-5",         /* leading zero */
        "ipnet.demo.fd00-10--100",       /* compressed IPv6 */
        "ipnet.demo.FD00-0-0-0-0-0-0-1", /* upper case */
        "ipnet.a.b.10-20-0-5",           /* a network with a dot */
        "ipnet.demo",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(ip_names_parse(bad[i], NULL, &a), KC_ERR_INVALID_ARG, "%s", bad[i]);
    cr_assert_eq(ip_names_parse(NULL, NULL, &a), KC_ERR_INVALID_ARG);
    cr_assert_eq(ip_names_legacy_parse("ipnet.default.10-20-0-5", NULL, &a), KC_ERR_INVALID_ARG);
}

Test(ipr_names, every_address_round_trips)
{
    const char *addrs[] = {"10.20.0.5",
                           "0.0.0.0",
                           "255.255.255.255",
                           "fd00::1",
                           "::1",
                           "2001:db8:0:0:1::1",
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        char *n = NULL, *pool = NULL;
        ipam_addr a;
        cr_assert_eq(ip_names_reservation("net-1", addr(addrs[i]), &n), 0);
        cr_assert_eq(ip_names_parse(n, &pool, &a), 0, "%s", n);
        cr_assert_str_eq(pool, "net-1");
        cr_assert_eq(ipam_addr_cmp(a, addr(addrs[i])), 0, "%s", addrs[i]);
        free(n);
        free(pool);
    }
}

/* ---- pools from objects ----------------------------------------------------- */

Test(ipr_pool, a_pool_object_with_every_field_builds_its_allocatable_set)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"10.20.0.0/24\",\"gateway\":\"10.20.0.1\","
                           "\"rangeStart\":\"10.20.0.10\",\"rangeEnd\":\"10.20.0.250\","
                           "\"exclude\":[\"10.20.0.53\",\"10.20.0.96/28\"]}}");
    /* 10..250 is 241 addresses, less 1 + 16 excluded. */
    cr_assert_eq(ipam_pool_total_i64(p), 224);
    cr_assert_not(ipam_contains(p, addr("10.20.0.53")));
    cr_assert_not(ipam_contains(p, addr("10.20.0.100")));
    cr_assert(ipam_contains(p, addr("10.20.0.50")));
    ipam_pool_free(p);
}

Test(ipr_pool, an_unusable_spec_says_why)
{
    struct {
        const char *json;
        ipam_problem problem;
        const char *says;
    } cases[] = {
        {"{\"spec\":{\"cidr\":\"10.20.0.1/16\"}}", IPAM_PROBLEM_CIDR_HOST_BITS, "10.20.0.0/16"},
        {"{\"spec\":{}}", IPAM_PROBLEM_CIDR_MISSING, "spec.cidr"},
        {"{}", IPAM_PROBLEM_CIDR_MISSING, "spec.cidr"},
        {"{\"spec\":{\"cidr\":\"10.0.0.0/24\",\"exclude\":[\"10.0.0.1\",7]}}",
         IPAM_PROBLEM_EXCLUDE_SYNTAX, "spec.exclude"},
        {"{\"spec\":{\"cidr\":\"10.0.0.0/24\",\"rangeStart\":\"10.0.1.1\"}}",
         IPAM_PROBLEM_RANGE_START_OUTSIDE_CIDR, "rangeStart"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *obj = parse(cases[i].json);
        ipam_pool *p = NULL;
        ipam_error err = IPAM_ERROR_INIT;
        cr_assert_eq(ip_pool_from_obj(obj, &p, &err), KC_ERR_INVALID_ARG, "%s", cases[i].json);
        cr_assert_null(p);
        cr_assert_eq(err.problem, cases[i].problem, "%s: problem %d", cases[i].json,
                     (int)err.problem);
        cr_assert_not_null(err.message);
        cr_assert(strstr(err.message, cases[i].says), "%s: %s", cases[i].json, err.message);
        ipam_error_clear(&err);
        json_object_put(obj);
    }
}

/* ---- counts ------------------------------------------------------------------ */

/* What the reconciler keeps as Reservations come and go (one ipam_contains
 * per change) equals walking the used set, with excludes, a range, a
 * gateway and addresses outside the allocatable set. */
Test(ipr_pool, counts_kept_per_change_equal_a_full_count)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"10.42.0.0/24\",\"rangeStart\":\"10.42.0.10\","
                           "\"rangeEnd\":\"10.42.0.200\",\"gateway\":\"10.42.0.20\","
                           "\"exclude\":[\"10.42.0.32/28\",\"10.42.0.99\"]}}");
    ipam_used *u = NULL;
    cr_assert_eq(ipam_used_new(&u), 0);
    uint64_t kept = 0, rng = 12345;
    for (int step = 0; step < 5000; step++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        char s[32];
        snprintf(s, sizeof s, "10.42.0.%u", (unsigned)((rng >> 33) % 256));
        ipam_addr a = addr(s);
        bool add = ((rng >> 20) & 3) != 0;
        uint64_t before = ipam_used_count(u);
        cr_assert_eq(add ? ipam_used_add(u, a) : ipam_used_remove(u, a), 0);
        if (ipam_used_count(u) != before && ipam_contains(p, a))
            kept = add ? kept + 1 : kept - 1;
        rec_pool_counts full, inc;
        ip_pool_counts_of(p, u, &full);
        ip_pool_counts_from(p, ipam_used_count(u), kept, &inc);
        cr_assert_eq(inc.total, full.total);
        cr_assert_eq(inc.allocated, full.allocated);
        cr_assert_eq(inc.available, full.available, "step %d (%s): %lld != %lld", step, s,
                     (long long)inc.available, (long long)full.available);
    }
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipr_pool, counts_come_from_the_used_set)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"10.41.0.0/30\"}}");
    ipam_used *u = NULL;
    cr_assert_eq(ipam_used_new(&u), 0);
    rec_pool_counts c;
    ip_pool_counts_of(p, u, &c);
    cr_assert_eq(c.total, 2);
    cr_assert_eq(c.allocated, 0);
    cr_assert_eq(c.available, 2);

    cr_assert_eq(ipam_used_add(u, addr("10.41.0.1")), 0);
    ip_pool_counts_of(p, u, &c);
    cr_assert_eq(c.allocated, 1);
    cr_assert_eq(c.available, 1);

    /* Held before the range was narrowed: still held, but takes nothing from available. */
    cr_assert_eq(ipam_used_add(u, addr("10.41.0.9")), 0);
    ip_pool_counts_of(p, u, &c);
    cr_assert_eq(c.allocated, 2);
    cr_assert_eq(c.available, 1);

    /* An invalid spec: nothing is available, what is held is still counted. */
    ip_pool_counts_of(NULL, u, &c);
    cr_assert_eq(c.total, 0);
    cr_assert_eq(c.allocated, 2);
    cr_assert_eq(c.available, 0);
    ip_pool_counts_of(p, NULL, &c);
    cr_assert_eq(c.available, 2);
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipr_pool, counts_of_a_huge_ipv6_pool_saturate)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"fd00::/64\"}}");
    rec_pool_counts c;
    ip_pool_counts_of(p, NULL, &c);
    cr_assert_eq(c.total, INT64_MAX);
    cr_assert_eq(c.available, INT64_MAX);
    char *m = NULL;
    cr_assert_eq(ip_msg_pool_valid(p, &m), 0);
    cr_assert(strstr(m, "capped at 9223372036854775807"), "%s", m);
    cr_assert(strstr(m, "18446744073709551615 addresses"), "%s", m);
    free(m);
    ipam_pool_free(p);

    p = pool_of("{\"spec\":{\"cidr\":\"10.0.0.0/24\"}}");
    cr_assert_eq(ip_msg_pool_valid(p, &m), 0);
    cr_assert_str_eq(m, "the spec is valid");
    free(m);
    ipam_pool_free(p);
}

/* ---- picking addresses ----------------------------------------------------- */

Test(ipr_pick, starts_at_the_hint_and_steps_over_used_and_skipped_addresses)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"10.0.0.0/29\"}}"); /* .1 .. .6 */
    ipam_used *u = NULL;
    cr_assert_eq(ipam_used_new(&u), 0);
    ipam_addr a;
    cr_assert(ip_pool_pick(p, u, NULL, NULL, 0, 2, &a));
    cr_assert_eq(ipam_addr_cmp(a, addr("10.0.0.3")), 0);

    cr_assert_eq(ipam_used_add(u, addr("10.0.0.3")), 0);
    ipam_addr skip[] = {addr("10.0.0.4"), addr("10.0.0.6")};
    cr_assert(ip_pool_pick(p, u, NULL, skip, 2, 2, &a));
    cr_assert_eq(ipam_addr_cmp(a, addr("10.0.0.5")), 0);

    /* From the end of the range it wraps to the start. */
    ipam_addr skip2[] = {addr("10.0.0.5"), addr("10.0.0.6"), addr("10.0.0.4")};
    cr_assert(ip_pool_pick(p, u, NULL, skip2, 3, 3, &a));
    cr_assert_eq(ipam_addr_cmp(a, addr("10.0.0.1")), 0);
    ipam_used_free(u);
    ipam_pool_free(p);
}

Test(ipr_pick, nothing_when_every_free_address_is_skipped_or_the_pool_is_empty)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"10.41.0.0/30\"}}");
    ipam_addr a;
    ipam_addr skip[] = {addr("10.41.0.2"), addr("10.41.0.1")};
    cr_assert_not(ip_pool_pick(p, NULL, NULL, skip, 2, 0, &a));
    cr_assert(ip_pool_pick(p, NULL, NULL, skip, 1, 0, &a));
    cr_assert_eq(ipam_addr_cmp(a, addr("10.41.0.1")), 0);
    ipam_pool_free(p);

    p = pool_of("{\"spec\":{\"cidr\":\"10.41.0.0/30\",\"exclude\":[\"10.41.0.0/30\"]}}");
    cr_assert_not(ip_pool_pick(p, NULL, NULL, NULL, 0, 0, &a));
    ipam_pool_free(p);
}

Test(ipr_pick, addresses_other_claims_ask_for_are_left_to_them)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"10.0.0.0/29\"}}"); /* .1 .. .6 */
    ipam_used *reserved = NULL;
    cr_assert_eq(ipam_used_new(&reserved), 0);
    for (const char *const *s = (const char *const[]){"10.0.0.3", "10.0.0.4", "10.0.0.1", NULL}; *s;
         s++)
        cr_assert_eq(ipam_used_add(reserved, addr(*s)), 0);
    ipam_addr a;
    cr_assert(ip_pool_pick(p, NULL, reserved, NULL, 0, 2, &a));
    cr_assert_eq(ipam_addr_cmp(a, addr("10.0.0.5")), 0);
    ipam_addr skip[] = {addr("10.0.0.5"), addr("10.0.0.6")};
    cr_assert(ip_pool_pick(p, NULL, reserved, skip, 2, 2, &a));
    cr_assert_eq(ipam_addr_cmp(a, addr("10.0.0.2")), 0);
    ipam_addr skip3[] = {addr("10.0.0.5"), addr("10.0.0.6"), addr("10.0.0.2")};
    cr_assert_not(ip_pool_pick(p, NULL, reserved, skip3, 3, 2, &a));
    ipam_used_free(reserved);
    ipam_pool_free(p);
}

Test(ipr_pick, never_the_gateway_network_or_broadcast)
{
    ipam_pool *p = pool_of("{\"spec\":{\"cidr\":\"10.9.0.0/28\",\"gateway\":\"10.9.0.1\"}}");
    ipam_used *u = NULL;
    cr_assert_eq(ipam_used_new(&u), 0);
    int got = 0;
    ipam_addr a;
    while (ip_pool_pick(p, u, NULL, NULL, 0, (ipam_u128)got * 7, &a)) {
        cr_assert_neq(ipam_addr_cmp(a, addr("10.9.0.0")), 0);
        cr_assert_neq(ipam_addr_cmp(a, addr("10.9.0.1")), 0);
        cr_assert_neq(ipam_addr_cmp(a, addr("10.9.0.15")), 0);
        cr_assert_not(ipam_used_contains(u, a));
        cr_assert_eq(ipam_used_add(u, a), 0);
        got++;
    }
    cr_assert_eq(got, 13);
    ipam_used_free(u);
    ipam_pool_free(p);
}

/* ---- keeping one of several ------------------------------------------------- */

Test(ipr_keep, status_address_then_spec_address_then_the_lowest)
{
    ipam_addr held[] = {addr("10.0.0.9"), addr("10.0.0.3"), addr("10.0.0.7")};
    ipam_addr st = addr("10.0.0.7"), sp = addr("10.0.0.9"), other = addr("10.0.0.1");
    cr_assert_eq(ip_pool_choose_keep(held, 3, &st, &sp), 2);
    cr_assert_eq(ip_pool_choose_keep(held, 3, &other, &sp), 0);
    cr_assert_eq(ip_pool_choose_keep(held, 3, NULL, NULL), 1);
    cr_assert_eq(ip_pool_choose_keep(held, 3, &other, &other), 1);
    cr_assert_eq(ip_pool_choose_keep(held, 1, NULL, NULL), 0);
}

/* ---- reasons and messages ----------------------------------------------------- */

Test(ipr_reasons, refused_addresses_map_to_invalid_spec_or_unavailable)
{
    cr_assert_null(ip_pool_check_reason(IPAM_ADDR_OK));
    cr_assert_str_eq(ip_pool_check_reason(IPAM_ADDR_WRONG_FAMILY), IP_REASON_INVALID_SPEC);
    cr_assert_str_eq(ip_pool_check_reason(IPAM_ADDR_OUTSIDE_CIDR), IP_REASON_INVALID_SPEC);
    ipam_check_result unavailable[] = {
        IPAM_ADDR_NETWORK, IPAM_ADDR_BROADCAST,     IPAM_ADDR_SUBNET_ROUTER_ANYCAST,
        IPAM_ADDR_GATEWAY, IPAM_ADDR_OUTSIDE_RANGE, IPAM_ADDR_EXCLUDED};
    for (size_t i = 0; i < sizeof unavailable / sizeof unavailable[0]; i++)
        cr_assert_str_eq(ip_pool_check_reason(unavailable[i]), IP_REASON_ADDRESS_UNAVAILABLE);
}

Test(ipr_messages, messages_name_what_a_person_needs)
{
    char *m = NULL;
    cr_assert_eq(ip_msg_pool_not_found("demo", &m), 0);
    cr_assert(strstr(m, "IPPool demo does not exist"), "%s", m);
    free(m);
    cr_assert_eq(ip_msg_exhausted("tiny", 2, &m), 0);
    cr_assert(strstr(m, "IPPool tiny has no free address") && strstr(m, "all 2 "), "%s", m);
    free(m);
    cr_assert_eq(ip_msg_in_use("10.20.0.50", "demo", "team-a", "web", NULL, &m), 0);
    cr_assert(strstr(m, "10.20.0.50") && strstr(m, "IPClaim team-a/web"), "%s", m);
    cr_assert_null(strstr(m, "through"), "%s", m);
    free(m);
    cr_assert_eq(ip_msg_in_use("10.20.0.50", "demo", "team-a", "web", "demo", &m), 0);
    cr_assert_null(strstr(m, "through"), "%s", m);
    free(m);
    /* Held through another pool of the network: that pool is named. */
    cr_assert_eq(ip_msg_in_use("10.88.0.1", "b", "team-a", "web", "a", &m), 0);
    cr_assert(strstr(m, "10.88.0.1 of IPPool b is held by IPClaim team-a/web through IPPool a"),
              "%s", m);
    free(m);
    cr_assert_eq(ip_msg_address_refused("10.20.0.1", "demo", "10.20.0.1 is the gateway", &m), 0);
    cr_assert_str_eq(m, "spec.address 10.20.0.1 cannot be allocated from IPPool demo: 10.20.0.1 "
                        "is the gateway");
    free(m);
    cr_assert_eq(ip_msg_pool_terminating("demo", &m), 0);
    cr_assert(strstr(m, "being deleted"), "%s", m);
    free(m);
    cr_assert_eq(ip_msg_pool_invalid("demo", "spec.cidr is bad", &m), 0);
    cr_assert_str_eq(m, "IPPool demo cannot be used: spec.cidr is bad");
    free(m);
}

Test(ipr_messages, a_terminating_pool_names_its_first_holders_and_counts_the_rest)
{
    const char *holders[] = {"a/x 10.0.0.1", "b/y 10.0.0.2"};
    char *m = NULL;
    cr_assert_eq(ip_msg_pool_in_use(2, holders, 2, &m), 0);
    cr_assert_str_eq(m, "2 addresses are still held by claims: a/x 10.0.0.1, b/y 10.0.0.2; the "
                        "IPPool is deleted once they are released");
    free(m);
    cr_assert_eq(ip_msg_pool_in_use(7, holders, 2, &m), 0);
    cr_assert(strstr(m, "7 addresses are still held") && strstr(m, "and 5 more"), "%s", m);
    free(m);
    cr_assert_eq(ip_msg_pool_in_use(1, holders, 1, &m), 0);
    cr_assert(strstr(m, "1 address is still held by claims: a/x 10.0.0.1;"), "%s", m);
    free(m);
    /* Held only by a creation in flight (no Reservation seen): no empty list. */
    cr_assert_eq(ip_msg_pool_in_use(1, holders, 0, &m), 0);
    cr_assert_str_eq(m, "1 address is being reserved (Reservations not seen yet); the IPPool is "
                        "deleted once that is settled");
    free(m);
}

/* ---- status objects ------------------------------------------------------------- */

static const char *pool_json =
    "{\"metadata\":{\"name\":\"demo\"},\"spec\":{\"cidr\":\"10.20.0.0/24\","
    "\"gateway\":\"10.20.0.1\",\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.20.0.1\"}]}}";

Test(ipr_status, a_ready_claim_has_address_gateway_routes_pool_and_ready_true)
{
    json_object *pobj = parse(pool_json);
    ipam_pool *p = NULL;
    cr_assert_eq(ip_pool_from_obj(pobj, &p, NULL), 0);
    json_object *st = NULL;
    cr_assert_eq(ip_status_claim_ready(NULL, "demo", pobj, p, addr("10.20.0.5"), 3, 1000, &st), 0);
    cr_assert_str_eq(str_at(st, "address"), "10.20.0.5/24");
    cr_assert_str_eq(str_at(st, "gateway"), "10.20.0.1");
    cr_assert_str_eq(str_at(st, "pool"), "demo");
    json_object *routes = rec_obj_at(st, "routes");
    cr_assert_not_null(routes);
    cr_assert_eq(json_object_array_length(routes), 1);
    cr_assert_str_eq(str_at(json_object_array_get_idx(routes, 0), "dst"), "0.0.0.0/0");
    json_object *ready = rec_get_condition(st, REC_COND_READY);
    cr_assert_str_eq(str_at(ready, "status"), "True");
    cr_assert_str_eq(str_at(ready, "reason"), "Allocated");
    cr_assert_str_eq(str_at(ready, "message"), "holds 10.20.0.5/24 of IPPool demo");
    cr_assert_eq(json_object_get_int64(rec_obj_at(ready, "observedGeneration")), 3);
    json_object_put(st);
    ipam_pool_free(p);
    json_object_put(pobj);
}

Test(ipr_status, rebuilding_an_unchanged_status_gives_an_equal_object)
{
    /* rec_update_status writes only when the status differs: a second
     * reconcile of an unchanged claim must build exactly what is there. */
    json_object *pobj = parse(pool_json);
    ipam_pool *p = NULL;
    cr_assert_eq(ip_pool_from_obj(pobj, &p, NULL), 0);
    json_object *st1 = NULL, *st2 = NULL;
    cr_assert_eq(ip_status_claim_ready(NULL, "demo", pobj, p, addr("10.20.0.5"), 1, 1000, &st1), 0);
    cr_assert_eq(ip_status_claim_ready(st1, "demo", pobj, p, addr("10.20.0.5"), 1, 5000, &st2), 0);
    cr_assert(json_object_equal(st1, st2), "%s\nvs\n%s", json_object_to_json_string(st1),
              json_object_to_json_string(st2));
    json_object_put(st2);

    json_object *pend1 = NULL, *pend2 = NULL;
    cr_assert_eq(rec_status_not_ready(NULL, "PoolExhausted", "full", 1, 1000, &pend1), 0);
    cr_assert_eq(rec_status_not_ready(pend1, "PoolExhausted", "full", 1, 9000, &pend2), 0);
    cr_assert(json_object_equal(pend1, pend2));
    json_object_put(pend1);
    json_object_put(pend2);
    json_object_put(st1);
    ipam_pool_free(p);
    json_object_put(pobj);
}

Test(ipr_status, a_pending_claim_holds_nothing_and_keeps_other_conditions)
{
    json_object *cached = parse(
        "{\"address\":\"10.20.0.5/24\",\"gateway\":\"10.20.0.1\",\"pool\":\"demo\","
        "\"routes\":[],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":"
        "\"Allocated\",\"message\":\"m\",\"lastTransitionTime\":\"2020-01-01T00:00:00Z\"},"
        "{\"type\":\"example.com/Other\",\"status\":\"True\",\"reason\":\"X\",\"message\":\"\","
        "\"lastTransitionTime\":\"2020-01-01T00:00:00Z\"}]}");
    json_object *st = NULL;
    cr_assert_eq(rec_status_not_ready(cached, "PoolNotFound", "IPPool demo does not exist", 2,
                                      1700000000, &st),
                 0);
    cr_assert_null(rec_obj_at(st, "address"));
    cr_assert_null(rec_obj_at(st, "gateway"));
    cr_assert_null(rec_obj_at(st, "pool"));
    cr_assert_null(rec_obj_at(st, "routes"));
    json_object *ready = rec_get_condition(st, REC_COND_READY);
    cr_assert_str_eq(str_at(ready, "status"), "False");
    cr_assert_str_eq(str_at(ready, "reason"), "PoolNotFound");
    /* The status changed: a new transition time. */
    cr_assert_str_eq(str_at(ready, "lastTransitionTime"), "2023-11-14T22:13:20Z");
    cr_assert_not_null(rec_get_condition(st, "example.com/Other"));
    json_object_put(st);
    json_object_put(cached);
}

Test(ipr_status, ready_keeps_its_transition_time_while_it_stays_true)
{
    json_object *cached = parse("{\"address\":\"10.20.0.5/24\",\"conditions\":[{\"type\":\"Ready\","
                                "\"status\":\"True\",\"reason\":\"Allocated\",\"message\":\"m\","
                                "\"lastTransitionTime\":\"2020-01-01T00:00:00Z\"}]}");
    json_object *pobj = parse(pool_json);
    ipam_pool *p = NULL;
    cr_assert_eq(ip_pool_from_obj(pobj, &p, NULL), 0);
    json_object *st = NULL;
    cr_assert_eq(
        ip_status_claim_ready(cached, "demo", pobj, p, addr("10.20.0.5"), 1, 1700000000, &st), 0);
    cr_assert_str_eq(str_at(rec_get_condition(st, REC_COND_READY), "lastTransitionTime"),
                     "2020-01-01T00:00:00Z");
    json_object_put(st);
    ipam_pool_free(p);
    json_object_put(pobj);
    json_object_put(cached);
}

Test(ipr_status, without_a_pool_the_written_prefix_gateway_and_routes_stay)
{
    json_object *cached = parse("{\"address\":\"10.20.0.5/22\",\"gateway\":\"10.20.0.1\","
                                "\"routes\":[{\"dst\":\"0.0.0.0/0\"}]}");
    json_object *st = NULL;
    cr_assert_eq(ip_status_claim_ready(cached, "gone", NULL, NULL, addr("10.20.0.5"), 1, 1, &st),
                 0);
    cr_assert_str_eq(str_at(st, "address"), "10.20.0.5/22");
    cr_assert_str_eq(str_at(st, "gateway"), "10.20.0.1");
    cr_assert_eq(json_object_array_length(rec_obj_at(st, "routes")), 1);
    json_object_put(st);
    /* Another address than the one written: a host prefix. */
    cr_assert_eq(ip_status_claim_ready(cached, "gone", NULL, NULL, addr("10.20.0.6"), 1, 1, &st),
                 0);
    cr_assert_str_eq(str_at(st, "address"), "10.20.0.6/32");
    json_object_put(st);
    cr_assert_eq(ip_status_claim_ready(NULL, "gone", NULL, NULL, addr("fd00::6"), 1, 1, &st), 0);
    cr_assert_str_eq(str_at(st, "address"), "fd00::6/128");
    json_object_put(st);
    json_object_put(cached);
}

Test(ipr_status, pool_status_carries_counts_and_ready)
{
    rec_pool_counts c = {.total = 224, .allocated = 2, .available = 222};
    json_object *st = NULL;
    cr_assert_eq(
        ip_status_pool(NULL, &c, REC_COND_TRUE, IP_REASON_VALID, "the spec is valid", 4, 1000, &st),
        0);
    cr_assert_eq(json_object_get_int64(rec_obj_at(st, "total")), 224);
    cr_assert_eq(json_object_get_int64(rec_obj_at(st, "allocated")), 2);
    cr_assert_eq(json_object_get_int64(rec_obj_at(st, "available")), 222);
    json_object *ready = rec_get_condition(st, REC_COND_READY);
    cr_assert_str_eq(str_at(ready, "reason"), "Valid");
    cr_assert_eq(json_object_get_int64(rec_obj_at(ready, "observedGeneration")), 4);
    json_object *again = NULL;
    cr_assert_eq(ip_status_pool(st, &c, REC_COND_TRUE, IP_REASON_VALID, "the spec is valid", 4,
                                2000, &again),
                 0);
    cr_assert(json_object_equal(st, again));
    json_object_put(again);
    /* A bad reason is refused, not written. */
    cr_assert_eq(ip_status_pool(NULL, &c, REC_COND_FALSE, "not a reason", "x", 1, 1, &again),
                 KC_ERR_INVALID_ARG);
    json_object_put(st);
}

Test(ipr_status, pool_status_names_overlapping_pools_of_its_network)
{
    const char *peers[] = {"b", "c"};
    rec_pool_counts c = {.total = 14,
                         .allocated = 1,
                         .available = 12,
                         .overlaps = peers,
                         .n_overlaps = 2,
                         .scope = "default"};
    json_object *st = NULL;
    cr_assert_eq(ip_status_pool(NULL, &c, REC_COND_TRUE, IP_REASON_VALID, "ok", 1, 1000, &st), 0);
    json_object *ov = rec_get_condition(st, IP_COND_OVERLAPPING);
    cr_assert_not_null(ov);
    cr_assert_str_eq(str_at(ov, "status"), "True");
    cr_assert_str_eq(str_at(ov, "reason"), IP_REASON_OVERLAPPING);
    cr_assert(strstr(str_at(ov, "message"), "IPPool b, c of network default"), "%s",
              str_at(ov, "message"));
    json_object_put(st);
    /* Alone in its network: False. */
    c.n_overlaps = 0;
    cr_assert_eq(ip_status_pool(NULL, &c, REC_COND_TRUE, IP_REASON_VALID, "ok", 1, 1000, &st), 0);
    ov = rec_get_condition(st, IP_COND_OVERLAPPING);
    cr_assert_str_eq(str_at(ov, "status"), "False");
    cr_assert_str_eq(str_at(ov, "reason"), IP_REASON_NO_OVERLAP);
    json_object_put(st);
    /* Without a network (no scope given) no such condition is written. */
    c.scope = NULL;
    cr_assert_eq(ip_status_pool(NULL, &c, REC_COND_TRUE, IP_REASON_VALID, "ok", 1, 1000, &st), 0);
    cr_assert_null(rec_get_condition(st, IP_COND_OVERLAPPING));
    json_object_put(st);
    /* Many peers: the first five named, the rest counted. */
    const char *many[] = {"p1", "p2", "p3", "p4", "p5", "p6", "p7"};
    char *m = NULL;
    cr_assert_eq(ip_msg_overlapping("default", many, 7, &m), 0);
    cr_assert(strstr(m, "p1, p2, p3, p4, p5 and 2 more of network default"), "%s", m);
    free(m);
}

/* ---- overlap and network-wide counts --------------------------------------------- */

static bool overlap(const char *a, const char *b)
{
    ipam_pool *pa = pool_of(a), *pb = pool_of(b);
    bool x = ipam_pool_overlap(pa, pb), y = ipam_pool_overlap(pb, pa);
    cr_assert_eq(x, y, "overlap is symmetric: %s %s", a, b);
    ipam_pool_free(pa);
    ipam_pool_free(pb);
    return x;
}

Test(ipr_overlap, nested_partial_and_disjoint_pools_v4_and_v6)
{
    /* nested */
    cr_assert(overlap("{\"spec\":{\"cidr\":\"10.88.0.0/30\"}}",
                      "{\"spec\":{\"cidr\":\"10.88.0.0/29\"}}"));
    cr_assert(
        overlap("{\"spec\":{\"cidr\":\"fd00::/64\"}}", "{\"spec\":{\"cidr\":\"fd00::/120\"}}"));
    /* partial: ranges of one /24 that share a stretch */
    cr_assert(overlap("{\"spec\":{\"cidr\":\"10.0.0.0/"
                      "24\",\"rangeStart\":\"10.0.0.10\",\"rangeEnd\":\"10.0.0.50\"}}",
                      "{\"spec\":{\"cidr\":\"10.0.0.0/"
                      "24\",\"rangeStart\":\"10.0.0.50\",\"rangeEnd\":\"10.0.0.90\"}}"));
    cr_assert(overlap(
        "{\"spec\":{\"cidr\":\"fd00::/64\",\"rangeStart\":\"fd00::10\",\"rangeEnd\":\"fd00::20\"}}",
        "{\"spec\":{\"cidr\":\"fd00::/"
        "64\",\"rangeStart\":\"fd00::20\",\"rangeEnd\":\"fd00::30\"}}"));
    /* touching ranges that do not share an address */
    cr_assert_not(overlap("{\"spec\":{\"cidr\":\"10.0.0.0/"
                          "24\",\"rangeStart\":\"10.0.0.10\",\"rangeEnd\":\"10.0.0.49\"}}",
                          "{\"spec\":{\"cidr\":\"10.0.0.0/"
                          "24\",\"rangeStart\":\"10.0.0.50\",\"rangeEnd\":\"10.0.0.90\"}}"));
    /* disjoint networks, other families */
    cr_assert_not(overlap("{\"spec\":{\"cidr\":\"10.88.0.0/29\"}}",
                          "{\"spec\":{\"cidr\":\"10.88.0.8/29\"}}"));
    cr_assert_not(
        overlap("{\"spec\":{\"cidr\":\"10.88.0.0/24\"}}", "{\"spec\":{\"cidr\":\"fd00::/64\"}}"));
    /* CIDRs that overlap only where one of them allocates nothing: the
     * shared part is excluded from one, or is a network/broadcast address. */
    cr_assert_not(overlap("{\"spec\":{\"cidr\":\"10.0.0.0/24\",\"exclude\":[\"10.0.0.0/25\"]}}",
                          "{\"spec\":{\"cidr\":\"10.0.0.0/25\"}}"));
    cr_assert_not(
        overlap("{\"spec\":{\"cidr\":\"10.0.0.0/30\"}}", "{\"spec\":{\"cidr\":\"10.0.0.0/32\"}}"));
    cr_assert(
        overlap("{\"spec\":{\"cidr\":\"10.0.0.0/30\"}}", "{\"spec\":{\"cidr\":\"10.0.0.1/32\"}}"));
    /* an IPv6 pool over the IPv4-mapped block never overlaps an IPv4 pool */
    cr_assert_not(
        overlap("{\"spec\":{\"cidr\":\"::/64\"}}", "{\"spec\":{\"cidr\":\"10.0.0.0/8\"}}"));
    cr_assert_not(ipam_pool_overlap(NULL, NULL));
}

static void set_add(void *set, const char *a)
{
    cr_assert_eq(ip_pool_set_update(set, a, NULL, true), 0, "%s", a);
}

Test(ipr_overlap, available_counts_what_the_whole_network_holds_allocated_only_the_pools_own)
{
    /* a = 10.88.0.0/28 (.1-.14), b = 10.88.0.0/27 (.1-.30), one network. */
    const char *ja =
        "{\"metadata\":{\"uid\":\"ua\",\"generation\":1},\"spec\":{\"cidr\":\"10.88.0.0/28\"}}";
    const char *jb =
        "{\"metadata\":{\"uid\":\"ub\",\"generation\":1},\"spec\":{\"cidr\":\"10.88.0.0/27\"}}";
    json_object *oa = parse(ja), *ob = parse(jb);
    ipam_pool *pa = pool_of(ja), *pb = pool_of(jb);
    void *own_a = NULL, *own_b = NULL, *net = NULL;
    cr_assert_eq(ip_pool_set_new(&own_a), 0);
    cr_assert_eq(ip_pool_set_new(&own_b), 0);
    cr_assert_eq(ip_pool_set_new(&net), 0);
    /* a holds .1 and .2; b holds .3 (inside a too) and .20 (only in b). */
    const char *held_a[] = {"10.88.0.1", "10.88.0.2"}, *held_b[] = {"10.88.0.3", "10.88.0.20"};
    for (size_t i = 0; i < 2; i++) {
        set_add(own_a, held_a[i]);
        set_add(net, held_a[i]);
        set_add(own_b, held_b[i]);
        set_add(net, held_b[i]);
    }
    rec_pool_counts ca = {0}, cb = {0};
    ip_pool_set_counts(own_a, oa, pa, &ca);
    ip_pool_scope_counts(own_a, net, pa, &ca);
    ip_pool_set_counts(own_b, ob, pb, &cb);
    ip_pool_scope_counts(own_b, net, pb, &cb);
    cr_assert_eq(ca.total, 14);
    cr_assert_eq(ca.allocated, 2);
    cr_assert_eq(ca.available, 14 - 3, "a: .1 .2 (its own) and .3 (through b) are taken");
    cr_assert_eq(cb.total, 30);
    cr_assert_eq(cb.allocated, 2);
    cr_assert_eq(cb.available, 30 - 4);
    /* Alone in its network, a pool's own count stands. */
    rec_pool_counts solo = {0};
    ip_pool_set_counts(own_a, oa, pa, &solo);
    ip_pool_scope_counts(own_a, own_a, pa, &solo);
    cr_assert_eq(solo.available, 12);
    /* The pick in a steps over what b holds when given the network's set. */
    ipam_addr got;
    cr_assert(ip_pool_pick(pa, ((ip_pool_set *)net)->used, NULL, NULL, 0, 0, &got));
    cr_assert_eq(ipam_addr_cmp(got, addr("10.88.0.4")), 0);
    ip_pool_set_free(own_a);
    ip_pool_set_free(own_b);
    ip_pool_set_free(net);
    ipam_pool_free(pa);
    ipam_pool_free(pb);
    json_object_put(oa);
    json_object_put(ob);
}

/* ---- labels --------------------------------------------------------------------- */

Test(ipr_names, the_informer_selects_the_labels_acquire_puts_on_reservations)
{
    /* rec_reserve_acquire labels every Reservation REC_LABEL_POOL_KIND=<kind>;
     * the IP informer must select exactly the IPPool ones. */
    char want[128];
    snprintf(want, sizeof want, "%s=%s", REC_LABEL_POOL_KIND, REC_POOL_KIND_IP);
    cr_assert_str_eq(IP_RESERVATION_SELECTOR, want);
}
