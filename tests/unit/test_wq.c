/*
 * Unit tests of wq (src/informer/wq.c): client-go work queue semantics, the
 * delay heap, the rate limiter, shutdown, metrics, and a many-thread stress
 * run that checks exclusivity and that no add is ever lost.
 *
 * Timing asserts only go in the direction that cannot flake: "not before the
 * delay". Upper bounds are many times the expected time.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pv_clock.h"
#include "kc_error.h"
#include "wq.h"

static wq *new_queue(void)
{
    wq_opts o = {0};
    o.bucket_qps = -1; /* no overall bucket unless a test wants one */
    wq *q = NULL;
    cr_assert_eq(wq_new(&o, &q), KC_OK);
    return q;
}

static const char *must_get(wq *q)
{
    const char *k = NULL;
    cr_assert_eq(wq_get(q, &k), KC_OK);
    cr_assert_not_null(k);
    return k;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

Test(wq, adding_a_waiting_key_again_is_deduplicated)
{
    wq *q = new_queue();
    wq_add(q, "ns/a");
    wq_add(q, "ns/a");
    wq_add(q, "ns/a");
    cr_assert_eq(wq_len(q), 1);
    cr_assert_str_eq(must_get(q), "ns/a");
    cr_assert_eq(wq_len(q), 0);
    wq_done(q, "ns/a");
    cr_assert_eq(wq_len(q), 0);
    wq_free(q);
}

Test(wq, waiting_keys_are_handed_out_in_fifo_order)
{
    wq *q = new_queue();
    const char *keys[] = {"c", "a", "b", "z", "m"};
    for (int i = 0; i < 5; i++)
        wq_add(q, keys[i]);
    wq_add(q, "a"); /* dedup keeps a's place */
    for (int i = 0; i < 5; i++) {
        const char *k = must_get(q);
        cr_assert_str_eq(k, keys[i]);
        wq_done(q, k);
    }
    wq_free(q);
}

Test(wq, key_is_not_handed_out_again_while_processing)
{
    wq *q = new_queue();
    wq_add(q, "a");
    const char *k = must_get(q);
    cr_assert_str_eq(k, "a");
    wq_add(q, "a"); /* dirty, but a worker holds it */
    wq_add(q, "b");
    cr_assert_eq(wq_len(q), 1);
    cr_assert_str_eq(must_get(q), "b");
    cr_assert_eq(wq_len(q), 0);
    wq_stats st;
    wq_stats_get(q, &st);
    cr_assert_eq(st.processing, 2);
    cr_assert_eq(st.depth, 1); /* "a" waits for its own wq_done */
    wq_done(q, "b");
    wq_done(q, "a");
    wq_free(q);
}

Test(wq, readd_during_processing_is_processed_again_after_done)
{
    wq *q = new_queue();
    wq_add(q, "a");
    const char *k = must_get(q);
    wq_add(q, "a");
    wq_add(q, "a");
    cr_assert_eq(wq_len(q), 0);
    wq_done(q, k);
    cr_assert_eq(wq_len(q), 1);
    k = must_get(q);
    cr_assert_str_eq(k, "a");
    wq_done(q, k);
    cr_assert_eq(wq_len(q), 0); /* processed once more, not twice more */
    wq_free(q);
}

Test(wq, done_accepts_an_equal_string_and_ignores_unknown_keys)
{
    wq *q = new_queue();
    wq_add(q, "ns/x");
    must_get(q);
    wq_add(q, "ns/x");
    char copy[] = "ns/x";
    wq_done(q, copy);
    wq_done(q, "never-added");
    cr_assert_eq(wq_len(q), 1);
    wq_free(q);
}

Test(wq, delayed_add_fires_after_not_before_its_delay)
{
    wq *q = new_queue();
    double t0 = pv_clock_monotonic();
    cr_assert_eq(wq_add_after(q, "a", 0.2), KC_OK);
    cr_assert_eq(wq_len(q), 0);
    const char *k = must_get(q);
    double waited = pv_clock_monotonic() - t0;
    cr_assert_str_eq(k, "a");
    cr_assert_geq(waited, 0.2, "fired after %f s", waited);
    cr_assert_lt(waited, 10.0);
    wq_done(q, k);
    wq_free(q);
}

Test(wq, earlier_delayed_readd_wins)
{
    wq *q = new_queue();
    double t0 = pv_clock_monotonic();
    wq_add_after(q, "a", 30);
    wq_add_after(q, "a", 0.1);
    const char *k = must_get(q); /* would hang ~30 s (test timeout) if the later deadline won */
    double waited = pv_clock_monotonic() - t0;
    cr_assert_geq(waited, 0.1);
    cr_assert_lt(waited, 20.0);
    wq_stats st;
    wq_stats_get(q, &st);
    cr_assert_eq(st.delayed, 0);
    wq_done(q, k);
    wq_free(q);
}

Test(wq, later_delayed_readd_does_not_postpone)
{
    wq *q = new_queue();
    double t0 = pv_clock_monotonic();
    wq_add_after(q, "a", 0.1);
    wq_add_after(q, "a", 30);
    const char *k = must_get(q);
    double waited = pv_clock_monotonic() - t0;
    cr_assert_geq(waited, 0.1);
    cr_assert_lt(waited, 20.0);
    wq_done(q, k);
    wq_free(q);
}

Test(wq, delayed_keys_fire_in_deadline_order)
{
    wq *q = new_queue();
    wq_add_after(q, "c", 0.15);
    wq_add_after(q, "a", 0.05);
    wq_add_after(q, "b", 0.10);
    wq_add_after(q, "now", 0); /* <= 0 is a plain add */
    cr_assert_eq(wq_len(q), 1);
    const char *want[] = {"now", "a", "b", "c"};
    for (int i = 0; i < 4; i++) {
        const char *k = must_get(q);
        cr_assert_str_eq(k, want[i]);
        wq_done(q, k);
    }
    wq_free(q);
}

typedef struct getter {
    wq *q;
    int rc;
    char key[32];
} getter;

static void *getter_main(void *arg)
{
    getter *g = arg;
    const char *k = NULL;
    g->rc = wq_get(g->q, &k);
    if (k != NULL) {
        snprintf(g->key, sizeof(g->key), "%s", k);
        wq_done(g->q, k);
    }
    return NULL;
}

Test(wq, sleeping_getter_wakes_for_a_new_earlier_deadline)
{
    wq *q = new_queue();
    wq_add_after(q, "late", 60);
    getter g = {q, 1, ""};
    pthread_t t;
    pthread_create(&t, NULL, getter_main, &g);
    sleep_s(0.05); /* let it sleep until the 60 s deadline */
    double t0 = pv_clock_monotonic();
    wq_add_after(q, "soon", 0.05);
    pthread_join(t, NULL);
    cr_assert_eq(g.rc, KC_OK);
    cr_assert_str_eq(g.key, "soon");
    cr_assert_lt(pv_clock_monotonic() - t0, 20.0);
    wq_free(q);
}

Test(wq, blocked_getter_wakes_when_a_key_is_added)
{
    wq *q = new_queue();
    getter g = {q, 1, ""};
    pthread_t t;
    pthread_create(&t, NULL, getter_main, &g);
    sleep_s(0.02);
    wq_add(q, "k");
    pthread_join(t, NULL);
    cr_assert_eq(g.rc, KC_OK);
    cr_assert_str_eq(g.key, "k");
    wq_free(q);
}

Test(wq, rate_limited_backoff_doubles_from_5ms_and_caps_at_1000s)
{
    wq *q = new_queue();
    for (int i = 0; i < 40; i++) {
        double d = -1;
        cr_assert_eq(wq_add_rate_limited(q, "k", &d), KC_OK);
        double want = fmin(0.005 * pow(2, i), 1000.0);
        cr_assert(fabs(d - want) < 1e-9 * fmax(1, want), "failure %d: got %f want %f", i, d, want);
    }
    cr_assert_eq(wq_num_requeues(q, "k"), 40);
    wq_free(q);
}

Test(wq, capped_backoff_stops_at_the_cap_and_stops_counting_there)
{
    /* A transient failure (the API server away) backs off to the cap; the
     * failures counted stop where the cap is reached, so the next ordinary
     * failure after an outage waits about the cap, not minutes. */
    wq *q = new_queue();
    double d = -1;
    for (int i = 0; i < 30; i++) {
        cr_assert_eq(wq_add_rate_limited_cap(q, "k", 2.0, &d), KC_OK);
        double want = fmin(0.005 * pow(2, i), 2.0);
        cr_assert(fabs(d - want) < 1e-9 * fmax(1, want), "failure %d: got %f want %f", i, d, want);
    }
    /* 0.005 * 2^9 = 2.56 >= 2: nine doublings counted, then no more. */
    cr_assert_eq(wq_num_requeues(q, "k"), 9);
    cr_assert_eq(wq_add_rate_limited(q, "k", &d), KC_OK);
    cr_assert_float_eq(d, 2.56, 1e-9);
    /* A cap of 0 (or past max_delay) is the plain backoff. */
    cr_assert_eq(wq_add_rate_limited_cap(q, "j", 0, &d), KC_OK);
    cr_assert_eq(wq_add_rate_limited_cap(q, "j", 5000, &d), KC_OK);
    cr_assert_float_eq(d, 0.01, 1e-12);
    cr_assert_eq(wq_num_requeues(q, "j"), 2);
    wq_free(q);
}

Test(wq, forget_resets_the_backoff_of_a_key)
{
    wq *q = new_queue();
    double d;
    for (int i = 0; i < 5; i++)
        wq_add_rate_limited(q, "k", &d);
    cr_assert_float_eq(d, 0.08, 1e-12);
    cr_assert_eq(wq_num_requeues(q, "k"), 5);
    wq_forget(q, "k");
    cr_assert_eq(wq_num_requeues(q, "k"), 0);
    wq_add_rate_limited(q, "k", &d);
    cr_assert_float_eq(d, 0.005, 1e-12);
    cr_assert_eq(wq_num_requeues(q, "k"), 1);
    wq_free(q);
}

Test(wq, keys_back_off_independently)
{
    wq *q = new_queue();
    double d;
    for (int i = 0; i < 4; i++)
        wq_add_rate_limited(q, "a", &d);
    wq_add_rate_limited(q, "b", &d);
    cr_assert_float_eq(d, 0.005, 1e-12);
    cr_assert_eq(wq_num_requeues(q, "a"), 4);
    cr_assert_eq(wq_num_requeues(q, "b"), 1);
    cr_assert_eq(wq_num_requeues(q, "c"), 0);
    wq_free(q);
}

Test(wq, rate_limited_key_is_processed_after_its_backoff)
{
    wq *q = new_queue();
    double t0 = pv_clock_monotonic(), d;
    wq_add_rate_limited(q, "k", &d);
    wq_add_rate_limited(q, "k", &d); /* 5 ms then 10 ms: the earlier deadline stays */
    const char *k = must_get(q);
    cr_assert_geq(pv_clock_monotonic() - t0, 0.005);
    wq_done(q, k);
    cr_assert_eq(wq_num_requeues(q, "k"), 2); /* failures stay until forget */
    wq_free(q);
}

Test(wq, token_bucket_limits_overall_rate_after_the_burst)
{
    wq_opts o = {0};
    o.bucket_qps = 1;
    o.bucket_burst = 5;
    wq *q = NULL;
    cr_assert_eq(wq_new(&o, &q), KC_OK);
    double d;
    char key[16];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        wq_add_rate_limited(q, key, &d);
        cr_assert_float_eq(d, 0.005, 1e-12, "key %d inside the burst", i);
    }
    wq_add_rate_limited(q, "k5", &d);
    /* One token short at 1 qps: about 1 s, less whatever refilled meanwhile. */
    cr_assert(d > 0.5 && d <= 1.0 + 1e-9, "bucket delay %f", d);
    wq_free(q);
}

