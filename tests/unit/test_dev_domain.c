/*
 * Unit tests of the pure part of the device domain (dev_internal.h): a
 * DevicePool from its object (declared and discovered devices, their health
 * from the node agent's report, publish), what a DeviceClaim wants, which
 * pool and devices a claim gets, which held device stays and which is
 * replaced, Reservation names, the used set and the counts it gives, and the
 * status objects of claims and pools. The claim flow over these is
 * test_dev_claim.c's.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "dev_internal.h"
#include "kc_error.h"
#include "rec_claim_fixture.h"
#include "rec_util.h"

/* 2026-01-01T00:00:00Z: every test's "now". */
#define NOW ((time_t)1767225600)
#define RES "vendor.example/fpga"

/* ---- helpers -------------------------------------------------------------------- */

/* What a test opened, freed after it (with the strings of rcf_fmt). */
static void *opened[128];
static void (*closer[128])(void *);
static size_t n_opened;

static void *opened_add(void *obj, void (*close)(void *))
{
    cr_assert_lt(n_opened, sizeof opened / sizeof opened[0]);
    opened[n_opened] = obj;
    closer[n_opened++] = close;
    return obj;
}

static void free_made(void)
{
    while (n_opened > 0) {
        n_opened--;
        closer[n_opened](opened[n_opened]);
    }
    rcf_stop();
}

static void pool_close(void *p)
{
    dev_pool_free(p);
}

static void want_close(void *w)
{
    dev_want_free(w);
}

TestSuite(dev_pool, .fini = free_made);
TestSuite(dev_want, .fini = free_made);
TestSuite(dev_pick, .fini = free_made);
TestSuite(dev_choose, .fini = free_made);
TestSuite(dev_slots, .fini = free_made);
TestSuite(dev_set, .fini = free_made);
TestSuite(dev_status, .fini = free_made);

static json_object *parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o, "bad test JSON: %s", text);
    return o;
}

/* An RFC 3339 time ago seconds before NOW. */
static const char *ago(int seconds)
{
    time_t t = NOW - seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return rcf_fmt("%s", buf);
}

/* A DevicePool object named name on node-a with spec members spec (text
 * inside the braces, after nodeName and resourceName) and status (an object's
 * text, or NULL). */
static const char *pool_text(const char *name, const char *spec, const char *status)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"%s\",\"uid\":\"uid-%s\",\"generation\":1},"
                   "\"spec\":{\"nodeName\":\"node-a\",\"resourceName\":\"" RES "\"%s%s}%s%s}",
                   name, name, spec && *spec ? "," : "", spec ? spec : "",
                   status ? ",\"status\":" : "", status ? status : "");
}

/* status.agent of a report made ago seconds before NOW, with devices (text of
 * the array's members). */
static const char *agent_status(int age, const char *devices)
{
    return rcf_fmt("{\"agent\":{\"heartbeatTime\":\"%s\",\"devices\":[%s]}}", ago(age), devices);
}

static dev_pool *open_pool(const char *text)
{
    json_object *o = parse(text);
    dev_pool *p = NULL;
    char *problem = NULL;
    cr_assert_eq(dev_pool_from_obj(o, NOW, &p, &problem), KC_OK);
    cr_assert_not_null(p, "pool %s: %s", text, problem ? problem : "?");
    cr_assert_null(problem);
    json_object_put(o);
    return opened_add(p, pool_close);
}

/* The problem of a pool object that cannot be used (malloc'd). */
static char *pool_problem(const char *text)
{
    json_object *o = parse(text);
    dev_pool *p = NULL;
    char *problem = NULL;
    cr_assert_eq(dev_pool_from_obj(o, NOW, &p, &problem), KC_OK);
    cr_assert_null(p, "pool %s is usable", text);
    cr_assert_not_null(problem);
    json_object_put(o);
    return problem;
}

static dev_want *open_want(const char *spec)
{
    json_object *o = parse(rcf_fmt("{\"metadata\":{\"name\":\"c1\",\"namespace\":\"ns\"},"
                                   "\"spec\":{\"resourceName\":\"" RES "\"%s%s}}",
                                   *spec ? "," : "", spec));
    dev_want *w = NULL;
    char *problem = NULL;
    cr_assert_eq(dev_want_from_obj(o, &w, &problem), KC_OK);
    cr_assert_not_null(w, "claim spec %s: %s", spec, problem ? problem : "?");
    json_object_put(o);
    return opened_add(w, want_close);
}

static const char *attr_of(const dev_device *d, const char *key)
{
    for (size_t i = 0; i < d->n_attrs; i++)
        if (!strcmp(d->attrs[i].key, key))
            return d->attrs[i].value;
    return NULL;
}

static const dev_device *must_find(const dev_pool *p, const char *id)
{
    const dev_device *d = dev_pool_find(p, id);
    cr_assert_not_null(d, "no device %s", id);
    return d;
}

/* ---- pools: declared devices ------------------------------------------------------ */

Test(dev_pool, declared_devices_are_sorted_by_id_and_healthy_unless_spec_says_false)
{
    dev_pool *p = open_pool(pool_text("p1",
                                      "\"devices\":[{\"id\":\"fpga-2\"},{\"id\":\"fpga-0\"},"
                                      "{\"id\":\"fpga-1\",\"healthy\":false}]",
                                      NULL));
    cr_assert_eq(p->n, 3);
    cr_assert_str_eq(p->devs[0].id, "fpga-0");
    cr_assert_str_eq(p->devs[1].id, "fpga-1");
    cr_assert_str_eq(p->devs[2].id, "fpga-2");
    cr_assert(p->devs[0].healthy);
    cr_assert_not(p->devs[1].healthy);
    cr_assert_not_null(p->devs[1].message);
    cr_assert(strstr(p->devs[1].message, "healthy: false"), "%s", p->devs[1].message);
    cr_assert(p->devs[2].healthy);
    cr_assert_eq(p->n_healthy, 2);
    cr_assert_not(p->devs[0].discovered);
    cr_assert_not(p->wants_agent, "no paths, no discover: no agent wanted");
    cr_assert_str_eq(p->name, "p1");
    cr_assert_str_eq(p->node, "node-a");
    cr_assert_str_eq(p->resource, RES);
    cr_assert_null(dev_pool_find(p, "fpga-9"));
}

