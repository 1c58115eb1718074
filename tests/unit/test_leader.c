/*
 * Unit tests of leader election (src/manager/leader.c, leader_lease.c): the pure rules
 * (expiry by the local clock, renew deadline, next-record transitions,
 * MicroTime text, Lease JSON) and the loop against the replay server with
 * short durations (lease 1 s, renew deadline 0.6 s, retry 0.2 s).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "replay_server.h"
#include "pv_clock.h"

#define LEASE 1.0
#define RENEW 0.6
#define RETRY 0.2
#define ID "me_0000"
#define LEASES_PATH "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
#define LEASE_PATH LEASES_PATH "/lock"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    return s;
}

static int64_t parse_time(const char *s)
{
    int64_t us = 0;
    cr_assert_eq(le_parse_micro_time(s, &us), KC_OK, "not a time: %s", s);
    return us;
}

/* ---- MicroTime ------------------------------------------------------------ */

Test(le_micro_time, formats_utc_with_six_fraction_digits)
{
    char buf[LE_MICROTIME_BUFSZ];
    cr_assert_eq(le_format_micro_time(1795462843123456LL, buf), KC_OK);
    cr_assert_str_eq(buf, "2026-11-23T19:40:43.123456Z");
    cr_assert_eq(le_format_micro_time(0, buf), KC_OK);
    cr_assert_str_eq(buf, "1970-01-01T00:00:00.000000Z");
    cr_assert_eq(le_format_micro_time(-500000, buf), KC_OK);
    cr_assert_str_eq(buf, "1969-12-31T23:59:59.500000Z");
    cr_assert_eq(le_format_micro_time(1709251199999999LL, buf), KC_OK);
    cr_assert_str_eq(buf, "2024-02-29T23:59:59.999999Z");
    cr_assert_eq(le_format_micro_time(253402300799999999LL, buf), KC_OK);
    cr_assert_str_eq(buf, "9999-12-31T23:59:59.999999Z");
    cr_assert_eq(le_format_micro_time(253402300800000000LL, buf), KC_ERR_INVALID_ARG);
    cr_assert_eq(le_format_micro_time(-62135596800000001LL, buf), KC_ERR_INVALID_ARG);
}

Test(le_micro_time, parses_fractions_offsets_and_round_trips)
{
    cr_assert_eq(parse_time("2026-11-23T19:40:43.123456Z"), 1795462843123456LL);
    cr_assert_eq(parse_time("2026-11-23T19:40:43Z"), 1795462843000000LL);
    cr_assert_eq(parse_time("2026-11-23T19:40:43.1Z"), 1795462843100000LL);
    /* Nanoseconds are truncated to microseconds. */
    cr_assert_eq(parse_time("2026-11-23T19:40:43.123456789Z"), 1795462843123456LL);
    /* An offset is the same instant as its UTC form. */
    cr_assert_eq(parse_time("2026-11-23T21:40:43.123456+02:00"), 1795462843123456LL);
    cr_assert_eq(parse_time("2026-11-23T14:10:43.123456-05:30"), 1795462843123456LL);
    cr_assert_eq(parse_time("2024-02-29T23:59:59.999999Z"), 1709251199999999LL);
    cr_assert_eq(parse_time("1969-12-31T23:59:59.5Z"), -500000);
    cr_assert_eq(parse_time("0001-01-01T00:00:00Z"), -62135596800000000LL);

    /* format(parse(x)) == x over a spread of instants. */
    char buf[LE_MICROTIME_BUFSZ];
    for (int64_t us = -86400000000LL * 800; us < 86400000000LL * 40000;
         us += 86400000000LL * 97 + 3600000000LL * 5 + 61000001) {
        cr_assert_eq(le_format_micro_time(us, buf), KC_OK);
        cr_assert_eq(parse_time(buf), us, "%s", buf);
    }
}

Test(le_micro_time, rejects_what_is_not_rfc3339)
{
    const char *bad[] = {
        "",
        "2026-11-23",
        "2026-11-23T19:40:43",   /* no zone */
        "2026-11-23 19:40:43Z",  /* space, not T */
        "2026-13-01T00:00:00Z",  /* month 13 */
        "2026-02-29T00:00:00Z",  /* not a leap year */
        "2026-04-31T00:00:00Z",  /* April has 30 days */
        "2026-11-23T24:00:00Z",  /* hour 24 */
        "2026-11-23T19:60:00Z",  /* minute 60 */
        "2026-11-23T19:40:60Z",  /* second 60 */
        "2026-11-23T19:40:43.Z", /* empty fraction */
        "2026-11-23T19:40:43.123456Zjunk",
        "2026-11-23T19:40:43+0200", /* offset without colon */
        "2026-1-23T19:40:43Z",      /* one-digit month */
        "+2026-11-23T19:40:43Z",
    };
    int64_t us = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(le_parse_micro_time(bad[i], &us), KC_ERR_INVALID_ARG, "accepted %s", bad[i]);
    cr_assert_eq(us, 42, "a rejected time must not change the output");
}

/* ---- expiry, observation, deadline ---------------------------------------------- */

static le_record rec(const char *holder, long duration, int64_t renew_us, long transitions)
{
    le_record r = {.holder_identity = holder ? strdup(holder) : NULL,
                   .lease_duration_seconds = duration,
                   .acquire_time_us = renew_us,
                   .renew_time_us = renew_us,
                   .lease_transitions = transitions};
    return r;
}