Test(wq, shutdown_wakes_every_blocked_getter)
{
    wq *q = new_queue();
    enum { N = 4 };
    getter g[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        g[i] = (getter){q, 1, ""};
        pthread_create(&t[i], NULL, getter_main, &g[i]);
    }
    wq_add_after(q, "far", 600); /* some sleep on a deadline, none should matter */
    sleep_s(0.05);
    wq_shutdown(q);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(g[i].rc, KC_ERR_STOPPED);
    }
    cr_assert(wq_shutting_down(q));
    wq_free(q);
}

Test(wq, adds_after_shutdown_are_noops_and_waiting_keys_are_dropped)
{
    wq *q = new_queue();
    wq_add(q, "queued");
    wq_add_after(q, "delayed", 0.01);
    wq_shutdown(q);
    cr_assert_eq(wq_add(q, "late"), KC_OK);
    cr_assert_eq(wq_add_after(q, "late2", 0.01), KC_OK);
    double d = -1;
    cr_assert_eq(wq_add_rate_limited(q, "late3", &d), KC_OK);
    cr_assert_eq(d, 0);
    cr_assert_eq(wq_len(q), 0);
    const char *k = "x";
    cr_assert_eq(wq_get(q, &k), KC_ERR_STOPPED);
    cr_assert_null(k);
    wq_stats st;
    wq_stats_get(q, &st);
    cr_assert_eq(st.depth, 0);
    cr_assert_eq(st.delayed, 0);
    wq_free(q);
}