static const char *DECLARED_WITH_PATH = "\"devices\":[{\"id\":\"a\",\"path\":\"/dev/fpga0\"},"
                                        "{\"id\":\"b\"}]";

Test(dev_pool, declared_device_a_fresh_report_says_absent_is_unhealthy_naming_why)
{
    const char *st = agent_status(10, "{\"id\":\"a\",\"source\":\"Declared\",\"path\":"
                                      "\"/dev/fpga0\",\"present\":false,\"message\":\"ENOENT\"}");
    dev_pool *p = open_pool(pool_text("p1", DECLARED_WITH_PATH, st));
    cr_assert(p->wants_agent);
    cr_assert(p->agent_fresh);
    const dev_device *a = must_find(p, "a");
    cr_assert_not(a->healthy);
    cr_assert(strstr(a->message, "/dev/fpga0") && strstr(a->message, "ENOENT") &&
                  strstr(a->message, "node-a"),
              "%s", a->message);
    cr_assert(must_find(p, "b")->healthy, "a device without a path does not need the agent");
    cr_assert_eq(p->n_healthy, 1);
}

Test(dev_pool, declared_device_a_fresh_report_does_not_list_is_unhealthy)
{
    dev_pool *p = open_pool(pool_text("p1", DECLARED_WITH_PATH, agent_status(119, "")));
    cr_assert(p->agent_fresh, "119 s is within the 120 s");
    cr_assert_not(must_find(p, "a")->healthy);
    cr_assert(must_find(p, "b")->healthy);
}

Test(dev_pool, declared_device_a_fresh_report_finds_present_is_healthy)
{
    const char *st = agent_status(
        5, "{\"id\":\"a\",\"source\":\"Declared\",\"path\":\"/dev/fpga0\",\"present\":true}");
    dev_pool *p = open_pool(pool_text("p1", DECLARED_WITH_PATH, st));
    cr_assert(must_find(p, "a")->healthy);
    cr_assert_null(must_find(p, "a")->message);
    cr_assert_eq(p->n_healthy, 2);
}

Test(dev_pool, declared_device_with_a_path_is_healthy_when_the_report_is_stale_or_absent)
{
    /* A report saying absent, but 121 s old: as declared. */
    const char *stale = agent_status(
        121, "{\"id\":\"a\",\"source\":\"Declared\",\"path\":\"/dev/fpga0\",\"present\":false}");
    const char *statuses[] = {stale, NULL, "{}"};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        dev_pool *p = open_pool(pool_text("p1", DECLARED_WITH_PATH, statuses[i]));
        cr_assert_not(p->agent_fresh, "status %zu", i);
        cr_assert(p->wants_agent);
        cr_assert(must_find(p, "a")->healthy, "status %zu", i);
        cr_assert_eq(p->n_healthy, 2);
    }
}

Test(dev_pool, a_declared_healthy_false_stays_unhealthy_whatever_the_agent_says)
{
    const char *st = agent_status(
        5, "{\"id\":\"a\",\"source\":\"Declared\",\"path\":\"/dev/fpga0\",\"present\":true}");
    dev_pool *p = open_pool(pool_text(
        "p1", "\"devices\":[{\"id\":\"a\",\"path\":\"/dev/fpga0\",\"healthy\":false}]", st));
    cr_assert_not(must_find(p, "a")->healthy);
}

/* ---- pools: discovered devices --------------------------------------------------- */

static const char *DISCOVERED_REPORT =
    "{\"id\":\"fpga1\",\"source\":\"Discovered\",\"path\":\"/dev/fpga1\",\"present\":true},"
    "{\"id\":\"fpga0\",\"source\":\"Discovered\",\"path\":\"/dev/fpga0\",\"present\":true},"
    "{\"id\":\"fpga2\",\"source\":\"Discovered\",\"path\":\"/dev/fpga2\",\"present\":false,"
    "\"message\":\"EACCES\"}";

static const char *DISCOVER_SPEC =
    "\"discover\":{\"paths\":[\"/dev/fpga*\"],\"attributes\":{\"model\":\"x1\",\"n\":7}}";

Test(dev_pool, discovered_devices_come_from_a_fresh_report_with_spec_discover)
{
    dev_pool *p = open_pool(pool_text("p1", DISCOVER_SPEC, agent_status(30, DISCOVERED_REPORT)));
    cr_assert(p->wants_agent);
    cr_assert_eq(p->n, 3);
    cr_assert_str_eq(p->devs[0].id, "fpga0");
    cr_assert_str_eq(p->devs[1].id, "fpga1");
    cr_assert_str_eq(p->devs[2].id, "fpga2");
    for (size_t i = 0; i < 3; i++) {
        cr_assert(p->devs[i].discovered);
        cr_assert_str_eq(attr_of(&p->devs[i], "model"), "x1", "spec.discover.attributes");
        cr_assert_null(attr_of(&p->devs[i], "n"), "only string attributes");
    }
    cr_assert(p->devs[0].healthy && p->devs[1].healthy);
    cr_assert_not(p->devs[2].healthy, "present: false");
    cr_assert(strstr(p->devs[2].message, "/dev/fpga2") && strstr(p->devs[2].message, "EACCES"),
              "%s", p->devs[2].message);
    cr_assert_eq(p->n_healthy, 2);
}

Test(dev_pool, no_discovered_devices_without_spec_discover_or_from_a_stale_report)
{
    dev_pool *p = open_pool(pool_text("p1", "", agent_status(30, DISCOVERED_REPORT)));
    cr_assert_eq(p->n, 0, "no spec.discover");
    p = open_pool(pool_text("p1", DISCOVER_SPEC, agent_status(121, DISCOVERED_REPORT)));
    cr_assert_eq(p->n, 0, "a stale report");
    cr_assert(p->wants_agent);
    cr_assert_not(p->agent_fresh);
}

Test(dev_pool, a_declared_id_wins_over_a_discovered_one)
{
    const char *spec = rcf_fmt(
        "%s,\"devices\":[{\"id\":\"fpga0\",\"attributes\":{\"model\":\"own\"}}]", DISCOVER_SPEC);
    dev_pool *p = open_pool(pool_text("p1", spec, agent_status(30, DISCOVERED_REPORT)));
    cr_assert_eq(p->n, 3);
    const dev_device *d = must_find(p, "fpga0");
    cr_assert_not(d->discovered);
    cr_assert_str_eq(attr_of(d, "model"), "own");
    cr_assert(must_find(p, "fpga1")->discovered);
}

