/*
 * le - leader election with a coordination.k8s.io/v1 Lease (see leader.h).
 *
 * Two halves. The pure half (records, the expiry and deadline decisions, the
 * rules that build the next record, MicroTime text) has no state and no I/O,
 * so tests can feed it any times; it is in leader_lease.c. The loop half is
 * le_run; this file holds it, with the configuration and the elector. What
 * the two share is in leader_internal.h.
 *
 * Threads. le_run's thread keeps the time and runs the callbacks; every
 * request to the API server runs on one helper thread started by le_run. The
 * run thread posts a job (try to acquire or renew, release, quit) under `mu`
 * and waits on `cv` for it to finish -- with a timeout at the renew deadline
 * while leading, so that a request hanging in the client cannot keep us
 * leading past the deadline: the run thread steps down at the deadline and
 * only then goes on waiting for the request. le_stop sets `stop` and
 * broadcasts `cv`; all waits are timed waits on `cv` (CLOCK_MONOTONIC), so a
 * waiting loop wakes at once.
 *
 * Ownership of the Lease state (`obs`, `lease`): it belongs to the helper
 * while a job is posted and not done, and to the run thread otherwise; `mu`
 * hands it over (job posted / job_done), so neither touches it concurrently.
 * `leading` is an atomic read by anyone; `leader` (for le_get_leader) is a
 * copy under `mu`.
 *
 * Invariants: `obs.time` is local monotonic time; it moves only when the
 * record read differs from the one observed before, or when we wrote the
 * record ourselves. A candidate writes only when le_can_acquire says so, and
 * always at the resourceVersion it read, so of two racing candidates one gets
 * Conflict.
 */
#include "leader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "pv_clock.h"
#include "log.h"

#define LOGGER "leaderelection"

/* ---- configuration ----------------------------------------------------------- */

void le_config_init(le_config *c)
{
    memset(c, 0, sizeof(*c));
    c->lease_duration = LE_DEFAULT_LEASE_DURATION;
    c->renew_deadline = LE_DEFAULT_RENEW_DEADLINE;
    c->retry_period = LE_DEFAULT_RETRY_PERIOD;
    c->release_on_cancel = true;
}

void le_client_opts(const le_config *c, kc_client_opts *out)
{
    double t = c->renew_deadline - c->retry_period;
    long ms = (long)(t * 1000.0);
    if (ms < 100)
        ms = 100;
    out->request_timeout_ms = ms;
    out->connect_timeout_ms = ms;
    out->max_retries = -1;
}

int le_default_identity(char **out)
{
    *out = NULL;
    struct utsname u;
    if (uname(&u) != 0)
        return KC_ERR_IO;
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return KC_ERR_IO;
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *s = NULL;
    if (asprintf(&s, "%s_%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 u.nodename, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
                 b[11], b[12], b[13], b[14], b[15]) < 0)
        return KC_ERR_NOMEM;
    *out = s;
    return KC_OK;
}

/* ---- the elector --------------------------------------------------------------- */

enum job {
    JOB_NONE,
    JOB_TRY,     /* tryAcquireOrRenew */
    JOB_RELEASE, /* release if we hold it */
    JOB_QUIT,
};

/* Results of JOB_TRY besides a negative kc_status. */
enum {
    TRY_HELD = 0, /* someone else holds an unexpired lease */
    TRY_OURS = 1, /* we hold it now (created, taken over or renewed) */
};

struct le_elector {
    char *namespace_;
    char *name;
    char *identity;
    char *desc; /* "namespace/name" for logs */
    double lease_duration, renew_deadline, retry_period;
    bool release_on_cancel, rejoin_on_loss;
    kc_client *client;
    met_gauge *gauge;
    le_cb on_started_leading, on_stopped_leading;
    le_leader_cb on_new_leader;
    void *user;

    pthread_mutex_t mu;
    pthread_cond_t cv;    /* run thread waits here: job done, stop */
    pthread_cond_t io_cv; /* helper waits here: job posted */
    bool stop;
    bool running;
    enum job job;
    double job_deadline; /* JOB_TRY: write nothing after this monotonic time (0 = none) */
    bool job_done;
    int job_result;
    char *leader; /* last observed holder, for le_get_leader */

    atomic_bool leading;

    /* Handed between the run thread and the helper (see the top comment). */
    le_observed obs;
    json_object *lease;

    /* Run thread only. */
    char *reported; /* last identity passed to on_new_leader */
    uint64_t rng;
};

static int64_t wall_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

