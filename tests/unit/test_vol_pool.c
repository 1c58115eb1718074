/*
 * Unit tests of the operator's reading of a StoragePool
 * (src/reconcilers/volume/vol_pool.h): spec.quota, the node agent's report
 * (fresh, of the current generation), the Ready condition and its reasons
 * in order, status.quota, and the status written (the agent's report kept,
 * the ledger's fields, usedBytes, the condition's transition time).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_error.h"
#include "rec_util.h"
#include "vol_pool.h"

#define NOW 1800000000 /* 2027-01-15T08:00:00Z */

/* A pool of generation 3 on node-a, /srv/pool, with spec.quota (NULL: none)
 * and an agent report (NULL: none) heartbeating at NOW - age. */
static json_object *pool_with(const char *quota, const char *agent_fields, int age)
{
    char hb[REC_TIME_STRLEN];
    cr_assert_not_null(rec_format_time(NOW - age, hb));
    char *buf = NULL;
    cr_assert_gt(asprintf(&buf,
                          "{\"metadata\":{\"name\":\"p\",\"generation\":3},"
                          "\"spec\":{\"nodeName\":\"node-a\",\"path\":\"/srv/pool\","
                          "\"capacity\":\"1Ki\"%s%s%s},"
                          "\"status\":{\"allocatedBytes\":100%s%s%s%s}}",
                          quota ? ",\"quota\":\"" : "", quota ? quota : "", quota ? "\"" : "",
                          agent_fields ? ",\"agent\":{\"heartbeatTime\":\"" : "",
                          agent_fields ? hb : "", agent_fields ? "\"," : "",
                          agent_fields ? agent_fields : ""),
                 0);
    if (agent_fields) { /* close the agent object */
        char *closed = NULL;
        size_t n = strlen(buf);
        cr_assert_gt(asprintf(&closed, "%.*s}}}", (int)(n - 2), buf), 0);
        free(buf);
        buf = closed;
    }
    json_object *o = json_tokener_parse(buf);
    cr_assert_not_null(o, "bad test JSON: %s", buf);
    free(buf);
    return o;
}

#define GOOD_AGENT                                                                                 \
    "\"observedGeneration\":3,\"present\":true,\"writable\":true,\"filesystem\":\"btrfs\","        \
    "\"quotaSupported\":true,\"usedBytes\":42"

Test(vol_pool, quota_mode)
{
    const char *q[] = {NULL, "Auto", "Required", "Off"};
    vol_quota_mode want[] = {VOL_QUOTA_AUTO, VOL_QUOTA_AUTO, VOL_QUOTA_REQUIRED, VOL_QUOTA_OFF};
    for (size_t i = 0; i < 4; i++) {
        json_object *p = pool_with(q[i], NULL, 0);
        cr_expect_eq(vol_pool_quota_mode(p), want[i], "%s", q[i] ? q[i] : "(none)");
        json_object_put(p);
    }
}

Test(vol_pool, report)
{
    json_object *p = pool_with(NULL, GOOD_AGENT, 5);
    vol_agent_report r;
    vol_pool_report(p, NOW, &r);
    cr_expect(r.fresh && r.current && r.present && r.writable && r.quota_supported);
    cr_expect(r.has_used);
    cr_expect_eq(r.used_bytes, 42);
    cr_expect_str_eq(r.filesystem, "btrfs");
    json_object_put(p);

    /* Stale, from the future, of an older generation, or none at all. */
    p = pool_with(NULL, GOOD_AGENT, VOL_AGENT_STALE + 1);
    vol_pool_report(p, NOW, &r);
    cr_expect_not(r.fresh);
    json_object_put(p);
    p = pool_with(NULL, GOOD_AGENT, -(VOL_AGENT_STALE + 1));
    vol_pool_report(p, NOW, &r);
    cr_expect_not(r.fresh, "a heartbeat from the future is not trusted either");
    json_object_put(p);
    p = pool_with(NULL, "\"observedGeneration\":2,\"present\":true", 0);
    vol_pool_report(p, NOW, &r);
    cr_expect(r.fresh);
    cr_expect_not(r.current);
    json_object_put(p);
    p = pool_with(NULL, NULL, 0);
    vol_pool_report(p, NOW, &r);
    cr_expect_not(r.fresh || r.present || r.has_used);
    json_object_put(p);
}