/* ---- pools: publish and unusable specs ------------------------------------------------ */

Test(dev_pool, publish_comes_from_spec_publish_then_advertise_false_then_node_capacity)
{
    struct {
        const char *spec;
        dev_publish want;
    } cases[] = {
        {"", DEV_PUBLISH_NODE_CAPACITY},
        {"\"publish\":\"ResourceSlice\"", DEV_PUBLISH_RESOURCE_SLICE},
        {"\"publish\":\"None\"", DEV_PUBLISH_NONE},
        {"\"publish\":\"NodeCapacity\"", DEV_PUBLISH_NODE_CAPACITY},
        {"\"advertise\":false", DEV_PUBLISH_NONE},
        {"\"advertise\":true", DEV_PUBLISH_NODE_CAPACITY},
        {"\"publish\":\"ResourceSlice\",\"advertise\":false", DEV_PUBLISH_RESOURCE_SLICE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dev_pool *p = open_pool(pool_text("p1", cases[i].spec, NULL));
        cr_assert_eq(p->publish, cases[i].want, "spec {%s}: %s", cases[i].spec,
                     dev_publish_name(p->publish));
    }
    cr_assert_str_eq(dev_publish_name(DEV_PUBLISH_NODE_CAPACITY), "NodeCapacity");
    cr_assert_str_eq(dev_publish_name(DEV_PUBLISH_RESOURCE_SLICE), "ResourceSlice");
    cr_assert_str_eq(dev_publish_name(DEV_PUBLISH_NONE), "None");
}

Test(dev_pool, ids_that_are_not_dns_labels_make_the_spec_unusable)
{
    const char *bad[] = {"FPGA0", "fpga_0", "-fpga", "fpga-", "a.b", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *problem = pool_problem(pool_text(
            "p1", rcf_fmt("\"devices\":[{\"id\":\"ok\"},{\"id\":\"%s\"}]", bad[i]), NULL));
        cr_assert(strstr(problem, "spec.devices[1].id") && strstr(problem, "DNS label"),
                  "id \"%s\": %s", bad[i], problem);
        free(problem);
    }
    char *problem = pool_problem(pool_text("p1", "\"devices\":[{\"path\":\"/dev/x\"}]", NULL));
    cr_assert(strstr(problem, "(missing)"), "%s", problem);
    free(problem);
    problem = pool_problem("{\"metadata\":{\"name\":\"p1\"},\"spec\":{\"nodeName\":\"n\"}}");
    cr_assert(strstr(problem, "spec.resourceName"), "%s", problem);
    free(problem);
}

Test(dev_pool, discovered_ids_that_are_not_dns_labels_are_left_out)
{
    const char *report =
        "{\"id\":\"Bad_Id\",\"source\":\"Discovered\",\"path\":\"/dev/x\",\"present\":true},"
        "{\"id\":\"good\",\"source\":\"Discovered\",\"path\":\"/dev/good\",\"present\":true}";
    dev_pool *p = open_pool(pool_text("p1", DISCOVER_SPEC, agent_status(1, report)));
    cr_assert_eq(p->n, 1);
    cr_assert_str_eq(p->devs[0].id, "good");
}

/* ---- what a claim wants ----------------------------------------------------------------- */

Test(dev_want, count_defaults_to_one_and_the_rest_is_read)
{
    dev_want *w = open_want("");
    cr_assert_eq(w->count, 1);
    cr_assert_str_eq(w->resource, RES);
    cr_assert_null(w->node);
    cr_assert_not(w->replace);
    cr_assert_eq(w->n_sel, 0);

    w = open_want("\"count\":64,\"nodeName\":\"node-a\",\"replaceUnhealthy\":true,"
                  "\"selector\":{\"model\":\"x1\",\"rev\":\"b\"}");
    cr_assert_eq(w->count, 64);
    cr_assert_str_eq(w->node, "node-a");
    cr_assert(w->replace);
    cr_assert_eq(w->n_sel, 2);
    cr_assert_str_eq(w->sel[0].key, "model");
    cr_assert_str_eq(w->sel[0].value, "x1");
    cr_assert_str_eq(w->sel[1].key, "rev");
}

Test(dev_want, counts_out_of_range_and_a_missing_resource_name_are_unusable)
{
    const char *specs[] = {
        "{\"resourceName\":\"" RES "\",\"count\":0}", "{\"resourceName\":\"" RES "\",\"count\":65}",
        "{\"resourceName\":\"" RES "\",\"count\":-1}", "{\"count\":1}", "{\"resourceName\":\"\"}"};
    const char *says[] = {"out of range", "out of range", "out of range", "spec.resourceName",
                          "spec.resourceName"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        json_object *o = parse(rcf_fmt("{\"spec\":%s}", specs[i]));
        dev_want *w = NULL;
        char *problem = NULL;
        cr_assert_eq(dev_want_from_obj(o, &w, &problem), KC_OK);
        cr_assert_null(w, "%s", specs[i]);
        cr_assert(problem && strstr(problem, says[i]), "%s: %s", specs[i],
                  problem ? problem : "(none)");
        free(problem);
        json_object_put(o);
    }
}

/* ---- fit and pick -------------------------------------------------------------------------- */

/* a, b, d model x1; c model x1 but unhealthy; e model x2. */
static dev_pool *mixed_pool(void)
{
    return open_pool(pool_text("p1",
                               "\"devices\":[{\"id\":\"a\",\"attributes\":{\"model\":\"x1\"}},"
                               "{\"id\":\"b\",\"attributes\":{\"model\":\"x1\"}},"
                               "{\"id\":\"c\",\"healthy\":false,\"attributes\":{\"model\":\"x1\"}},"
                               "{\"id\":\"d\",\"attributes\":{\"model\":\"x1\"}},"
                               "{\"id\":\"e\",\"attributes\":{\"model\":\"x2\"}}]",
                               NULL));
}

static void *new_set(void)
{
    void *s = NULL;
    cr_assert_eq(dev_set_new(&s), KC_OK);
    return opened_add(s, dev_set_free);
}

/* Every device dev_pick hands out for uid, one after another (skipping what it
 * gave), as "a,b,...". */
static const char *picks(const dev_pool *p, const void *used, const dev_want *w, const char *uid)
{
    const char *skip[16];
    size_t n = 0;
    char *got[16];
    for (;;) {
        char *slot = NULL;
        int rc = dev_pick(p, used, NULL, skip, n, uid, w, &slot);
        if (rc == REC_NO_SLOT)
            break;
        cr_assert_eq(rc, KC_OK);
        cr_assert_lt(n, 16);
        got[n] = slot;
        skip[n++] = slot;
    }
    /* sorted, so the answer does not depend on where uid starts */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(got[j - 1], got[j]) > 0; j--) {
            char *t = got[j];
            got[j] = got[j - 1];
            got[j - 1] = t;
        }
    const char *s = "";
    for (size_t i = 0; i < n; i++) {
        s = rcf_fmt("%s%s%s", s, i ? "," : "", got[i]);
        free(got[i]);
    }
    return s;
}

