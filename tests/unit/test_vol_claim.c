/*
 * Unit tests of the Volume controller's choice of a pool
 * (src/reconcilers/volume/vol_claim.c, choose_pool): what a Volume that
 * cannot be placed says about why, so that its user looks in the right
 * place. A Volume of a StorageClass (made for a PVC) is served only by the
 * pools of that class or of none; Ready pools that serve other classes are
 * named as such, not reported as "no StoragePool is Ready".
 *
 * The real volume app (vol_setup, tests/support/vol_fixture.h) runs the
 * "volume" controller against a replay server serving its informers' lists;
 * each test asserts on the status write.
 */
#include <criterion/criterion.h>

#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "rec_util.h"
#include "vol_fixture.h"

#define NS RCF_NS
#define VOL "data"
#define VOL_STATUS "/apis/provisio.dev/v1alpha1/namespaces/" NS "/volumes/" VOL "/status"

static void env_start(void)
{
    vfx_start("volume-claim");
    RCF.skip_informer_reads = true;
}

TestSuite(vol_claim, .init = env_start, .fini = vfx_stop, .timeout = 60);

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A Volume of 1Gi (with our finalizer: no finalizer patch first), of the
 * StorageClass cls (the annotation dynamic provisioning sets; NULL: none). */
static const char *volume_json(const char *cls)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"" VOL "\",\"namespace\":\"" NS "\","
                   "\"uid\":\"uid-vol\",\"resourceVersion\":\"50\",\"generation\":1,"
                   "\"finalizers\":[\"" REC_FINALIZER "\"]%s%s%s},"
                   "\"spec\":{\"size\":\"1Gi\"}}",
                   cls ? ",\"annotations\":{\"" VOL_ANN_CLASS "\":\"" : "", cls ? cls : "",
                   cls ? "\"}" : "");
}

/* A Ready StoragePool of 10Gi on node-b with nothing allocated, serving
 * cls (NULL: every class). */
static const char *pool_json(const char *name, const char *cls)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"%s\",\"uid\":\"uid-%s\",\"resourceVersion\":\"7\"},"
                   "\"spec\":{\"nodeName\":\"node-b\",\"path\":\"/srv/%s\",\"capacity\":\"10Gi\""
                   "%s%s%s},"
                   "\"status\":{\"capacityBytes\":10737418240,\"allocatedBytes\":0,"
                   "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":"
                   "\"PathReady\",\"message\":\"ok\",\"lastTransitionTime\":"
                   "\"2026-01-01T00:00:00Z\"}]}}",
                   name, name, name, cls ? ",\"storageClassName\":\"" : "", cls ? cls : "",
                   cls ? "\"" : "");
}

/* Run the Volume controller over the served lists; the first request is
 * the Volume's status, Ready=False reason: its message. */
static const char *pending_message(const char *reason)
{
    rcf_answer("PUT", VOL_STATUS, 200, "{}");
    vfx_run(VOL_CLAIM_CONTROLLER);
    vfx_wait_reconciles(VOL_CLAIM_CONTROLLER, 1);
    sleep_ms(100);
    cr_assert_geq(rcf_api_count(), 1, "%s", rcf_describe_requests());
    json_object *st = rcf_assert_status(0, VOL_STATUS, "50", "False", reason);
    json_object *ready = rec_get_condition(st, REC_COND_READY);
    return rcf_keep(strdup(rcf_str_at(ready, "message")));
}

Test(vol_claim, ready_pools_of_other_classes_are_named_not_called_unready)
{
    vfx_serve("volumes", volume_json("gold"));
    vfx_serve("storagepools",
              rcf_fmt("%s,%s", pool_json("p-silver", "silver"), pool_json("p-bronze", "bronze")));
    const char *msg = pending_message("InsufficientCapacity");
    cr_expect(strstr(msg, "serves StorageClass gold") != NULL, "message: %s", msg);
    cr_expect(strstr(msg, "2 Ready serve other classes") != NULL, "message: %s", msg);
    cr_expect(strstr(msg, "is Ready") == NULL, "message: %s", msg);
}