typedef struct drainer {
    wq *q;
    atomic_int finished;
} drainer;

static void *drainer_main(void *arg)
{
    drainer *d = arg;
    wq_shutdown_drain(d->q);
    atomic_store(&d->finished, 1);
    return NULL;
}

Test(wq, shutdown_drain_waits_until_held_keys_are_done)
{
    wq *q = new_queue();
    wq_add(q, "a");
    wq_add(q, "b");
    const char *a = must_get(q);
    drainer d = {q, 0};
    pthread_t t;
    pthread_create(&t, NULL, drainer_main, &d);
    sleep_s(0.1);
    cr_assert_eq(atomic_load(&d.finished), 0, "drain returned while a key was held");
    const char *k = "x";
    cr_assert_eq(wq_get(q, &k), KC_ERR_STOPPED); /* "b" is not handed out any more */
    wq_add(q, "a");                              /* no-op: shutting down */
    wq_done(q, a);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&d.finished), 1);
    cr_assert_eq(wq_len(q), 0);
    wq_free(q);
}

typedef struct observed {
    pthread_mutex_t mu;
    int n_queue, n_work;
    double queue_s, work_s;
} observed;

static void observe(const char *metric, double seconds, void *user)
{
    observed *o = user;
    pthread_mutex_lock(&o->mu);
    if (strcmp(metric, WQ_METRIC_QUEUE_DURATION) == 0) {
        o->n_queue++;
        o->queue_s = seconds;
    } else if (strcmp(metric, WQ_METRIC_WORK_DURATION) == 0) {
        o->n_work++;
        o->work_s = seconds;
    }
    pthread_mutex_unlock(&o->mu);
}