Test(le_expiry, decided_by_local_observation_time_only)
{
    /* Observed at local t=100 s with a 15 s lease: expired from t=115 s on. */
    int64_t far_future = parse_time("2999-01-01T00:00:00Z");
    int64_t far_past = parse_time("2001-01-01T00:00:00Z");
    int64_t now_wall = (int64_t)time(NULL) * 1000000;
    int64_t renews[] = {far_future, far_past, now_wall, 0};
    for (size_t i = 0; i < 4; i++) {
        le_record r = rec("other", 15, renews[i], 0);
        cr_assert_not(le_lease_expired(&r, 100.0, 100.0));
        cr_assert_not(le_lease_expired(&r, 100.0, 114.999));
        cr_assert(le_lease_expired(&r, 100.0, 115.0));
        cr_assert(le_lease_expired(&r, 100.0, 1e6));
        le_record_clear(&r);
    }
    /* The record's own duration counts, not ours. */
    le_record shorter = rec("other", 2, far_future, 0);
    cr_assert(le_lease_expired(&shorter, 100.0, 102.0));
    le_record_clear(&shorter);
}

Test(le_expiry, a_changed_record_resets_the_observation_an_unchanged_one_ages)
{
    le_observed o = {0};
    le_record a = rec("other", 15, parse_time("2999-01-01T00:00:00Z"), 3);
    cr_assert_eq(le_observe(&o, &a, 10.0), 1);
    cr_assert_float_eq(o.time, 10.0, 1e-9);
    /* Read again, same record: the observation keeps its first time and ages. */
    le_record a2 = rec("other", 15, parse_time("2999-01-01T00:00:00Z"), 3);
    cr_assert_eq(le_observe(&o, &a2, 20.0), 0);
    cr_assert_float_eq(o.time, 10.0, 1e-9);
    cr_assert(le_can_acquire(&o, ID, 25.0), "unchanged for 15 s: expired");

    /* Any change of the tuple restarts the clock: renewTime... */
    le_record b = rec("other", 15, parse_time("2999-01-01T00:00:01Z"), 3);
    cr_assert_eq(le_observe(&o, &b, 24.0), 1);
    cr_assert_float_eq(o.time, 24.0, 1e-9);
    cr_assert_not(le_can_acquire(&o, ID, 25.0));
    cr_assert_not(le_can_acquire(&o, ID, 38.9));
    cr_assert(le_can_acquire(&o, ID, 39.0));
    /* ...transitions, holder, duration. */
    le_record c = rec("other", 15, parse_time("2999-01-01T00:00:01Z"), 4);
    cr_assert_eq(le_observe(&o, &c, 30.0), 1);
    le_record d = rec("third", 15, parse_time("2999-01-01T00:00:01Z"), 4);
    cr_assert_eq(le_observe(&o, &d, 31.0), 1);
    le_record e = rec("third", 16, parse_time("2999-01-01T00:00:01Z"), 4);
    cr_assert_eq(le_observe(&o, &e, 32.0), 1);
    cr_assert_float_eq(o.time, 32.0, 1e-9);
    cr_assert_str_eq(o.record.holder_identity, "third");

    le_record_clear(&a);
    le_record_clear(&a2);
    le_record_clear(&b);
    le_record_clear(&c);
    le_record_clear(&d);
    le_record_clear(&e);
    le_observed_clear(&o);
}

Test(le_expiry, free_own_and_unobserved_leases_can_be_taken_at_once)
{
    le_observed o = {0};
    cr_assert(le_can_acquire(&o, ID, 0.0), "nothing observed yet");
    le_record freed = rec("", 1, parse_time("2999-01-01T00:00:00Z"), 7);
    le_observe(&o, &freed, 5.0);
    cr_assert(le_can_acquire(&o, ID, 5.0), "a released lease (empty holder) is free");
    le_record nul = rec(NULL, 15, 0, 7);
    le_observe(&o, &nul, 6.0);
    cr_assert(le_can_acquire(&o, ID, 6.0));
    le_record own = rec(ID, 15, 0, 7);
    le_observe(&o, &own, 7.0);
    cr_assert(le_can_acquire(&o, ID, 7.0), "our own lease is renewed, not waited for");
    cr_assert_not(le_can_acquire(&o, "someone-else", 7.0));
    le_record_clear(&freed);
    le_record_clear(&nul);
    le_record_clear(&own);
    le_observed_clear(&o);
}

Test(le_expiry, renew_deadline_counts_from_the_last_successful_renewal)
{
    cr_assert_not(le_renew_deadline_passed(50.0, 50.0, 10.0));
    cr_assert_not(le_renew_deadline_passed(50.0, 59.999, 10.0));
    cr_assert(le_renew_deadline_passed(50.0, 60.0, 10.0));
    cr_assert(le_renew_deadline_passed(50.0, 75.0, 10.0));
    cr_assert_not(le_renew_deadline_passed(60.0, 69.0, 10.0), "a later renewal moves it");
}

/* ---- record transitions ------------------------------------------------------------ */

Test(le_transitions, creating_the_lease_starts_at_zero_transitions)
{
    le_record out;
    cr_assert_eq(le_next_record(NULL, ID, 15, 1000, &out), KC_OK);
    cr_assert_str_eq(out.holder_identity, ID);
    cr_assert_eq(out.lease_duration_seconds, 15);
    cr_assert_eq(out.acquire_time_us, 1000);
    cr_assert_eq(out.renew_time_us, 1000);
    cr_assert_eq(out.lease_transitions, 0);
    le_record_clear(&out);
}