Test(dev_pick, only_healthy_matching_unused_unskipped_devices_of_the_node)
{
    dev_pool *p = mixed_pool();
    void *used = new_set();
    dev_want *any = open_want("");
    dev_want *x1 = open_want("\"selector\":{\"model\":\"x1\"}");
    dev_want *x3 = open_want("\"selector\":{\"model\":\"x3\"}");
    dev_want *here = open_want("\"nodeName\":\"node-a\",\"selector\":{\"model\":\"x1\"}");
    dev_want *there = open_want("\"nodeName\":\"node-b\"");

    cr_assert_str_eq(picks(p, used, any, "u1"), "a,b,d,e", "never the unhealthy c");
    cr_assert_str_eq(picks(p, used, x1, "u1"), "a,b,d", "the selector");
    cr_assert_str_eq(picks(p, used, here, "u1"), "a,b,d");
    cr_assert_str_eq(picks(p, used, x3, "u1"), "");
    cr_assert_str_eq(picks(p, used, there, "u1"), "", "another node");
    cr_assert_eq(dev_set_update(used, "b", "ns/other", true), KC_OK);
    cr_assert_str_eq(picks(p, used, x1, "u1"), "a,d", "b is used");

    const char *skip[] = {"a", "d"};
    char *slot = NULL;
    cr_assert_eq(dev_pick(p, used, NULL, skip, 2, "u1", x1, &slot), REC_NO_SLOT);
}

Test(dev_pick, a_claim_starts_from_its_own_place_and_claims_spread)
{
    dev_pool *p = mixed_pool();
    void *used = new_set();
    dev_want *any = open_want("");
    char *first = NULL, *again = NULL;
    cr_assert_eq(dev_pick(p, used, NULL, NULL, 0, "uid-1", any, &first), KC_OK);
    cr_assert_eq(dev_pick(p, used, NULL, NULL, 0, "uid-1", any, &again), KC_OK);
    cr_assert_str_eq(first, again, "a retry tries the same device first");
    bool spread = false;
    for (int i = 0; i < 32 && !spread; i++) {
        char *other = NULL;
        cr_assert_eq(dev_pick(p, used, NULL, NULL, 0, rcf_fmt("uid-%d", i), any, &other), KC_OK);
        spread = strcmp(other, first) != 0;
        free(other);
    }
    cr_assert(spread, "32 claims all start at %s", first);
    free(first);
    free(again);
}

Test(dev_pick, fit_counts_matching_devices_and_free_the_healthy_unused_unskipped)
{
    dev_pool *p = mixed_pool();
    void *used = new_set();
    dev_want *x1 = open_want("\"selector\":{\"model\":\"x1\"}");
    dev_want *there = open_want("\"nodeName\":\"node-b\"");
    int64_t fit = -1, free_now = -1;
    dev_pool_fit(p, x1, used, NULL, NULL, 0, &fit, &free_now);
    cr_assert_eq(fit, 4, "a, b, c (unhealthy now, maybe not later), d");
    cr_assert_eq(free_now, 3);
    cr_assert_eq(dev_set_update(used, "a", "ns/other", true), KC_OK);
    const char *skip[] = {"d"};
    dev_pool_fit(p, x1, used, NULL, skip, 1, &fit, &free_now);
    cr_assert_eq(fit, 4);
    cr_assert_eq(free_now, 1, "only b");
    dev_pool_fit(p, there, used, NULL, NULL, 0, &fit, &free_now);
    cr_assert_eq(fit, 0);
    cr_assert_eq(free_now, 0);
}

/* ---- choosing a pool ------------------------------------------------------------------------ */

/* A pool named name of n healthy devices (model x1) on node. */
static dev_pool *pool_of_n(const char *name, const char *node, int n)
{
    const char *devs = "";
    for (int i = 0; i < n; i++)
        devs = rcf_fmt("%s%s{\"id\":\"d%d\",\"attributes\":{\"model\":\"x1\"}}", devs, i ? "," : "",
                       i);
    json_object *o = parse(rcf_fmt("{\"metadata\":{\"name\":\"%s\"},\"spec\":{\"nodeName\":\"%s\","
                                   "\"resourceName\":\"" RES "\",\"devices\":[%s]}}",
                                   name, node, devs));
    dev_pool *p = NULL;
    char *problem = NULL;
    cr_assert_eq(dev_pool_from_obj(o, NOW, &p, &problem), KC_OK);
    cr_assert_not_null(p);
    json_object_put(o);
    return opened_add(p, pool_close);
}

/* The view of p with its fit and free for w, used holding the first n_used devices. */
static rec_pool_view view_of(const dev_pool *p, const dev_want *w, int n_used)
{
    void *used = new_set();
    for (int i = 0; i < n_used; i++)
        cr_assert_eq(dev_set_update(used, rcf_fmt("d%d", i), "ns/other", true), KC_OK);
    rec_pool_view v = {.name = p->name, .pool = p};
    dev_pool_fit(p, w, used, NULL, NULL, 0, &v.fit, &v.free);
    return v;
}

typedef struct choice {
    int rc;
    const char *name; /* chosen, or NULL */
    const char *reason;
    const char *message; /* or "" */
} choice;

static choice choose(const rec_pool_view *views, size_t n, const dev_want *w, const char *uid)
{
    size_t chosen = 99;
    const char *reason = NULL;
    char *message = NULL;
    choice c = {.rc = dev_choose_pool(views, n, w, uid, &chosen, &reason, &message)};
    if (c.rc == KC_OK) {
        cr_assert_lt(chosen, n);
        c.name = views[chosen].name;
        cr_assert_null(message);
    } else {
        cr_assert_eq(c.rc, REC_NO_SLOT);
        cr_assert_not_null(reason);
        cr_assert_not_null(message);
        c.reason = reason;
    }
    c.message = rcf_fmt("%s", message ? message : "");
    free(message);
    return c;
}