Test(wq, metrics_count_adds_depth_retries_and_observe_durations)
{
    observed ob = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0};
    wq_opts o = {0};
    o.bucket_qps = -1;
    o.observe = observe;
    o.observe_user = &ob;
    wq *q = NULL;
    cr_assert_eq(wq_new(&o, &q), KC_OK);
    wq_add(q, "a");
    wq_add(q, "a");
    wq_add(q, "b");
    wq_add_after(q, "c", 600);
    double d;
    wq_add_rate_limited(q, "e", &d);
    wq_stats st;
    wq_stats_get(q, &st);
    cr_assert_eq(st.adds_total, 2);
    cr_assert_eq(st.depth, 2);
    cr_assert_eq(st.retries_total, 2);
    cr_assert_eq(st.delayed, 2);

    sleep_s(0.03);
    const char *k = must_get(q);
    cr_assert_str_eq(k, "a");
    sleep_s(0.03);
    wq_stats_get(q, &st);
    cr_assert_eq(st.processing, 1);
    cr_assert_geq(st.unfinished_work_seconds, 0.03);
    cr_assert_geq(st.longest_running_processor_seconds, 0.03);
    wq_done(q, k);

    cr_assert_eq(ob.n_queue, 1);
    cr_assert_eq(ob.n_work, 1);
    cr_assert_geq(ob.queue_s, 0.03, "queue duration %f", ob.queue_s);
    cr_assert_geq(ob.work_s, 0.03, "work duration %f", ob.work_s);
    /* "e" became due after 5 ms: promoted counts as an add. */
    wq_stats_get(q, &st);
    cr_assert_eq(st.adds_total, 3);
    cr_assert_eq(st.depth, 2);
    cr_assert_eq(st.processing, 0);
    wq_free(q);
}