Test(le_transitions, renewing_keeps_acquire_time_and_transitions)
{
    le_record cur = rec(ID, 15, 500, 4);
    cur.acquire_time_us = 100;
    le_record out;
    cr_assert_eq(le_next_record(&cur, ID, 15, 2000, &out), KC_OK);
    cr_assert_str_eq(out.holder_identity, ID);
    cr_assert_eq(out.acquire_time_us, 100);
    cr_assert_eq(out.renew_time_us, 2000);
    cr_assert_eq(out.lease_transitions, 4, "same holder: no transition");
    le_record_clear(&out);
    le_record_clear(&cur);
}

Test(le_transitions, taking_over_counts_a_transition_and_restarts_the_tenure)
{
    int64_t now = 3000;
    le_record other = rec("other", 30, 500, 4);
    le_record out;
    cr_assert_eq(le_next_record(&other, ID, 15, now, &out), KC_OK);
    cr_assert_str_eq(out.holder_identity, ID);
    cr_assert_eq(out.lease_transitions, 5);
    cr_assert_eq(out.acquire_time_us, now);
    cr_assert_eq(out.renew_time_us, now);
    cr_assert_eq(out.lease_duration_seconds, 15, "our duration, not the previous holder's");
    le_record_clear(&out);

    /* From a released lease (holder cleared) the holder changes too. */
    le_record released = rec("", 1, 500, 5);
    cr_assert_eq(le_next_record(&released, ID, 15, now, &out), KC_OK);
    cr_assert_eq(out.lease_transitions, 6);
    le_record_clear(&out);
    le_record_clear(&released);
    le_record_clear(&other);
}

Test(le_transitions, release_clears_the_holder_and_sets_duration_one)
{
    le_record cur = rec(ID, 15, 500, 9);
    cur.acquire_time_us = 100;
    le_record out;
    cr_assert_eq(le_release_record(&cur, 7000, &out), KC_OK);
    cr_assert_not(le_record_held(&out));
    cr_assert_eq(out.lease_duration_seconds, 1);
    cr_assert_eq(out.acquire_time_us, 7000);
    cr_assert_eq(out.renew_time_us, 7000);
    cr_assert_eq(out.lease_transitions, 9);

    json_object *spec = le_record_to_spec(&out);
    cr_assert_not_null(spec);
    cr_assert_str_eq(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN),
                     "{\"holderIdentity\":\"\",\"leaseDurationSeconds\":1,"
                     "\"acquireTime\":\"1970-01-01T00:00:00.007000Z\","
                     "\"renewTime\":\"1970-01-01T00:00:00.007000Z\",\"leaseTransitions\":9}");
    json_object_put(spec);
    le_record_clear(&out);
    le_record_clear(&cur);
}

Test(le_transitions, lease_json_is_read_like_client_go)
{
    json_object *l = json_tokener_parse(
        "{\"kind\":\"Lease\",\"metadata\":{\"name\":\"lock\",\"resourceVersion\":\"5\"},"
        "\"spec\":{\"holderIdentity\":\"other\",\"leaseDurationSeconds\":15,"
        "\"acquireTime\":\"2026-11-23T19:40:43.123456Z\","
        "\"renewTime\":\"2026-11-23T19:40:53.000001Z\",\"leaseTransitions\":2}}");
    le_record r;
    cr_assert_eq(le_record_from_lease(l, &r), KC_OK);
    cr_assert_str_eq(r.holder_identity, "other");
    cr_assert_eq(r.lease_duration_seconds, 15);
    cr_assert_eq(r.acquire_time_us, 1795462843123456LL);
    cr_assert_eq(r.renew_time_us, 1795462853000001LL);
    cr_assert_eq(r.lease_transitions, 2);
    /* Written back, the same record is read again. */
    json_object *spec = le_record_to_spec(&r);
    json_object *l2 = json_object_new_object();
    json_object_object_add(l2, "spec", spec);
    le_record r2;
    cr_assert_eq(le_record_from_lease(l2, &r2), KC_OK);
    cr_assert(le_record_equal(&r, &r2));
    le_record_clear(&r);
    le_record_clear(&r2);
    json_object_put(l);
    json_object_put(l2);

    /* No spec, or null fields: an empty record anyone may take. */
    l = json_tokener_parse("{\"kind\":\"Lease\",\"spec\":{\"holderIdentity\":null}}");
    cr_assert_eq(le_record_from_lease(l, &r), KC_OK);
    cr_assert_not(le_record_held(&r));
    cr_assert_eq(r.lease_duration_seconds, 0);
    le_record_clear(&r);
    json_object_put(l);

    /* A time that does not parse is a decode error, not a zero time. */
    l = json_tokener_parse("{\"spec\":{\"holderIdentity\":\"x\",\"renewTime\":\"yesterday\"}}");
    cr_assert_eq(le_record_from_lease(l, &r), KC_ERR_DECODE);
    le_record_clear(&r);
    json_object_put(l);
    l = json_tokener_parse("{\"spec\":{\"leaseDurationSeconds\":\"15\"}}");
    cr_assert_eq(le_record_from_lease(l, &r), KC_ERR_DECODE);
    le_record_clear(&r);
    json_object_put(l);
}

/* ---- configuration -------------------------------------------------------------------- */