int le_new(const le_config *c, le_elector **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "le_new: config and out are required");
    if (!c->namespace_ || !*c->namespace_ || !c->name || !*c->name)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "leader election needs the Lease's namespace and name");
    if (!c->client)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "leader election needs a client");
    if (c->identity && !*c->identity)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "the leader election identity is empty");
    if (!(c->retry_period > 0))
        return kc_error_set(err, KC_ERR_INVALID_ARG, "retry period must be greater than zero");
    if (!(c->renew_deadline > LE_JITTER_FACTOR * c->retry_period))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "renew deadline must be greater than retry period*%.1f",
                            LE_JITTER_FACTOR);
    if (!(c->lease_duration > c->renew_deadline))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "lease duration must be greater than the renew deadline");
    if (!(c->lease_duration >= 1.0))
        return kc_error_set(err, KC_ERR_INVALID_ARG, "lease duration must be at least 1 s");

    le_elector *e = calloc(1, sizeof(*e));
    if (!e)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    bool ok = true;
    e->namespace_ = dup_or_null(c->namespace_, &ok);
    e->name = dup_or_null(c->name, &ok);
    if (c->identity) {
        e->identity = dup_or_null(c->identity, &ok);
    } else {
        int rc = le_default_identity(&e->identity);
        if (rc != KC_OK) {
            free(e->namespace_);
            free(e->name);
            free(e);
            return kc_error_set(err, rc, "cannot make a leader election identity");
        }
    }
    if (ok && asprintf(&e->desc, "%s/%s", c->namespace_, c->name) < 0) {
        e->desc = NULL;
        ok = false;
    }
    if (!ok) {
        free(e->namespace_);
        free(e->name);
        free(e->identity);
        free(e->desc);
        free(e);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    e->lease_duration = c->lease_duration;
    e->renew_deadline = c->renew_deadline;
    e->retry_period = c->retry_period;
    e->release_on_cancel = c->release_on_cancel;
    e->rejoin_on_loss = c->rejoin_on_loss;
    e->client = c->client;
    e->on_started_leading = c->on_started_leading;
    e->on_stopped_leading = c->on_stopped_leading;
    e->on_new_leader = c->on_new_leader;
    e->user = c->user;
    if (c->master_status)
        e->gauge = met_gauge_get(c->master_status, MET_L(e->name));
    atomic_init(&e->leading, false);

    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_cond_init(&e->io_cv, &ca);
    pthread_condattr_destroy(&ca);

    uint64_t seed = (uint64_t)wall_now_us() ^ ((uint64_t)(uintptr_t)e << 16);
    for (const char *p = e->identity; *p; p++)
        seed = seed * 1099511628211ULL + (unsigned char)*p;
    e->rng = seed;
    *out = e;
    return KC_OK;
}

void le_free(le_elector *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->io_cv);
    le_observed_clear(&e->obs);
    json_object_put(e->lease);
    free(e->namespace_);
    free(e->name);
    free(e->identity);
    free(e->desc);
    free(e->leader);
    free(e->reported);
    free(e);
}

const char *le_identity(const le_elector *e)
{
    return e ? e->identity : NULL;
}

bool le_is_leader(const le_elector *e)
{
    return e && atomic_load(&e->leading);
}