Test(dev_choose, the_pool_with_enough_free_devices_is_chosen)
{
    dev_pool *p1 = pool_of_n("p1", "node-a", 2), *p2 = pool_of_n("p2", "node-a", 3);
    dev_want *w = open_want("\"count\":2");
    rec_pool_view v[] = {view_of(p1, w, 1), view_of(p2, w, 0)};
    for (int i = 0; i < 16; i++) {
        choice c = choose(v, 2, w, rcf_fmt("uid-%d", i));
        cr_assert_eq(c.rc, KC_OK);
        cr_assert_str_eq(c.name, "p2", "p1 has 1 free");
    }
}

Test(dev_choose, claims_spread_over_fitting_pools_whatever_their_order)
{
    dev_pool *p[3] = {pool_of_n("p1", "node-a", 2), pool_of_n("p2", "node-a", 2),
                      pool_of_n("p3", "node-b", 2)};
    dev_want *w = open_want("");
    rec_pool_view v[3], rev[3];
    for (int i = 0; i < 3; i++)
        v[i] = rev[2 - i] = view_of(p[i], w, 0);
    int seen[3] = {0};
    for (int i = 0; i < 48; i++) {
        const char *uid = rcf_fmt("uid-%d", i);
        choice a = choose(v, 3, w, uid), b = choose(rev, 3, w, uid);
        cr_assert_eq(a.rc, KC_OK);
        cr_assert_str_eq(a.name, b.name, "the order of the views does not matter");
        seen[a.name[1] - '1']++;
    }
    cr_assert(seen[0] && seen[1] && seen[2], "48 claims: p1 %d, p2 %d, p3 %d", seen[0], seen[1],
              seen[2]);

    /* nodeName narrows it to the pools of that node */
    dev_want *b = open_want("\"nodeName\":\"node-b\"");
    for (int i = 0; i < 3; i++)
        v[i] = view_of(p[i], b, 0);
    for (int i = 0; i < 8; i++)
        cr_assert_str_eq(choose(v, 3, b, rcf_fmt("uid-%d", i)).name, "p3");
}

Test(dev_choose, a_pool_that_could_but_not_now_is_insufficient_devices)
{
    dev_pool *p1 = pool_of_n("p1", "node-a", 2), *p2 = pool_of_n("p2", "node-a", 1);
    dev_want *w = open_want("\"count\":2,\"selector\":{\"model\":\"x1\"}");
    rec_pool_view v[] = {view_of(p1, w, 1), view_of(p2, w, 0)};
    choice c = choose(v, 2, w, "uid-1");
    cr_assert_str_eq(c.reason, DEV_REASON_INSUFFICIENT);
    cr_assert(strstr(c.message, "2 devices of " RES " matching model=x1"), "%s", c.message);
    cr_assert(strstr(c.message, "p1 has 1 free"), "%s", c.message);
    cr_assert_null(strstr(c.message, "p2"), "p2 can never hold 2: %s", c.message);
}

Test(dev_choose, no_pool_that_ever_could_is_no_matching_devices_saying_why_of_each)
{
    dev_pool *p1 = pool_of_n("p1", "node-a", 1), *p2 = pool_of_n("p2", "node-b", 3),
             *p3 = pool_of_n("p3", "node-a", 3);
    dev_want *w = open_want("\"count\":2,\"nodeName\":\"node-a\"");
    rec_pool_view v[] = {view_of(p1, w, 0), view_of(p2, w, 0), view_of(p3, w, 0), {.name = "p4"}};
    v[2].deleting = true;
    choice c = choose(v, 4, w, "uid-1");
    cr_assert_str_eq(c.reason, DEV_REASON_NO_MATCH);
    cr_assert(strstr(c.message, "no DevicePool can ever hold 2 devices of " RES " on node node-a"),
              "%s", c.message);
    cr_assert(strstr(c.message, "p1 has 1 matching"), "%s", c.message);
    cr_assert(strstr(c.message, "p2 is on another node"), "%s", c.message);
    cr_assert(strstr(c.message, "p3 is being deleted"), "%s", c.message);
    cr_assert(strstr(c.message, "p4 has an invalid spec"), "%s", c.message);

    c = choose(NULL, 0, w, "uid-1");
    cr_assert_str_eq(c.reason, DEV_REASON_NO_MATCH);
    cr_assert(strstr(c.message, "there is no DevicePool of " RES), "%s", c.message);
}

Test(dev_choose, a_selector_key_no_device_has_is_invalid_spec_naming_it)
{
    dev_pool *p1 = pool_of_n("p1", "node-a", 2);
    dev_want *w = open_want("\"selector\":{\"model\":\"x1\",\"colour\":\"red\"}");
    rec_pool_view v[] = {view_of(p1, w, 0)};
    choice c = choose(v, 1, w, "uid-1");
    cr_assert_str_eq(c.reason, DEV_REASON_INVALID_SPEC);
    cr_assert(strstr(c.message, "spec.selector") && strstr(c.message, "colour"), "%s", c.message);

    /* A known key with a value no device has: a wait, not a mistake. */
    dev_want *x9 = open_want("\"selector\":{\"model\":\"x9\"}");
    v[0] = view_of(p1, x9, 0);
    c = choose(v, 1, x9, "uid-1");
    cr_assert_str_eq(c.reason, DEV_REASON_NO_MATCH);
}

Test(dev_choose, a_selector_before_any_pool_exists_is_no_matching_devices)
{
    /* Nothing to check the key against yet (a claim applied before its
     * pool): the claim waits for a pool, its spec is not wrong. */
    dev_want *w = open_want("\"selector\":{\"model\":\"x1\"}");
    choice c = choose(NULL, 0, w, "uid-1");
    cr_assert_str_eq(c.reason, DEV_REASON_NO_MATCH, "%s", c.message);
    cr_assert(strstr(c.message, "there is no DevicePool of " RES), "%s", c.message);
}

/* ---- held devices: keep, replace, names ------------------------------------------------------ */