Test(le_config, new_rejects_durations_client_go_rejects)
{
    le_config c;
    le_config_init(&c);
    cr_assert_float_eq(c.lease_duration, 15.0, 1e-9);
    cr_assert_float_eq(c.renew_deadline, 10.0, 1e-9);
    cr_assert_float_eq(c.retry_period, 2.0, 1e-9);
    cr_assert(c.release_on_cancel);
    cr_assert_not(c.rejoin_on_loss);
    c.namespace_ = "ns";
    c.name = "lock";
    c.client = (kc_client *)&c; /* never used: le_new does no I/O */
    le_elector *e = NULL;
    kc_error err = KC_ERROR_INIT;

    le_config bad = c;
    bad.renew_deadline = 15.0; /* not below the lease duration */
    cr_assert_eq(le_new(&bad, &e, &err), KC_ERR_INVALID_ARG);
    cr_assert_null(e);
    bad = c;
    bad.renew_deadline = 2.4; /* not above 1.2 x retry */
    cr_assert_eq(le_new(&bad, &e, &err), KC_ERR_INVALID_ARG);
    bad = c;
    bad.retry_period = 0;
    cr_assert_eq(le_new(&bad, &e, &err), KC_ERR_INVALID_ARG);
    bad = c;
    bad.name = "";
    cr_assert_eq(le_new(&bad, &e, &err), KC_ERR_INVALID_ARG);
    cr_assert_not_null(err.message);

    cr_assert_eq(le_new(&c, &e, &err), KC_OK);
    /* Identity: <hostname>_<uuid v4>. */
    const char *id = le_identity(e);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    size_t hl = strlen(host);
    cr_assert_eq(strncmp(id, host, hl), 0, "%s", id);
    cr_assert_eq(id[hl], '_');
    const char *u = id + hl + 1;
    cr_assert_eq(strlen(u), 36, "%s", u);
    cr_assert(u[8] == '-' && u[13] == '-' && u[18] == '-' && u[23] == '-');
    cr_assert_eq(u[14], '4');
    cr_assert_not(le_is_leader(e));
    le_free(e);

    char *a = NULL, *b = NULL;
    cr_assert_eq(le_default_identity(&a), KC_OK);
    cr_assert_eq(le_default_identity(&b), KC_OK);
    cr_assert_str_neq(a, b, "two processes on one host get different identities");
    free(a);
    free(b);
    kc_error_clear(&err);

    kc_client_opts co = {0};
    c.renew_deadline = 10;
    c.retry_period = 2;
    le_client_opts(&c, &co);
    cr_assert_eq(co.request_timeout_ms, 8000);
    cr_assert_lt(co.max_retries, 0);
}

/* ---- the loop against the replay server ------------------------------------------------ */

static rs_server *srv;
static kc_config *cfg;
static kc_client *cli;
static met_registry *reg;
static met_cr mcr;

/* What the callbacks saw. */
static struct {
    pthread_mutex_t mu;
    int started, stopped;
    double t_started, t_stopped;
    size_t requests_at_stop;
    char *leaders[16];
    int nleaders;
    bool stop_on_start;
    bool leader_in_stop; /* le_is_leader was still true inside on_stopped_leading */
    le_elector *e;
} cb;

static void on_started(void *user)
{
    (void)user;
    pthread_mutex_lock(&cb.mu);
    cb.started++;
    cb.t_started = pv_clock_monotonic();
    pthread_mutex_unlock(&cb.mu);
    if (cb.stop_on_start)
        le_stop(cb.e);
}

static void on_stopped(void *user)
{
    (void)user;
    pthread_mutex_lock(&cb.mu);
    if (le_is_leader(cb.e))
        cb.leader_in_stop = true;
    cb.stopped++;
    cb.t_stopped = pv_clock_monotonic();
    cb.requests_at_stop = rs_request_count(srv);
    pthread_mutex_unlock(&cb.mu);
}

static void on_new_leader(const char *id, void *user)
{
    (void)user;
    pthread_mutex_lock(&cb.mu);
    if (cb.nleaders < 16)
        cb.leaders[cb.nleaders++] = strdup(id);
    pthread_mutex_unlock(&cb.mu);
}

static int cb_get(int *field)
{
    pthread_mutex_lock(&cb.mu);
    int v = *field;
    pthread_mutex_unlock(&cb.mu);
    return v;
}

static bool wait_count(int *field, int n, double timeout)
{
    double end = pv_clock_monotonic() + timeout;
    while (cb_get(field) < n) {
        if (pv_clock_monotonic() > end)
            return false;
        sleep_ms(5);
    }
    return true;
}

static kc_client *make_client(long timeout_ms)
{
    le_config c;
    le_config_init(&c);
    c.lease_duration = LEASE;
    c.renew_deadline = RENEW;
    c.retry_period = RETRY;
    kc_client_opts co = {0};
    le_client_opts(&c, &co);
    if (timeout_ms > 0)
        co.request_timeout_ms = co.connect_timeout_ms = timeout_ms;
    kc_client *k = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_client_new(cfg, &co, &k, &err), KC_OK, "kc_client_new: %s", err.message);
    kc_error_clear(&err);
    return k;
}

static void setup(void)
{
    log_set_level(PLOG_OFF);
    pthread_mutex_init(&cb.mu, NULL);
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    rs_kubeconfig_opts ko = {.user_yaml = "    token: abc123\n"};
    char *yaml = rs_kubeconfig(srv, &ko);
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err), KC_OK, "%s",
                 err.message);
    free(yaml);
    cli = make_client(0);
    reg = met_registry_new();
    cr_assert_not_null(reg);
    cr_assert_eq(met_cr_register(reg, &mcr), 0);
}