Test(wq, invalid_arguments_are_rejected)
{
    wq *q = new_queue();
    cr_assert_eq(wq_add(q, NULL), KC_ERR_INVALID_ARG);
    cr_assert_eq(wq_add_after(q, NULL, 1), KC_ERR_INVALID_ARG);
    cr_assert_eq(wq_add_rate_limited(q, NULL, NULL), KC_ERR_INVALID_ARG);
    cr_assert_eq(wq_add_after(q, "nan", NAN), KC_OK); /* treated as "now" */
    cr_assert_eq(wq_len(q), 1);
    cr_assert_eq(wq_add_after(q, "inf", INFINITY), KC_OK); /* clamped, never fires here */
    cr_assert_eq(wq_len(q), 1);
    wq_free(NULL);
    wq_free(q);
}

Test(wq, many_keys_grow_the_tables)
{
    wq *q = new_queue();
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "ns/key-%d", i);
        cr_assert_eq(wq_add(q, key), KC_OK);
        if (i % 3 == 0)
            wq_add_after(q, key, 600);
    }
    cr_assert_eq(wq_len(q), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "ns/key-%d", i);
        const char *k = must_get(q);
        cr_assert_str_eq(k, key);
        wq_done(q, k);
    }
    wq_free(q);
}

/* ---- stress ---------------------------------------------------------------- */

enum { S_KEYS = 200, S_PRODUCERS = 8, S_WORKERS = 8, S_ADDS_EACH = 5000 };

typedef struct stress {
    wq *q;
    bool delayed; /* producers use short delays too */
    atomic_ulong seq;
    atomic_int inflight[S_KEYS];
    atomic_ulong last_add[S_KEYS];   /* seq taken just before the key's latest add; 0 = never */
    atomic_ulong last_start[S_KEYS]; /* seq taken just after a worker got the key */
    atomic_int violations;
    atomic_ulong processed;
    char names[S_KEYS][16];
} stress;

typedef struct stress_thread {
    stress *s;
    unsigned seed;
} stress_thread;