Test(dev_slots, choose_keep_prefers_what_status_names_then_the_lowest_id)
{
    const char *held[] = {"fpga-2", "fpga-0", "fpga-1"};
    cr_assert_eq(dev_choose_keep(held, 3, NULL, NULL), 1);
    cr_assert_eq(dev_choose_keep(held, 3, "fpga-2", NULL), 0);
    cr_assert_eq(dev_choose_keep(held, 3, "fpga-9", NULL), 1, "status names one not held");
    cr_assert_eq(dev_choose_keep(held, 1, NULL, NULL), 0);
}

Test(dev_slots, replace_only_when_asked_and_the_device_is_unhealthy_or_gone)
{
    dev_pool *p = mixed_pool();
    dev_want *keep = open_want("");
    dev_want *repl = open_want("\"replaceUnhealthy\":true");
    cr_assert_not(dev_slot_replace(p, keep, "c"), "not asked");
    cr_assert(dev_slot_replace(p, repl, "c"), "c is unhealthy");
    cr_assert_not(dev_slot_replace(p, repl, "a"));
    cr_assert(dev_slot_replace(p, repl, "gone"), "no longer in the pool");
    cr_assert_not(dev_slot_replace(NULL, repl, "c"), "no usable pool: nothing to swap to");
}

Test(dev_slots, reservation_names_are_devicepool_pool_id_and_refuse_non_dns_ids)
{
    char *name = NULL, *canon = NULL;
    cr_assert_eq(dev_slot_name("p1", "fpga-0", &name, &canon), KC_OK);
    cr_assert_str_eq(name, "devicepool.p1.fpga-0");
    cr_assert_str_eq(canon, "fpga-0");
    free(name);
    free(canon);
    cr_assert_eq(dev_slot_name("p1", "a", &name, NULL), KC_OK);
    cr_assert_str_eq(name, "devicepool.p1.a");
    free(name);

    char long_id[65];
    memset(long_id, 'a', 64);
    long_id[64] = '\0';
    const char *bad[] = {"FPGA", "a.b", "a_b", "", "-a", "a-", long_id};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        name = canon = (char *)"untouched";
        cr_assert_eq(dev_slot_name("p1", bad[i], &name, &canon), KC_ERR_INVALID_ARG, "id \"%s\"",
                     bad[i]);
        cr_assert_null(name);
    }
    cr_assert_eq(dev_slot_name("p1", NULL, &name, NULL), KC_ERR_INVALID_ARG);
}

/* ---- the used set and counts ------------------------------------------------------------------
 */

Test(dev_set, holders_come_and_go)
{
    void *s = new_set();
    cr_assert_eq(dev_set_count(s), 0);
    cr_assert_null(dev_set_holder(s, "a"));
    cr_assert_eq(dev_set_update(s, "a", "ns/c1", true), KC_OK);
    cr_assert_eq(dev_set_update(s, "b", NULL, true), KC_OK);
    cr_assert_str_eq(dev_set_holder(s, "a"), "ns/c1");
    cr_assert_str_eq(dev_set_holder(s, "b"), "", "held by a claim not known");
    cr_assert(dev_set_has(s, "b"));
    cr_assert_eq(dev_set_count(s), 2);
    cr_assert_eq(dev_set_update(s, "a", "ns/c2", true), KC_OK);
    cr_assert_str_eq(dev_set_holder(s, "a"), "ns/c2");
    cr_assert_eq(dev_set_count(s), 2);
    cr_assert_eq(dev_set_update(s, "a", NULL, false), KC_OK);
    cr_assert_eq(dev_set_update(s, "zz", NULL, false), KC_OK, "removing what is not there");
    cr_assert_not(dev_set_has(s, "a"));
    cr_assert_eq(dev_set_count(s), 1);
    cr_assert_eq(dev_set_update(s, "", "ns/c1", true), KC_ERR_INVALID_ARG);
    cr_assert_eq(dev_set_count(s), 1);
    dev_set_free(NULL);
}

Test(dev_set, counts_capacity_is_healthy_available_healthy_free_allocated_held)
{
    dev_pool *p = mixed_pool(); /* a b c(unhealthy) d e */
    void *s = new_set();
    cr_assert_eq(dev_set_update(s, "a", "ns/c1", true), KC_OK);
    cr_assert_eq(dev_set_update(s, "c", "ns/c2", true), KC_OK);
    rec_pool_counts c;
    dev_set_counts(s, NULL, p, &c);
    cr_assert_eq(c.total, 4);
    cr_assert_eq(c.allocated, 2);
    cr_assert_eq(c.available, 3, "b, d, e");
    const dev_detail *dt = c.detail;
    cr_assert_not_null(dt);
    cr_assert_eq(dt->n, 5);
    cr_assert_eq(dt->unhealthy, 1);
    cr_assert_str_eq(dt->devs[0].id, "a");
    cr_assert_str_eq(dt->devs[0].holder, "ns/c1");
    cr_assert_null(dt->devs[1].holder);
    cr_assert_not(dt->devs[2].healthy);
    cr_assert_str_eq(dt->devs[2].holder, "ns/c2");
    cr_assert_not_null(dt->devs[2].message);
    dev_detail_free(c.detail);

    dev_set_counts(s, NULL, NULL, &c);
    cr_assert_eq(c.total, 0, "an unusable spec");
    cr_assert_eq(c.available, 0);
    cr_assert_eq(c.allocated, 2);
    cr_assert_null(c.detail);
}

/* ---- claim status -------------------------------------------------------------------------------
 */

static json_object *cond(json_object *st, const char *type)
{
    json_object *c = rec_get_condition(st, type);
    cr_assert_not_null(c, "no %s in %s", type, json_object_to_json_string(st));
    return c;
}

static void assert_cond(json_object *st, const char *type, const char *status, const char *reason)
{
    json_object *c = cond(st, type);
    cr_assert_str_eq(rec_obj_str(c, "status"), status, "%s", json_object_to_json_string(st));
    cr_assert_str_eq(rec_obj_str(c, "reason"), reason, "%s", json_object_to_json_string(st));
}

static json_object *claim_ready(const dev_pool *p, const char *const *slots, size_t n, char **event)
{
    json_object *st = NULL;
    cr_assert_eq(dev_status_claim_ready(NULL, "p1", NULL, p, NULL, slots, n, 1, NOW, &st, event),
                 KC_OK);
    cr_assert_not_null(st);
    return st;
}