static void teardown(void)
{
    for (int i = 0; i < cb.nleaders; i++)
        free(cb.leaders[i]);
    kc_client_free(cli);
    kc_config_free(cfg);
    rs_stop(srv);
    met_registry_free(reg);
}

TestSuite(le_loop, .init = setup, .fini = teardown, .timeout = 30);

static le_config loop_config(kc_client *client)
{
    le_config c;
    le_config_init(&c);
    c.namespace_ = "ns";
    c.name = "lock";
    c.identity = ID;
    c.lease_duration = LEASE;
    c.renew_deadline = RENEW;
    c.retry_period = RETRY;
    c.client = client;
    c.master_status = mcr.leader_election_master_status;
    c.on_started_leading = on_started;
    c.on_stopped_leading = on_stopped;
    c.on_new_leader = on_new_leader;
    return c;
}

typedef struct runner {
    pthread_t t;
    le_elector *e;
    int result;
    bool done;
} runner;

static void *run_main(void *arg)
{
    runner *r = arg;
    r->result = le_run(r->e);
    __atomic_store_n(&r->done, true, __ATOMIC_SEQ_CST);
    return NULL;
}

static runner *start(const le_config *c)
{
    runner *r = calloc(1, sizeof(*r));
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(le_new(c, &r->e, &err), KC_OK, "%s", err.message);
    cb.e = r->e;
    cr_assert_eq(pthread_create(&r->t, NULL, run_main, r), 0);
    return r;
}

static bool wait_done(runner *r, double timeout)
{
    double end = pv_clock_monotonic() + timeout;
    while (!__atomic_load_n(&r->done, __ATOMIC_SEQ_CST)) {
        if (pv_clock_monotonic() > end)
            return false;
        sleep_ms(5);
    }
    return true;
}

static int finish(runner *r)
{
    le_stop(r->e);
    pthread_join(r->t, NULL);
    int res = r->result;
    cb.e = NULL;
    cr_assert_not(cb.leader_in_stop, "le_is_leader is false when on_stopped_leading runs");
    le_free(r->e);
    free(r);
    return res;
}

static double gauge(void)
{
    return met_gauge_value(met_gauge_get(mcr.leader_election_master_status, MET_L("lock")));
}

/* A Lease as the server would answer. renew NULL = "2026-01-01T00:00:00.000000Z". */
static char *lease_json(const char *holder, const char *rv, const char *renew, int transitions)
{
    const char *t = renew ? renew : "2026-01-01T00:00:00.000000Z";
    return fmt("{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{"
               "\"name\":\"lock\",\"namespace\":\"ns\",\"resourceVersion\":\"%s\"},\"spec\":{"
               "\"holderIdentity\":\"%s\",\"leaseDurationSeconds\":1,"
               "\"acquireTime\":\"2026-01-01T00:00:00.000000Z\",\"renewTime\":\"%s\","
               "\"leaseTransitions\":%d}}",
               rv, holder, t, transitions);
}

static void push(const char *method, const char *path, int status, const char *body, int times,
                 int delay_ms)
{
    rs_response r = {.method = method,
                     .path_prefix = path,
                     .status = status,
                     .body = body,
                     .times = times,
                     .delay_ms = delay_ms};
    rs_push(srv, &r);
}

static void push_lease(const char *method, int status, const char *holder, const char *rv,
                       const char *renew, int transitions, int times)
{
    char *b = lease_json(holder, rv, renew, transitions);
    push(method, !strcmp(method, "POST") ? LEASES_PATH : LEASE_PATH, status, b, times, 0);
    free(b);
}

#define STATUS_404                                                                                 \
    "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\",\"code\":404}"
#define STATUS_409                                                                                 \
    "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Conflict\",\"code\":409,"            \
    "\"message\":\"the object has been modified\"}"
#define STATUS_500 "{\"kind\":\"Status\",\"status\":\"Failure\",\"code\":500}"

/* Requests with this method, in order; *n set to how many. */
static size_t count_method(const char *method)
{
    size_t n = 0, total = rs_request_count(srv);
    for (size_t i = 0; i < total; i++)
        if (!strcmp(rs_request_at(srv, i)->method, method))
            n++;
    return n;
}

static const rs_request *nth_method(const char *method, size_t k)
{
    size_t total = rs_request_count(srv);
    for (size_t i = 0; i < total; i++) {
        const rs_request *r = rs_request_at(srv, i);
        if (!strcmp(r->method, method) && k-- == 0)
            return r;
    }
    return NULL;
}

static const char *jstr(json_object *o, const char *a, const char *b)
{
    json_object *x = NULL, *y = NULL;
    if (!json_object_object_get_ex(o, a, &x) || !json_object_object_get_ex(x, b, &y))
        return NULL;
    return json_object_get_string(y);
}

static long jint(json_object *o, const char *a, const char *b)
{
    json_object *x = NULL, *y = NULL;
    cr_assert(json_object_object_get_ex(o, a, &x) && json_object_object_get_ex(x, b, &y),
              "no %s.%s", a, b);
    cr_assert(json_object_is_type(y, json_type_int), "%s.%s is not an integer", a, b);
    return (long)json_object_get_int64(y);
}