int le_get_leader(le_elector *e, char **out)
{
    *out = NULL;
    if (!e)
        return KC_ERR_INVALID_ARG;
    int rc = KC_OK;
    pthread_mutex_lock(&e->mu);
    if (e->leader && !(*out = strdup(e->leader)))
        rc = KC_ERR_NOMEM;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void le_stop(le_elector *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ---- requests (helper thread) ---------------------------------------------------- */

static kc_ref lease_ref(const le_elector *e)
{
    kc_ref r = {.group = "coordination.k8s.io",
                .version = "v1",
                .resource = "leases",
                .namespace_ = e->namespace_,
                .name = e->name};
    return r;
}

/* A new Lease object holding rec. */
static json_object *new_lease(const le_elector *e, const le_record *rec)
{
    json_object *lease = json_object_new_object();
    json_object *meta = json_object_new_object();
    json_object *spec = le_record_to_spec(rec);
    if (!lease || !meta || !spec)
        goto fail;
    if (leader_add_field(lease, "apiVersion", json_object_new_string("coordination.k8s.io/v1")) !=
            KC_OK ||
        leader_add_field(lease, "kind", json_object_new_string("Lease")) != KC_OK ||
        leader_add_field(meta, "name", json_object_new_string(e->name)) != KC_OK ||
        leader_add_field(meta, "namespace", json_object_new_string(e->namespace_)) != KC_OK)
        goto fail;
    int rc = leader_add_field(lease, "metadata", meta);
    meta = NULL;
    if (rc != KC_OK)
        goto fail;
    rc = leader_add_field(lease, "spec", spec);
    spec = NULL;
    if (rc != KC_OK)
        goto fail;
    return lease;
fail:
    json_object_put(lease);
    json_object_put(meta);
    json_object_put(spec);
    return NULL;
}

/*
 * PUT rec as the spec of the last Lease we read or wrote (its metadata, with
 * its resourceVersion, goes back unchanged: a stale one gets Conflict).
 * On success the observation becomes rec at time now.
 */
static int write_record(le_elector *e, const le_record *rec, double now, kc_error *err)
{
    json_object *body = NULL, *got = NULL;
    if (json_object_deep_copy(e->lease, &body, NULL) != 0)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if (leader_add_field(body, "spec", le_record_to_spec(rec)) != KC_OK) {
        json_object_put(body);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    kc_ref ref = lease_ref(e);
    int rc = kc_update(e->client, &ref, body, NULL, &got, err);
    json_object_put(body);
    if (rc != KC_OK)
        return rc;
    json_object_put(e->lease);
    e->lease = got;
    if (leader_observed_set(&e->obs, rec, now) != KC_OK)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    return KC_OK;
}

/*
 * client-go's tryAcquireOrRenew: TRY_OURS, TRY_HELD or a negative kc_status.
 * Nothing is written once deadline (monotonic) has passed, as client-go's
 * context deadline cancels the update: a leader has stepped down by then,
 * and a late write would only make the others wait longer for a lease
 * nobody uses.
 */
static int try_acquire_or_renew(le_elector *e, double deadline, kc_error *err)
{
    double now = pv_clock_monotonic();
    int64_t wall = wall_now_us();
    long duration = (long)e->lease_duration;
    kc_ref ref = lease_ref(e);
    json_object *got = NULL;
    le_record rec = {0}, next = {0};

    int rc = kc_get(e->client, &ref, &got, err);
    if (rc == KC_ERR_NOT_FOUND) {
        if (le_next_record(NULL, e->identity, duration, wall, &next) != KC_OK)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        json_object *body = new_lease(e, &next);
        if (!body) {
            le_record_clear(&next);
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
        /* AlreadyExists: another candidate created it first; the next try reads it. */
        rc = kc_create(e->client, &ref, body, NULL, &got, err);
        json_object_put(body);
        if (rc == KC_OK) {
            json_object_put(e->lease);
            e->lease = got;
            if (leader_observed_set(&e->obs, &next, now) != KC_OK)
                rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
        le_record_clear(&next);
        return rc == KC_OK ? TRY_OURS : rc;
    }
    if (rc != KC_OK)
        return rc;

    json_object_put(e->lease);
    e->lease = got;
    rc = le_record_from_lease(got, &rec);
    if (rc != KC_OK) {
        le_record_clear(&rec);
        return kc_error_set(err, rc, "the Lease %s has a spec we cannot read", e->desc);
    }
    rc = le_observe(&e->obs, &rec, now);
    le_record_clear(&rec);
    if (rc < 0)
        return kc_error_set(err, rc, "out of memory");
    if (!le_can_acquire(&e->obs, e->identity, now))
        return TRY_HELD;

    if (deadline > 0 && pv_clock_monotonic() >= deadline)
        return kc_error_set(err, KC_ERR_TIMEOUT, "the renew deadline passed before the update");
    if (le_next_record(&e->obs.record, e->identity, duration, wall, &next) != KC_OK)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    rc = write_record(e, &next, now, err);
    le_record_clear(&next);
    return rc == KC_OK ? TRY_OURS : rc;
}

/* client-go's release: give up a lease the observation says we hold. */
static int release_lease(le_elector *e, kc_error *err)
{
    if (!e->obs.valid || !e->lease || !le_record_held(&e->obs.record) ||
        strcmp(e->obs.record.holder_identity, e->identity) != 0)
        return KC_OK;
    le_record rel;
    if (le_release_record(&e->obs.record, wall_now_us(), &rel) != KC_OK)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    int rc = write_record(e, &rel, pv_clock_monotonic(), err);
    le_record_clear(&rel);
    if (rc == KC_OK)
        log_write(PLOG_INFO, LOGGER, "released lease", "lease", e->desc, NULL);
    else
        log_write(PLOG_ERROR, LOGGER, "failed to release lease", "lease", e->desc, "error",
                  err->message ? err->message : kc_strerror(rc), NULL);
    return rc;
}

static void *helper_main(void *arg)
{
    le_elector *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (e->job == JOB_NONE || e->job_done)
            pthread_cond_wait(&e->io_cv, &e->mu);
        enum job job = e->job;
        double deadline = e->job_deadline;
        if (job == JOB_QUIT)
            break;
        pthread_mutex_unlock(&e->mu);
        kc_error err = KC_ERROR_INIT;
        int rc;
        if (job == JOB_TRY) {
            rc = try_acquire_or_renew(e, deadline, &err);
            if (rc < 0) {
                /* Losing a race to another candidate is normal; anything else is worth seeing. */
                bool race = rc == KC_ERR_CONFLICT || rc == KC_ERR_ALREADY_EXISTS;
                log_write(
                    race ? PLOG_INFO : PLOG_ERROR, LOGGER,
                    atomic_load(&e->leading) ? "failed to renew lease" : "failed to acquire lease",
                    "lease", e->desc, "error", err.message ? err.message : kc_strerror(rc), NULL);
            }
        } else {
            rc = release_lease(e, &err);
        }
        kc_error_clear(&err);
        pthread_mutex_lock(&e->mu);
        e->job_result = rc;
        e->job_done = true;
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- the loop (run thread) ----------------------------------------------------------- */

/* Wait until monotonic time t or le_stop; true when stopped. */
static bool wait_stop_until(le_elector *e, double t)
{
    struct timespec ts = pv_clock_timespec(t);
    pthread_mutex_lock(&e->mu);
    while (!e->stop && pv_clock_monotonic() < t)
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    bool stopped = e->stop;
    pthread_mutex_unlock(&e->mu);
    return stopped;
}

static bool stop_requested(le_elector *e)
{
    pthread_mutex_lock(&e->mu);
    bool s = e->stop;
    pthread_mutex_unlock(&e->mu);
    return s;
}

static void set_gauge(le_elector *e, double v)
{
    met_gauge_set(e->gauge, v);
}

static void become_leader(le_elector *e)
{
    atomic_store(&e->leading, true);
    set_gauge(e, 1);
    log_write(PLOG_INFO, LOGGER, "successfully acquired lease", "lease", e->desc, "identity",
              e->identity, NULL);
    if (e->on_started_leading)
        e->on_started_leading(e->user);
}

static void step_down(le_elector *e, const char *why)
{
    atomic_store(&e->leading, false);
    set_gauge(e, 0);
    log_write(PLOG_INFO, LOGGER, "stopped leading", "lease", e->desc, "reason", why, NULL);
    if (e->on_stopped_leading)
        e->on_stopped_leading(e->user);
}

/*
 * Post job to the helper and wait for its result. The helper writes nothing
 * after deadline (monotonic; 0 = none). With missed non-NULL (a leader's
 * renewal), step down as soon as the deadline passes with the job not done
 * (*missed = true), then go on waiting for it.
 */
static int run_job(le_elector *e, enum job job, double deadline, bool *missed)
{
    pthread_mutex_lock(&e->mu);
    e->job = job;
    e->job_deadline = deadline;
    e->job_done = false;
    pthread_cond_signal(&e->io_cv);
    while (!e->job_done) {
        if (missed && !*missed) {
            if (deadline > 0 && pv_clock_monotonic() >= deadline) {
                pthread_mutex_unlock(&e->mu);
                step_down(e, "renew deadline passed with a request in flight");
                pthread_mutex_lock(&e->mu);
                *missed = true;
                continue;
            }
            struct timespec ts = pv_clock_timespec(deadline);
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        } else {
            pthread_cond_wait(&e->cv, &e->mu);
        }
    }
    int rc = e->job_result;
    e->job = JOB_NONE;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* After a try: publish the holder and report a new leader (client-go's maybeReportTransition). */
static void after_try(le_elector *e)
{
    const char *holder =
        (e->obs.valid && le_record_held(&e->obs.record)) ? e->obs.record.holder_identity : NULL;
    pthread_mutex_lock(&e->mu);
    if (!holder || !e->leader || strcmp(holder, e->leader) != 0) {
        char *copy = holder ? strdup(holder) : NULL;
        if (copy || !holder) { /* out of memory: keep the previous value */
            free(e->leader);
            e->leader = copy;
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (!holder || (e->reported && strcmp(holder, e->reported) == 0))
        return;
    char *copy = strdup(holder);
    if (!copy)
        return; /* reported on a later try */
    free(e->reported);
    e->reported = copy;
    log_write(PLOG_INFO, LOGGER, "new leader elected", "lease", e->desc, "identity", copy, NULL);
    if (e->on_new_leader)
        e->on_new_leader(copy, e->user);
}

/*
 * Renew every retry_period while leading. Returns LE_STOPPED when le_stop
 * was called (still leading) or LE_LOST after stepping down.
 */
static int lead(le_elector *e, double last_renew)
{
    for (;;) {
        double deadline = last_renew + e->renew_deadline;
        double next = pv_clock_monotonic() + e->retry_period;
        if (wait_stop_until(e, next < deadline ? next : deadline))
            return LE_STOPPED;
        double start = pv_clock_monotonic();
        if (le_renew_deadline_passed(last_renew, start, e->renew_deadline)) {
            step_down(e, "failed to renew the lease within the renew deadline");
            return LE_LOST;
        }
        bool missed = false;
        int rc = run_job(e, JOB_TRY, deadline, &missed);
        after_try(e);
        if (missed)
            return LE_LOST;
        if (rc == TRY_OURS) {
            last_renew = start;
            continue;
        }
        if (rc == TRY_HELD) {
            step_down(e, "the lease is held by another");
            return LE_LOST;
        }
        if (le_renew_deadline_passed(last_renew, pv_clock_monotonic(), e->renew_deadline)) {
            step_down(e, "failed to renew the lease within the renew deadline");
            return LE_LOST;
        }
    }
}

/*
 * When a candidate tries next. client-go waits retry_period * [1, 2.2) between
 * tries, so a standby can notice a dead leader's expiry up to 2.2 retry
 * periods late, and see its last renewal up to as late again: failover after
 * kill -9 can reach lease + 4.4 * retry. DESIGN.md asks for lease + retry, so
 * a candidate polls within (0.8, 1] * retry_period (still jittered, never
 * later than one retry period) and, when the holder's lease will expire
 * (by our local clock) before that, wakes at the expiry itself.
 */
static double candidate_next_try(le_elector *e, double now)
{
    double u = (double)(splitmix64(&e->rng) >> 11) * 0x1.0p-53;
    double next = now + e->retry_period * (1.0 - 0.2 * u);
    pthread_mutex_lock(&e->mu);
    if (e->obs.valid && le_record_held(&e->obs.record) &&
        strcmp(e->obs.record.holder_identity, e->identity) != 0) {
        double expiry = e->obs.time + (double)e->obs.record.lease_duration_seconds;
        if (expiry > now && expiry + 0.01 < next)
            next = expiry + 0.01;
    }
    pthread_mutex_unlock(&e->mu);
    return next;
}

int le_run(le_elector *e)
{
    if (!e)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&e->mu);
    if (e->running) {
        pthread_mutex_unlock(&e->mu);
        return KC_ERR_INVALID_ARG;
    }
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        return LE_STOPPED;
    }
    e->running = true;
    e->job = JOB_NONE;
    e->job_done = false;
    pthread_mutex_unlock(&e->mu);

    pthread_t helper;
    if (pthread_create(&helper, NULL, helper_main, e) != 0) {
        pthread_mutex_lock(&e->mu);
        e->running = false;
        pthread_mutex_unlock(&e->mu);
        return KC_ERR_NOMEM;
    }
    set_gauge(e, 0);
    log_write(PLOG_INFO, LOGGER, "attempting to acquire leader lease", "lease", e->desc, NULL);

    int result = LE_STOPPED;
    while (!stop_requested(e)) {
        double start = pv_clock_monotonic();
        /* Acquiring counts as the first renewal: the same deadline applies. */
        int rc = run_job(e, JOB_TRY, start + e->renew_deadline, NULL);
        after_try(e);
        if (rc == TRY_OURS) {
            if (stop_requested(e))
                break; /* acquired as we were told to stop: just release below */
            become_leader(e);
            if (lead(e, start) == LE_STOPPED)
                break;
            if (!e->rejoin_on_loss) {
                result = LE_LOST;
                break;
            }
            log_write(PLOG_INFO, LOGGER, "attempting to acquire leader lease", "lease", e->desc,
                      NULL);
        }
        wait_stop_until(e, candidate_next_try(e, pv_clock_monotonic()));
    }

    if (atomic_load(&e->leading))
        step_down(e, "leader election stopped");
    if (e->release_on_cancel)
        run_job(e, JOB_RELEASE, 0, NULL);
    pthread_mutex_lock(&e->mu);
    e->job = JOB_QUIT;
    e->job_done = false;
    pthread_cond_signal(&e->io_cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(helper, NULL);

    pthread_mutex_lock(&e->mu);
    e->job = JOB_NONE;
    e->running = false;
    pthread_mutex_unlock(&e->mu);
    return result;
}