Test(dev_status, a_ready_claim_lists_its_devices_sorted_with_pool_and_node)
{
    dev_pool *p = mixed_pool();
    const char *slots[] = {"d", "a"};
    char *event = NULL;
    json_object *st = claim_ready(p, slots, 2, &event);
    cr_assert_str_eq(rec_obj_str(st, "pool"), "p1");
    cr_assert_str_eq(rec_obj_str(st, "nodeName"), "node-a");
    json_object *devs = rec_obj_at(st, "devices");
    cr_assert_eq(json_object_array_length(devs), 2);
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(devs, 0)), "a");
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(devs, 1)), "d");
    assert_cond(st, REC_COND_READY, REC_COND_TRUE, DEV_REASON_ALLOCATED);
    assert_cond(st, DEV_COND_HEALTHY, REC_COND_TRUE, DEV_REASON_HEALTHY);
    cr_assert(event && strstr(event, "a, d") && strstr(event, "node-a"), "%s", event);

    /* what status_slots reads back */
    char **back = NULL;
    size_t n = 0;
    cr_assert_eq(dev_status_slots(st, &back, &n), KC_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(back[0], "a");
    cr_assert_str_eq(back[1], "d");
    free(back[0]);
    free(back[1]);
    free(back);
    char *first = dev_status_slot(st);
    cr_assert_str_eq(first, "a");
    free(first);
    free(event);
    json_object_put(st);
}

Test(dev_status, a_held_device_unhealthy_or_gone_is_devices_healthy_false_naming_it)
{
    dev_pool *p = mixed_pool();
    const char *slots[] = {"a", "c", "zz"};
    char *event = NULL;
    json_object *st = claim_ready(p, slots, 3, &event);
    assert_cond(st, REC_COND_READY, REC_COND_TRUE, DEV_REASON_ALLOCATED);
    assert_cond(st, DEV_COND_HEALTHY, REC_COND_FALSE, DEV_REASON_UNHEALTHY);
    const char *m = rec_obj_str(cond(st, DEV_COND_HEALTHY), "message");
    cr_assert(strstr(m, "c is unhealthy") && strstr(m, "healthy: false"), "%s", m);
    cr_assert(strstr(m, "zz is no longer in the pool"), "%s", m);
    cr_assert_null(strstr(m, "a is"), "%s", m);
    free(event);
    json_object_put(st);
}

Test(dev_status, status_slots_of_no_or_odd_status_are_none)
{
    const char *texts[] = {"{}", "{\"devices\":[]}", "{\"devices\":\"a\"}", "{\"devices\":[1]}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        json_object *st = parse(texts[i]);
        char **v = NULL;
        size_t n = 9;
        cr_assert_eq(dev_status_slots(st, &v, &n), KC_OK);
        cr_assert_eq(n, 0, "%s", texts[i]);
        cr_assert_null(v);
        cr_assert_null(dev_status_slot(st));
        json_object_put(st);
    }
    cr_assert_null(dev_status_slot(NULL));
}

/* ---- pool status
 * --------------------------------------------------------------------------------- */

/* The status of pool p (devices a..e, a held by ns/c1) over cached (text or NULL). */
static json_object *pool_status(const dev_pool *p, const char *cached)
{
    void *s = new_set();
    cr_assert_eq(dev_set_update(s, "a", "ns/c1", true), KC_OK);
    rec_pool_counts c;
    dev_set_counts(s, NULL, p, &c);
    json_object *cached_obj = cached ? parse(cached) : NULL;
    json_object *st = NULL;
    cr_assert_eq(
        dev_status_pool(cached_obj, &c, REC_COND_TRUE, DEV_REASON_VALID, "fine", 1, NOW, &st),
        KC_OK);
    cr_assert_not_null(st);
    json_object_put(cached_obj);
    dev_detail_free(c.detail);
    return st;
}

static json_object *device_entry(json_object *st, const char *id)
{
    json_object *devs = rec_obj_at(st, "devices");
    cr_assert_not_null(devs);
    for (size_t i = 0; i < json_object_array_length(devs); i++) {
        json_object *e = json_object_array_get_idx(devs, i);
        if (!strcmp(rec_obj_str(e, "id"), id))
            return e;
    }
    cr_assert_fail("no device %s in %s", id, json_object_to_json_string(st));
    return NULL;
}

Test(dev_status, pool_status_has_counts_devices_with_claims_and_publish)
{
    dev_pool *p = mixed_pool();
    json_object *st = pool_status(p, NULL);
    cr_assert_eq(json_object_get_int64(rec_obj_at(st, "capacity")), 4);
    cr_assert_eq(json_object_get_int64(rec_obj_at(st, "allocated")), 1);
    cr_assert_eq(json_object_get_int64(rec_obj_at(st, "available")), 3);
    cr_assert_eq(json_object_get_int64(rec_obj_at(st, "unhealthy")), 1);
    cr_assert_str_eq(rec_obj_str(st, "publish"), "NodeCapacity");
    cr_assert_eq(json_object_array_length(rec_obj_at(st, "devices")), 5);
    json_object *a = device_entry(st, "a");
    cr_assert_str_eq(rec_obj_str(a, "claim"), "ns/c1");
    cr_assert_str_eq(rec_obj_str(a, "source"), "Declared");
    cr_assert(json_object_get_boolean(rec_obj_at(a, "healthy")));
    json_object *c = device_entry(st, "c");
    cr_assert_null(rec_obj_at(c, "claim"));
    cr_assert_not(json_object_get_boolean(rec_obj_at(c, "healthy")));
    assert_cond(st, REC_COND_READY, REC_COND_TRUE, DEV_REASON_VALID);
    cr_assert_null(rec_get_condition(st, DEV_COND_AGENT), "no path, no discover: no agent");
    json_object_put(st);
}

Test(dev_status, pool_status_carries_the_agent_report_over_unchanged)
{
    const char *report = agent_status(10, DISCOVERED_REPORT);
    dev_pool *p = open_pool(pool_text("p1", DISCOVER_SPEC, report));
    json_object *st = pool_status(p, report);
    json_object *want = parse(report);
    cr_assert(json_object_equal(rec_obj_at(st, "agent"), rec_obj_at(want, "agent")), "%s",
              json_object_to_json_string(st));
    json_object *d = device_entry(st, "fpga0");
    cr_assert_str_eq(rec_obj_str(d, "source"), "Discovered");
    assert_cond(st, DEV_COND_AGENT, REC_COND_TRUE, DEV_REASON_REPORTING);
    json_object_put(want);
    json_object_put(st);
}