static void atomic_max(atomic_ulong *a, unsigned long v)
{
    unsigned long cur = atomic_load(a);
    while (cur < v && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

static int key_index(stress *s, const char *k)
{
    int i = atoi(k + 4);
    return (i >= 0 && i < S_KEYS && strcmp(s->names[i], k) == 0) ? i : -1;
}

static void *producer_main(void *arg)
{
    stress_thread *t = arg;
    stress *s = t->s;
    for (int n = 0; n < S_ADDS_EACH; n++) {
        int i = (int)(rand_r(&t->seed) % S_KEYS);
        unsigned long seq = atomic_fetch_add(&s->seq, 1) + 1;
        atomic_max(&s->last_add[i], seq);
        if (s->delayed && rand_r(&t->seed) % 4 == 0)
            wq_add_after(s->q, s->names[i], (rand_r(&t->seed) % 2000) / 1e6);
        else
            wq_add(s->q, s->names[i]);
        if (rand_r(&t->seed) % 64 == 0)
            sleep_s((rand_r(&t->seed) % 200) / 1e6);
    }
    return NULL;
}

static void *worker_main(void *arg)
{
    stress_thread *t = arg;
    stress *s = t->s;
    const char *k;
    while (wq_get(s->q, &k) == KC_OK) {
        int i = key_index(s, k);
        if (i < 0) {
            atomic_fetch_add(&s->violations, 1);
            wq_done(s->q, k);
            continue;
        }
        if (atomic_fetch_add(&s->inflight[i], 1) != 0)
            atomic_fetch_add(&s->violations, 1); /* two workers hold one key */
        atomic_max(&s->last_start[i], atomic_fetch_add(&s->seq, 1) + 1);
        if (rand_r(&t->seed) % 8 == 0)
            sleep_s((rand_r(&t->seed) % 300) / 1e6);
        atomic_fetch_add(&s->processed, 1);
        atomic_fetch_sub(&s->inflight[i], 1);
        wq_done(s->q, k);
    }
    return NULL;
}

static void run_stress(bool delayed)
{
    static stress s; /* large: keep it off the stack */
    memset(&s, 0, sizeof(s));
    s.q = new_queue();
    s.delayed = delayed;
    for (int i = 0; i < S_KEYS; i++)
        snprintf(s.names[i], sizeof(s.names[i]), "key-%d", i);
    pthread_t prod[S_PRODUCERS], work[S_WORKERS];
    stress_thread pt[S_PRODUCERS], wt[S_WORKERS];
    for (int i = 0; i < S_WORKERS; i++) {
        wt[i] = (stress_thread){&s, 1000u + (unsigned)i};
        pthread_create(&work[i], NULL, worker_main, &wt[i]);
    }
    for (int i = 0; i < S_PRODUCERS; i++) {
        pt[i] = (stress_thread){&s, 1u + (unsigned)i};
        pthread_create(&prod[i], NULL, producer_main, &pt[i]);
    }
    for (int i = 0; i < S_PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    /* Wait until the queue is idle: nothing waiting, delayed or held. */
    double deadline = pv_clock_monotonic() + 60;
    for (;;) {
        wq_stats st;
        wq_stats_get(s.q, &st);
        if (st.depth == 0 && st.processing == 0 && st.delayed == 0)
            break;
        cr_assert_lt(pv_clock_monotonic(), deadline, "queue never went idle");
        sleep_s(0.002);
    }
    wq_shutdown_drain(s.q);
    for (int i = 0; i < S_WORKERS; i++)
        pthread_join(work[i], NULL);

    cr_assert_eq(atomic_load(&s.violations), 0, "a key was processed by two workers at once");
    int added = 0;
    for (int i = 0; i < S_KEYS; i++) {
        unsigned long a = atomic_load(&s.last_add[i]), st = atomic_load(&s.last_start[i]);
        if (a == 0)
            continue;
        added++;
        cr_assert_gt(st, a, "key-%d: last add (seq %lu) not followed by a processing (last %lu)", i,
                     a, st);
    }
    cr_assert_eq(added, S_KEYS);
    unsigned long processed = atomic_load(&s.processed);
    cr_assert(processed >= S_KEYS && processed <= S_PRODUCERS * S_ADDS_EACH, "processed %lu",
              processed);
    wq_stats st;
    wq_stats_get(s.q, &st);
    cr_assert_eq(st.adds_total, processed); /* every counted add was handed out exactly once */
    wq_free(s.q);
}

Test(wq_stress, eight_producers_eight_workers_no_double_processing_no_lost_key, .timeout = 120)
{
    run_stress(false);
}

Test(wq_stress, delayed_adds_mixed_in_are_never_lost, .timeout = 120)
{
    run_stress(true);
}

/* ---- invariants (wq.c's top comment), checked by wq_check ------------------ */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(wq, invariants_hold_through_a_random_run_of_every_operation)
{
    wq *q = new_queue();
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char held[8][16];
    size_t n_held = 0;
    char key[16];
    for (int step = 0; step < 20000; step++) {
        snprintf(key, sizeof key, "k%u", (unsigned)(rng_next(&rng) % 24));
        switch (rng_next(&rng) % 7) {
        case 0:
            cr_assert_eq(wq_add(q, key), KC_OK);
            break;
        case 1: /* due at once or much later: both heap paths */
            cr_assert_eq(wq_add_after(q, key, rng_next(&rng) % 2 ? 0.0005 : 60), KC_OK);
            break;
        case 2:
            cr_assert_eq(wq_add_rate_limited(q, key, NULL), KC_OK);
            break;
        case 3:
            wq_forget(q, key);
            break;
        case 4:
            if (n_held < 8 && wq_len(q) > 0) {
                const char *k = must_get(q);
                snprintf(held[n_held++], sizeof held[0], "%s", k);
            }
            break;
        default:
            if (n_held > 0) {
                size_t i = rng_next(&rng) % n_held;
                wq_done(q, held[i]);
                memmove(held[i], held[--n_held], sizeof held[0]);
            }
            break;
        }
        const char *bad = wq_check(q);
        cr_assert_null(bad, "step %d: %s", step, bad ? bad : "");
    }
    wq_shutdown(q);
    cr_assert_null(wq_check(q), "after shutdown with %zu keys held", n_held);
    while (n_held > 0) {
        wq_done(q, held[--n_held]);
        const char *bad = wq_check(q);
        cr_assert_null(bad, "done after shutdown: %s", bad ? bad : "");
    }
    wq_stats st;
    wq_stats_get(q, &st);
    cr_assert_eq(st.processing, 0);
    cr_assert_eq(st.depth, 0, "nothing is dirty once shut down and drained");
    wq_free(q);
}