/* A MicroTime as client-go writes it, near the current wall time. */
static void assert_fresh_micro_time(const char *s)
{
    cr_assert_not_null(s);
    cr_assert_eq(strlen(s), 27, "%s", s);
    cr_assert(s[4] == '-' && s[10] == 'T' && s[19] == '.' && s[26] == 'Z', "%s", s);
    int64_t us = parse_time(s);
    int64_t wall = (int64_t)time(NULL) * 1000000;
    cr_assert(us > wall - 60000000LL && us < wall + 60000000LL, "%s is not now", s);
}

static json_object *body_of(const rs_request *r)
{
    cr_assert_not_null(r);
    json_object *o = json_tokener_parse(r->body);
    cr_assert_not_null(o, "body is not JSON: %s", r->body);
    return o;
}

Test(le_loop, acquires_by_creating_the_lease_when_none_exists)
{
    push("GET", LEASE_PATH, 404, STATUS_404, 1, 0);
    push_lease("POST", 201, ID, "1", NULL, 0, 1);
    push_lease("GET", 200, ID, "1", NULL, 0, -1);
    push_lease("PUT", 200, ID, "2", NULL, 0, -1);
    le_config c = loop_config(cli);
    c.release_on_cancel = false;
    runner *r = start(&c);
    cr_assert(wait_count(&cb.started, 1, 5.0), "never started leading");
    cr_assert(le_is_leader(r->e));
    cr_assert_float_eq(gauge(), 1.0, 1e-9);

    const rs_request *get = rs_request_at(srv, 0);
    cr_assert_str_eq(get->method, "GET");
    cr_assert_str_eq(get->target, LEASE_PATH);
    const rs_request *post = rs_request_at(srv, 1);
    cr_assert_str_eq(post->method, "POST");
    cr_assert_str_eq(post->target, LEASES_PATH);
    json_object *b = body_of(post);
    cr_assert_str_eq(jstr(b, "metadata", "name"), "lock");
    cr_assert_str_eq(jstr(b, "metadata", "namespace"), "ns");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(b, "kind")), "Lease");
    cr_assert_str_eq(jstr(b, "spec", "holderIdentity"), ID);
    cr_assert_eq(jint(b, "spec", "leaseDurationSeconds"), 1);
    cr_assert_eq(jint(b, "spec", "leaseTransitions"), 0);
    assert_fresh_micro_time(jstr(b, "spec", "renewTime"));
    cr_assert_str_eq(jstr(b, "spec", "acquireTime"), jstr(b, "spec", "renewTime"));
    json_object_put(b);

    char *leader = NULL;
    cr_assert_eq(le_get_leader(r->e, &leader), KC_OK);
    cr_assert_str_eq(leader, ID);
    free(leader);
    cr_assert_eq(cb.nleaders, 1);
    cr_assert_str_eq(cb.leaders[0], ID);

    cr_assert_eq(finish(r), LE_STOPPED);
    cr_assert_eq(cb_get(&cb.stopped), 1);
    cr_assert_float_eq(gauge(), 0.0, 1e-9);
}

Test(le_loop, renews_with_put_at_the_observed_resource_version)
{
    push_lease("GET", 200, ID, "7", NULL, 3, -1);
    push_lease("PUT", 200, ID, "8", NULL, 3, -1);
    le_config c = loop_config(cli);
    c.release_on_cancel = false;
    runner *r = start(&c);
    cr_assert(wait_count(&cb.started, 1, 5.0));
    double end = pv_clock_monotonic() + 5.0;
    while (count_method("PUT") < 3 && pv_clock_monotonic() < end)
        sleep_ms(10);
    cr_assert_eq(finish(r), LE_STOPPED);
    cr_assert_geq(count_method("PUT"), 3);
    cr_assert_eq(count_method("POST"), 0);

    int64_t prev = 0;
    for (size_t k = 0; k < 3; k++) {
        const rs_request *put = nth_method("PUT", k);
        cr_assert_str_eq(put->target, LEASE_PATH);
        json_object *b = body_of(put);
        cr_assert_str_eq(jstr(b, "metadata", "resourceVersion"), "7");
        cr_assert_str_eq(jstr(b, "spec", "holderIdentity"), ID);
        cr_assert_eq(jint(b, "spec", "leaseDurationSeconds"), 1);
        cr_assert_eq(jint(b, "spec", "leaseTransitions"), 3, "renewal is not a transition");
        cr_assert_str_eq(jstr(b, "spec", "acquireTime"), "2026-01-01T00:00:00.000000Z");
        const char *renew = jstr(b, "spec", "renewTime");
        assert_fresh_micro_time(renew);
        int64_t us = parse_time(renew);
        cr_assert_gt(us, prev, "renewTime moves forward");
        prev = us;
        json_object_put(b);
    }
    cr_assert_eq(cb_get(&cb.stopped), 1);
}