Test(dev_status, agent_reporting_is_false_without_a_fresh_report_and_gone_when_none_is_wanted)
{
    dev_pool *p = open_pool(pool_text("p1", DECLARED_WITH_PATH, agent_status(300, "")));
    json_object *st = pool_status(p, NULL);
    assert_cond(st, DEV_COND_AGENT, REC_COND_FALSE, DEV_REASON_NO_AGENT);
    const char *cached =
        rcf_fmt("{\"conditions\":[%s]}", json_object_to_json_string(cond(st, DEV_COND_AGENT)));

    /* The paths went from the spec: the condition goes too. */
    p = open_pool(pool_text("p1", "\"devices\":[{\"id\":\"a\"}]", NULL));
    json_object *st2 = pool_status(p, cached);
    cr_assert_null(rec_get_condition(st2, DEV_COND_AGENT), "%s", json_object_to_json_string(st2));
    json_object_put(st);
    json_object_put(st2);
}

Test(dev_status, pool_changed_when_the_agent_devices_or_its_reporting_change)
{
    const char *dev_a = "{\"id\":\"a\",\"present\":true}";
    const char *dev_a_gone = "{\"id\":\"a\",\"present\":false}";
    struct {
        const char *old_status, *new_status;
        bool changed;
    } cases[] = {
        {agent_status(10, dev_a), agent_status(5, dev_a), false}, /* a heartbeat only */
        {agent_status(10, dev_a), agent_status(5, dev_a_gone), true},
        {NULL, agent_status(5, dev_a), true},
        {agent_status(10, dev_a), NULL, true},
        {"{\"conditions\":[{\"type\":\"AgentReporting\",\"status\":\"True\"}]}",
         "{\"conditions\":[{\"type\":\"AgentReporting\",\"status\":\"False\"}]}", true},
        {NULL, "{\"conditions\":[{\"type\":\"AgentReporting\",\"status\":\"False\"}]}", true},
        {"{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}",
         "{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}]}", false},
        {NULL, NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *a = parse(pool_text("p1", "", cases[i].old_status));
        json_object *b = parse(pool_text("p1", "", cases[i].new_status));
        cr_assert_eq(dev_pool_changed(a, b), cases[i].changed, "case %zu", i);
        json_object_put(a);
        json_object_put(b);
    }
}

Test(dev_status, count_only_is_counts_and_holders_not_devices_health_or_conditions)
{
    const char *base = "{\"capacity\":2,\"allocated\":0,\"available\":2,\"devices\":["
                       "{\"id\":\"a\",\"healthy\":true},{\"id\":\"b\",\"healthy\":true}],"
                       "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}";
    struct {
        const char *new_status;
        bool counts_only;
    } cases[] = {
        {"{\"capacity\":2,\"allocated\":1,\"available\":1,\"devices\":["
         "{\"id\":\"a\",\"healthy\":true,\"claim\":\"ns/c\"},{\"id\":\"b\",\"healthy\":true}],"
         "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}",
         true},
        /* a device turned unhealthy */
        {"{\"capacity\":1,\"allocated\":0,\"available\":1,\"devices\":["
         "{\"id\":\"a\",\"healthy\":false},{\"id\":\"b\",\"healthy\":true}],"
         "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}",
         false},
        /* a device the agent found */
        {"{\"capacity\":3,\"allocated\":0,\"available\":3,\"devices\":["
         "{\"id\":\"a\",\"healthy\":true},{\"id\":\"b\",\"healthy\":true},"
         "{\"id\":\"c\",\"healthy\":true}],"
         "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}",
         false},
        /* Ready changes */
        {"{\"capacity\":2,\"allocated\":1,\"available\":1,\"devices\":["
         "{\"id\":\"a\",\"healthy\":true,\"claim\":\"ns/c\"},{\"id\":\"b\",\"healthy\":true}],"
         "\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}]}",
         false},
        /* the node agent's report, carried over */
        {"{\"capacity\":2,\"allocated\":0,\"available\":2,\"devices\":["
         "{\"id\":\"a\",\"healthy\":true},{\"id\":\"b\",\"healthy\":true}],"
         "\"agent\":{\"devices\":[]},"
         "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}",
         false},
    };
    json_object *old = parse(base);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *st = parse(cases[i].new_status);
        cr_assert_eq(dev_status_pool_counts_only(old, st), cases[i].counts_only, "case %zu", i);
        json_object_put(st);
    }
    json_object_put(old);
}

Test(dev_pick, free_without_a_selector_follows_the_set_and_counts_a_skipped_device_once)
{
    dev_pool *p = mixed_pool();
    void *used = new_set();
    dev_want *any = open_want("");
    int64_t fit = -1, free_now = -1;
    dev_pool_fit(p, any, used, NULL, NULL, 0, &fit, &free_now);
    cr_assert_eq(fit, 5);
    cr_assert_eq(free_now, 4, "every healthy one: a, b, d, e");
    dev_pool_fit(p, any, used, NULL, NULL, 0, &fit, &free_now);
    cr_assert_eq(free_now, 4, "asked again (the memo)");
    cr_assert_eq(dev_set_update(used, "a", "ns/other", true), KC_OK);
    dev_pool_fit(p, any, used, NULL, NULL, 0, &fit, &free_now);
    cr_assert_eq(free_now, 3, "a taken");
    /* b twice, a (held), c (unhealthy), zz (not in the pool): b counts once */
    const char *skip[] = {"b", "a", "b", "c", "zz"};
    dev_pool_fit(p, any, used, NULL, skip, 5, &fit, &free_now);
    cr_assert_eq(free_now, 2, "d and e");
    cr_assert_eq(dev_set_update(used, "a", NULL, false), KC_OK);
    dev_pool_fit(p, any, used, NULL, NULL, 0, &fit, &free_now);
    cr_assert_eq(free_now, 4, "a free again");
    /* Another pool through the same set: its own count. */
    dev_pool *q = pool_of_n("p2", "node-a", 3);
    dev_pool_fit(q, any, used, NULL, NULL, 0, &fit, &free_now);
    cr_assert_eq(fit, 3);
    cr_assert_eq(free_now, 3);
}