Test(vol_claim, a_ready_pool_of_the_class_without_its_ledger_yet_is_not_of_another_class)
{
    /* p-gold is Ready for the class but its ledger is not set up yet (no
     * status.allocatedBytes: the pool controller writes it first): the
     * Volume waits, and is not told that only other classes are served. */
    const char *gold = pool_json("p-gold", "gold");
    char *no_ledger = strdup(gold);
    char *at = strstr(no_ledger, "\"allocatedBytes\":0,");
    cr_assert_not_null(at);
    memmove(at, at + strlen("\"allocatedBytes\":0,"),
            strlen(at + strlen("\"allocatedBytes\":0,")) + 1);
    vfx_serve("volumes", volume_json("gold"));
    vfx_serve("storagepools",
              rcf_fmt("%s,%s", rcf_keep(no_ledger), pool_json("p-silver", "silver")));
    const char *msg = pending_message("InsufficientCapacity");
    cr_expect(strstr(msg, "serves StorageClass") == NULL, "message: %s", msg);
}

Test(vol_claim, no_ready_pool_at_all_says_so)
{
    vfx_serve("volumes", volume_json("gold"));
    vfx_serve("storagepools", "");
    const char *msg = pending_message("InsufficientCapacity");
    cr_expect_str_eq(msg, "no StoragePool is Ready");
}

Test(vol_claim, a_classless_pool_serves_the_class)
{
    /* A pool of no class serves every class: the Volume is chosen for it
     * and waits for that pool's admission (vol_admit.c, the pool
     * controller's work, not run here), so the Volume controller writes
     * nothing: no Ready=False status saying there is no pool. */
    vfx_serve("volumes", volume_json("gold"));
    vfx_serve("storagepools",
              rcf_fmt("%s,%s", pool_json("p-silver", "silver"), pool_json("p-any", NULL)));
    vfx_run(VOL_CLAIM_CONTROLLER);
    vfx_wait_reconciles(VOL_CLAIM_CONTROLLER, 1);
    sleep_ms(100);
    cr_expect_eq(rcf_api_count(), 0, "%s", rcf_describe_requests());
}

/* ---- the pool's admission write ------------------------------------------------ */

/* A Ready pool p-any of 10Gi on node-b with a fresh agent report and
 * nothing allocated, and node-b Ready, as LIST items. */
static const char *live_pool_json(void)
{
    char hb[REC_TIME_STRLEN];
    cr_assert_not_null(rec_format_time(time(NULL), hb));
    return rcf_fmt("{\"metadata\":{\"name\":\"p-any\",\"uid\":\"uid-p-any\",\"resourceVersion\":"
                   "\"7\",\"generation\":1,\"finalizers\":[\"" REC_FINALIZER "\"]},"
                   "\"spec\":{\"nodeName\":\"node-b\",\"path\":\"/srv/p-any\",\"capacity\":"
                   "\"10Gi\"},"
                   "\"status\":{\"capacityBytes\":10737418240,\"allocatedBytes\":0,"
                   "\"agent\":{\"heartbeatTime\":\"%s\",\"observedGeneration\":1,"
                   "\"present\":true,\"writable\":true,\"filesystem\":\"ext4\"},"
                   "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":"
                   "\"PathReady\",\"message\":\"ok\",\"lastTransitionTime\":"
                   "\"2026-01-01T00:00:00Z\"}]}}",
                   hb);
}

Test(vol_claim, a_failed_admission_write_stays_an_error)
{
    /* The Volume waits for p-any's admission; the pool's status write that
     * would admit it fails (403): the pool's reconcile is an error (logged,
     * retried with backoff), not a quiet requeue that dropped the error and
     * its message. */
    vfx_serve("volumes", volume_json(NULL));
    vfx_serve("storagepools", live_pool_json());
    vfx_serve("nodes", "{\"metadata\":{\"name\":\"node-b\",\"uid\":\"uid-node-b\","
                       "\"resourceVersion\":\"2\"},\"status\":{\"conditions\":[{\"type\":"
                       "\"Ready\",\"status\":\"True\"}]}}");
    rcf_answer("PUT", "/apis/provisio.dev/v1alpha1/storagepools/p-any/status", 403,
               rcf_status_body(403, "Forbidden"));
    vfx_run(VOL_CLAIM_CONTROLLER);
    vfx_wait_reconciles(VOL_CLAIM_CONTROLLER, 1);
    ctl *pc = vfx_controller(VOL_POOL_CONTROLLER);
    cr_assert(ctl_wait_for_sync(pc, 10));
    cr_assert_eq(ctl_start(pc), KC_OK);
    vfx_wait_reconciles(VOL_POOL_CONTROLLER, 1);
    sleep_ms(100);
    cr_assert_geq(rcf_api_count(), 1, "%s", rcf_describe_requests());
    json_object *b =
        rcf_assert_api(0, "PUT", "/apis/provisio.dev/v1alpha1/storagepools/p-any/status");
    cr_expect_not_null(rec_obj_at(b, "status.inFlight"), "the write admits the Volume: %s",
                       json_object_to_json_string(b));
    ctl_stats st;
    ctl_stats_get(pc, &st);
    cr_expect_geq(st.reconcile_error, 1, "errors %llu, requeue_after %llu",
                  (unsigned long long)st.reconcile_error,
                  (unsigned long long)st.reconcile_requeue_after);
}