/* A lease of "other" that never changes: taken over only after LEASE s of local time. */
static void takeover_after_lease_duration(const char *renew_time)
{
    push_lease("GET", 200, "other", "5", renew_time, 2, -1);
    push_lease("PUT", 200, ID, "6", NULL, 3, -1);
    le_config c = loop_config(cli);
    c.release_on_cancel = false;
    cb.stop_on_start = true;
    double t0 = pv_clock_monotonic();
    runner *r = start(&c);
    cr_assert(wait_count(&cb.started, 1, 6.0), "never took over the stale lease");
    double waited = cb.t_started - t0;
    cr_assert_geq(waited, LEASE, "took over after %.3f s, before the lease duration", waited);
    cr_assert_lt(waited, LEASE + 2.0, "took over only after %.3f s", waited);
    cr_assert_geq(count_method("GET"), 3, "a candidate retries every retry period");
    cr_assert_eq(finish(r), LE_STOPPED);

    cr_assert_eq(count_method("PUT"), 1);
    json_object *b = body_of(nth_method("PUT", 0));
    cr_assert_str_eq(jstr(b, "metadata", "resourceVersion"), "5");
    cr_assert_str_eq(jstr(b, "spec", "holderIdentity"), ID);
    cr_assert_eq(jint(b, "spec", "leaseTransitions"), 3);
    cr_assert_str_eq(jstr(b, "spec", "acquireTime"), jstr(b, "spec", "renewTime"));
    assert_fresh_micro_time(jstr(b, "spec", "acquireTime"));
    json_object_put(b);
    cr_assert_eq(cb.nleaders, 2);
    cr_assert_str_eq(cb.leaders[0], "other");
    cr_assert_str_eq(cb.leaders[1], ID);
}

Test(le_loop, takes_over_a_lease_renewed_in_the_far_future_by_local_clock)
{
    takeover_after_lease_duration("2999-01-01T00:00:00.000000Z");
}

Test(le_loop, waits_the_lease_duration_even_when_renew_time_is_long_past)
{
    takeover_after_lease_duration("2001-01-01T00:00:00.000000Z");
}

Test(le_loop, does_not_take_over_a_lease_that_keeps_changing)
{
    /* Every read shows a new renewTime: the holder is alive. */
    for (int i = 0; i < 40; i++) {
        char t[64], rv[16];
        snprintf(t, sizeof(t), "2001-01-01T00:00:%02d.000000Z", i % 60);
        snprintf(rv, sizeof(rv), "%d", 100 + i);
        push_lease("GET", 200, "other", rv, t, 2, 1);
    }
    le_config c = loop_config(cli);
    runner *r = start(&c);
    sleep_ms((int)(LEASE * 2500));
    cr_assert_eq(count_method("PUT"), 0, "took a lease whose holder keeps renewing");
    cr_assert_eq(count_method("POST"), 0);
    cr_assert_geq(count_method("GET"), 5);
    cr_assert_eq(cb_get(&cb.started), 0);
    cr_assert_not(le_is_leader(r->e));
    cr_assert_eq(finish(r), LE_STOPPED);
    cr_assert_eq(cb_get(&cb.stopped), 0, "never led: no on_stopped_leading");
    cr_assert_eq(count_method("PUT"), 0, "nothing to release");
    cr_assert_eq(cb.nleaders, 1, "the holder did not change");
    cr_assert_str_eq(cb.leaders[0], "other");
}

Test(le_loop, steps_down_when_a_conflict_reveals_another_holder)
{
    push("GET", LEASE_PATH, 404, STATUS_404, 1, 0);
    push_lease("POST", 201, ID, "1", NULL, 0, 1);
    push_lease("GET", 200, ID, "1", NULL, 0, 1);
    push("PUT", LEASE_PATH, 409, STATUS_409, 1, 0);
    push_lease("GET", 200, "other", "9", NULL, 1, -1);
    le_config c = loop_config(cli);
    c.lease_duration = 3.0; /* a deadline far away: the step-down is not a deadline loss */
    c.renew_deadline = 2.0;
    runner *r = start(&c);
    cr_assert(wait_count(&cb.started, 1, 5.0));
    cr_assert(wait_done(r, 5.0), "le_run did not return after losing the lease");
    cr_assert_eq(cb_get(&cb.stopped), 1);
    cr_assert_not(le_is_leader(r->e));
    cr_assert_float_eq(gauge(), 0.0, 1e-9);
    cr_assert_lt(cb.t_stopped - cb.t_started, 1.5, "stepped down at once, not at the deadline");
    cr_assert_eq(finish(r), LE_LOST);
    cr_assert_eq(count_method("PUT"), 1, "no release of a lease someone else holds");
    cr_assert_eq(cb.nleaders, 2);
    cr_assert_str_eq(cb.leaders[1], "other");
}

Test(le_loop, loses_the_lease_when_renewals_fail_past_the_renew_deadline)
{
    push("GET", LEASE_PATH, 404, STATUS_404, 1, 0);
    push_lease("POST", 201, ID, "1", NULL, 0, 1);
    push("GET", LEASE_PATH, 500, STATUS_500, -1, 0);
    le_config c = loop_config(cli);
    c.release_on_cancel = false;
    runner *r = start(&c);
    cr_assert(wait_count(&cb.started, 1, 5.0));
    cr_assert(wait_count(&cb.stopped, 1, 5.0), "never stepped down");
    double held = cb.t_stopped - cb.t_started;
    cr_assert_leq(held, RENEW + 0.4, "stepped down %.3f s after acquiring", held);
    cr_assert_geq(held, RENEW - 0.3, "stepped down %.3f s after acquiring", held);
    cr_assert_geq(count_method("GET"), 3, "renewals are retried until the deadline");
    cr_assert(wait_done(r, 5.0));
    cr_assert_eq(finish(r), LE_LOST);
    cr_assert_eq(cb_get(&cb.stopped), 1);
}