/* The readiness of a pool with quota mode q and agent fields a (age 0). */
static void expect_ready(const char *q, const char *a, vol_node_state node, const char *status,
                         const char *reason, const char *fragment)
{
    json_object *p = pool_with(q, a, 0);
    vol_agent_report r;
    vol_pool_report(p, NOW, &r);
    const char *cs, *why;
    char *msg = NULL;
    cr_assert_eq(vol_pool_readiness(p, node, &r, &cs, &why, &msg), KC_OK);
    cr_expect_str_eq(cs, status, "%s", a ? a : "(no report)");
    cr_expect_str_eq(why, reason, "%s", a ? a : "(no report)");
    cr_expect(msg && strstr(msg, fragment), "message '%s' lacks '%s'", msg ? msg : "", fragment);
    free(msg);
    json_object_put(p);
}

Test(vol_pool, readiness)
{
    expect_ready(NULL, GOOD_AGENT, VOL_NODE_READY, "True", VOL_REASON_READY,
                 "/srv/pool on node node-a is present and writable on btrfs");
    expect_ready(NULL, GOOD_AGENT, VOL_NODE_MISSING, "False", VOL_REASON_NODE,
                 "node node-a does not exist");
    expect_ready(NULL, GOOD_AGENT, VOL_NODE_NOT_READY, "False", VOL_REASON_NODE_NOT_READY,
                 "node node-a is not Ready: the volumes in /srv/pool stay");
    expect_ready(NULL, NULL, VOL_NODE_READY, "False", VOL_REASON_AGENT, "provisio-agent DaemonSet");
    expect_ready(NULL, "\"observedGeneration\":2,\"present\":true,\"writable\":true",
                 VOL_NODE_READY, "False", VOL_REASON_AGENT, "since its spec changed");
    expect_ready(NULL, "\"observedGeneration\":3,\"present\":false,\"message\":\"no such dir\"",
                 VOL_NODE_READY, "False", VOL_REASON_PATH_NOT_FOUND,
                 "/srv/pool is not a directory on node node-a: no such dir");
    expect_ready(NULL, "\"observedGeneration\":3,\"present\":true,\"writable\":false",
                 VOL_NODE_READY, "False", VOL_REASON_NOT_WRITABLE,
                 "cannot write in /srv/pool on node node-a");
    const char *no_quota = "\"observedGeneration\":3,\"present\":true,\"writable\":true,"
                           "\"quotaSupported\":false,\"quotaMessage\":\"tmpfs has no quotas\"";
    expect_ready("Required", no_quota, VOL_NODE_READY, "False", VOL_REASON_QUOTA,
                 "cannot limit directories: tmpfs has no quotas");
    expect_ready("Auto", no_quota, VOL_NODE_READY, "True", VOL_REASON_READY,
                 "present and writable");
    expect_ready("Off", no_quota, VOL_NODE_READY, "True", VOL_REASON_READY, "present and writable");
}

Test(vol_pool, node_state)
{
    cr_expect_eq(vol_node_state_of(NULL), VOL_NODE_MISSING);
    json_object *n = json_tokener_parse("{\"metadata\":{\"name\":\"node-a\"}}");
    cr_expect_eq(vol_node_state_of(n), VOL_NODE_NOT_READY, "no Ready condition: not Ready");
    json_object_put(n);
    n = json_tokener_parse("{\"status\":{\"conditions\":[{\"type\":\"MemoryPressure\","
                           "\"status\":\"False\"},{\"type\":\"Ready\",\"status\":\"True\"}]}}");
    cr_expect_eq(vol_node_state_of(n), VOL_NODE_READY);
    json_object_put(n);
    n = json_tokener_parse(
        "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"Unknown\"}]}}");
    cr_expect_eq(vol_node_state_of(n), VOL_NODE_NOT_READY, "Unknown: the kubelet stopped posting");
    json_object_put(n);
}