/* ---- own writes the cache does not show yet ------------------------------------------ */

Test(vol_claim, a_volume_whose_cache_lags_our_status_write_is_not_written_again)
{
    /* The Volume's status write succeeded (resourceVersion 50 -> 51) but the
     * watch has not brought 51 yet; woken again (by its Reservation, its PV,
     * a timer), the reconcile sees 50, the version its own write replaced,
     * and waits for the event of 51 instead of writing at 50 (a Conflict). */
    vfx_serve("volumes", volume_json(NULL));
    vfx_serve("storagepools", "");
    rcf_answer("PUT", VOL_STATUS, 200,
               "{\"metadata\":{\"name\":\"" VOL "\",\"namespace\":\"" NS "\","
               "\"uid\":\"uid-vol\",\"resourceVersion\":\"51\"}}");
    vfx_run(VOL_CLAIM_CONTROLLER);
    vfx_wait_reconciles(VOL_CLAIM_CONTROLLER, 1);
    sleep_ms(100);
    rcf_assert_api_count(1);
    rcf_assert_status(0, VOL_STATUS, "50", "False", "InsufficientCapacity");
    cr_assert_eq(ctl_enqueue(vfx_controller(VOL_CLAIM_CONTROLLER), NS, VOL), KC_OK);
    vfx_wait_reconciles(VOL_CLAIM_CONTROLLER, 2);
    sleep_ms(100);
    rcf_assert_api_count(1);
}

static size_t pool_status_puts(void)
{
    size_t n = 0;
    for (size_t i = 0; i < rcf_api_count(); i++)
        n += !strcmp(rcf_api_at(i)->method, "PUT") &&
             strstr(rcf_api_at(i)->target, "/storagepools/p-any/status") != NULL;
    return n;
}

Test(vol_claim, a_pool_whose_cache_lags_our_status_write_is_not_written_again)
{
    /* The pool's status write admitting the Volume data succeeded (7 -> 8);
     * the watch never brings 8. A second Volume, data-2, comes a second
     * later, waits for the same pool and wakes it: the pool's reconcile,
     * seeing 7, the version its own write replaced, does not write at 7 (a
     * Conflict) but waits for the event of 8. */
    const char *second = "{\"metadata\":{\"name\":\"data-2\",\"namespace\":\"" NS "\","
                         "\"uid\":\"uid-vol-2\",\"resourceVersion\":\"52\",\"generation\":1,"
                         "\"finalizers\":[\"" REC_FINALIZER "\"]},\"spec\":{\"size\":\"1Gi\"}}";
    vfx_serve_events("volumes", volume_json(NULL),
                     rcf_fmt("{\"type\":\"ADDED\",\"object\":%s}\n", second), 1000);
    vfx_serve("storagepools", live_pool_json());
    vfx_serve("nodes", "{\"metadata\":{\"name\":\"node-b\",\"uid\":\"uid-node-b\","
                       "\"resourceVersion\":\"2\"},\"status\":{\"conditions\":[{\"type\":"
                       "\"Ready\",\"status\":\"True\"}]}}");
    rcf_answer("PUT", "/apis/provisio.dev/v1alpha1/storagepools/p-any/status", 200,
               "{\"metadata\":{\"name\":\"p-any\",\"uid\":\"uid-p-any\",\"resourceVersion\":"
               "\"8\"}}");
    ctl *pc = vfx_controller(VOL_POOL_CONTROLLER);
    vfx_run(VOL_CLAIM_CONTROLLER);
    vfx_wait_reconciles(VOL_CLAIM_CONTROLLER, 1); /* data waits for p-any */
    cr_assert(ctl_wait_for_sync(pc, 10));
    cr_assert_eq(ctl_start(pc), KC_OK);
    vfx_wait_reconciles(VOL_POOL_CONTROLLER, 1);
    sleep_ms(100);
    cr_assert_eq(pool_status_puts(), 1, "%s", rcf_describe_requests());
    sleep_ms(1500); /* data-2 came, waits for p-any, woke it */
    cr_expect_eq(pool_status_puts(), 1, "%s", rcf_describe_requests());
    cr_expect_geq(vfx_reconciles(VOL_POOL_CONTROLLER), 2, "the pool was woken again");
}