Test(le_loop, stops_leading_at_the_deadline_while_a_renewal_hangs)
{
    kc_client *slow = make_client(5000);
    push("GET", LEASE_PATH, 404, STATUS_404, 1, 0);
    push_lease("POST", 201, ID, "1", NULL, 0, 1);
    char *ours = lease_json(ID, "1", NULL, 0);
    push("GET", LEASE_PATH, 200, ours, 1, 2500); /* the API server hangs */
    push("GET", LEASE_PATH, 200, ours, -1, 0);
    free(ours);
    push_lease("PUT", 200, ID, "2", NULL, 0, -1);
    le_config c = loop_config(slow);
    c.release_on_cancel = false;
    runner *r = start(&c);
    cr_assert(wait_count(&cb.started, 1, 5.0));
    cr_assert(wait_count(&cb.stopped, 1, 5.0));
    double held = cb.t_stopped - cb.t_started;
    cr_assert_leq(held, RENEW + 0.4, "stepped down %.3f s after acquiring", held);
    cr_assert_not(__atomic_load_n(&r->done, __ATOMIC_SEQ_CST),
                  "the hanging request is still in flight");
    cr_assert_not(le_is_leader(r->e));
    cr_assert(wait_done(r, 6.0));
    cr_assert_eq(finish(r), LE_LOST);
    cr_assert_eq(cb_get(&cb.stopped), 1, "on_stopped_leading once, not again at the return");
    cr_assert_eq(count_method("PUT"), 0, "a late answer does not make us leader again");
    kc_client_free(slow);
}

Test(le_loop, releases_the_lease_on_stop_after_stopping_work)
{
    push("GET", LEASE_PATH, 404, STATUS_404, 1, 0);
    push_lease("POST", 201, ID, "1", NULL, 0, 1);
    push_lease("PUT", 200, "", "2", NULL, 0, -1);
    le_config c = loop_config(cli);
    cb.stop_on_start = true; /* le_stop from the callback, as a SIGTERM right then */
    double t0 = pv_clock_monotonic();
    runner *r = start(&c);
    cr_assert(wait_done(r, 5.0));
    cr_assert_lt(pv_clock_monotonic() - t0, 2.0);
    cr_assert_eq(cb_get(&cb.started), 1);
    cr_assert_eq(cb_get(&cb.stopped), 1);
    cr_assert_eq(rs_request_count(srv), 3);
    cr_assert_leq(cb.requests_at_stop, 2, "on_stopped_leading runs before the release");

    const rs_request *put = rs_request_at(srv, 2);
    cr_assert_str_eq(put->method, "PUT");
    cr_assert_str_eq(put->target, LEASE_PATH);
    json_object *b = body_of(put);
    cr_assert_str_eq(jstr(b, "metadata", "resourceVersion"), "1");
    cr_assert_str_eq(jstr(b, "spec", "holderIdentity"), "");
    cr_assert_eq(jint(b, "spec", "leaseDurationSeconds"), 1);
    cr_assert_eq(jint(b, "spec", "leaseTransitions"), 0);
    assert_fresh_micro_time(jstr(b, "spec", "renewTime"));
    cr_assert_str_eq(jstr(b, "spec", "acquireTime"), jstr(b, "spec", "renewTime"));
    json_object_put(b);
    cr_assert_eq(finish(r), LE_STOPPED);
    cr_assert_float_eq(gauge(), 0.0, 1e-9);
}

Test(le_loop, stop_wakes_a_waiting_candidate_at_once)
{
    push_lease("GET", 200, "other", "5", NULL, 0, -1);
    le_config c = loop_config(cli);
    /* A long retry period: without a wake-up le_run would sleep on for >= 0.9 s. */
    c.lease_duration = 3.0;
    c.renew_deadline = 2.0;
    c.retry_period = 1.0;
    runner *r = start(&c);
    cr_assert(rs_wait_requests(srv, 1, 5000));
    sleep_ms(100);
    double t0 = pv_clock_monotonic();
    le_stop(r->e);
    cr_assert(wait_done(r, 3.0));
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 0.3, "le_stop took %.3f s to end a waiting candidate", took);
    cr_assert_eq(finish(r), LE_STOPPED);
    cr_assert_eq(count_method("PUT"), 0);
    cr_assert_eq(cb_get(&cb.started), 0);

    /* Sticky: a later le_run returns at once. */
    kc_error err = KC_ERROR_INIT;
    le_elector *e = NULL;
    cr_assert_eq(le_new(&c, &e, &err), KC_OK);
    le_stop(e);
    cr_assert_eq(le_run(e), LE_STOPPED);
    le_free(e);
}

Test(le_loop, rejoins_as_candidate_after_a_loss_when_asked)
{
    push("GET", LEASE_PATH, 404, STATUS_404, 1, 0);
    push_lease("POST", 201, ID, "1", NULL, 0, 1);
    push("GET", LEASE_PATH, 500, STATUS_500, 8, 0);
    push_lease("GET", 200, ID, "1", NULL, 0, -1);
    push_lease("PUT", 200, ID, "2", NULL, 0, -1);
    le_config c = loop_config(cli);
    c.rejoin_on_loss = true;
    c.release_on_cancel = false;
    runner *r = start(&c);
    cr_assert(wait_count(&cb.stopped, 1, 5.0), "never lost the lease");
    cr_assert(wait_count(&cb.started, 2, 8.0), "never led again");
    cr_assert_not(__atomic_load_n(&r->done, __ATOMIC_SEQ_CST));
    cr_assert(le_is_leader(r->e));
    cr_assert_float_eq(gauge(), 1.0, 1e-9);
    cr_assert_eq(finish(r), LE_STOPPED);
    cr_assert_eq(cb_get(&cb.stopped), 2);
}