Test(vol_pool, quota_status)
{
    vol_agent_report r = {.fresh = true, .current = true, .present = true};
    cr_expect_str_eq(vol_pool_quota_status(VOL_QUOTA_OFF, &r), "Off");
    cr_expect_str_eq(vol_pool_quota_status(VOL_QUOTA_AUTO, &r), "Unsupported");
    r.quota_supported = true;
    cr_expect_str_eq(vol_pool_quota_status(VOL_QUOTA_REQUIRED, &r), "Enforced");
    r.fresh = false;
    cr_expect_null(vol_pool_quota_status(VOL_QUOTA_AUTO, &r), "no fresh report: unknown");
    vol_agent_report none = {0};
    cr_expect_str_eq(vol_pool_quota_status(VOL_QUOTA_OFF, &none), "Off");
}

Test(vol_pool, status)
{
    json_object *p = pool_with(NULL, GOOD_AGENT, 0);
    vol_agent_report r;
    vol_pool_report(p, NOW, &r);
    vol_ledger l;
    char *why = NULL;
    cr_assert_eq(vol_ledger_read(p, &l, &why), KC_OK);
    json_object *cached = rec_obj_at(p, "status");
    json_object *st = NULL;
    cr_assert_eq(vol_pool_status(cached, &l, 2, &r, VOL_QUOTA_AUTO, "True", VOL_REASON_READY, "ok",
                                 3, NOW, &st),
                 KC_OK);
    cr_expect_eq(json_object_get_int64(rec_obj_at(st, "capacityBytes")), 1024);
    cr_expect_eq(json_object_get_int64(rec_obj_at(st, "allocatedBytes")), 100);
    cr_expect_eq(json_object_get_int64(rec_obj_at(st, "availableBytes")), 924);
    cr_expect_eq(json_object_get_int64(rec_obj_at(st, "volumes")), 2);
    cr_expect_eq(json_object_get_int64(rec_obj_at(st, "usedBytes")), 42);
    cr_expect_eq(json_object_get_int64(rec_obj_at(st, "observedGeneration")), 3);
    cr_expect_str_eq(rec_obj_str(st, "quota"), "Enforced");
    cr_expect_str_eq(rec_obj_str(st, "agent.filesystem"), "btrfs", "the agent's report is kept");
    json_object *ready = rec_get_condition(st, "Ready");
    cr_assert_not_null(ready);
    cr_expect_str_eq(rec_obj_str(ready, "reason"), VOL_REASON_READY);
    const char *since = rec_obj_str(ready, "lastTransitionTime");
    cr_assert_not_null(since);

    /* Rewritten later with the same Ready status: the transition time stays;
     * a stale report drops usedBytes and quota (unknown, not zero). */
    json_object *st2 = NULL;
    vol_agent_report stale = r;
    stale.fresh = false;
    cr_assert_eq(vol_pool_status(st, &l, 2, &stale, VOL_QUOTA_AUTO, "True", VOL_REASON_READY, "ok",
                                 3, NOW + 60, &st2),
                 KC_OK);
    cr_expect_str_eq(rec_obj_str(rec_get_condition(st2, "Ready"), "lastTransitionTime"), since);
    cr_expect_null(rec_obj_at(st2, "usedBytes"));
    cr_expect_null(rec_obj_at(st2, "quota"));
    json_object_put(st2);
    json_object_put(st);
    vol_ledger_close(&l);
    json_object_put(p);
}
