/* Unit tests of src/manager/metrics: exposition format, escaping, concurrency. */
#include <criterion/criterion.h>

#include "kc_error.h"
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *render(met_registry *r)
{
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(met_render(r, &out, &len), 0);
    cr_assert_not_null(out);
    cr_assert_eq(strlen(out), len);
    return out;
}

static void assert_render(met_registry *r, const char *want)
{
    char *got = render(r);
    cr_assert_str_eq(got, want);
    free(got);
}

Test(metrics, counter_renders_help_type_and_sorted_children)
{
    met_registry *r = met_registry_new();
    met_vec *v;
    cr_assert_eq(
        met_counter_vec(r, "http_requests_total", "Total requests.", MET_L("method", "code"), &v),
        0);
    met_counter *post = met_counter_get(v, MET_L("POST", "500"));
    met_counter *get = met_counter_get(v, MET_L("GET", "200"));
    met_counter_inc(get);
    met_counter_inc(get);
    met_counter_add(get, 1);
    met_counter_inc(post);
    met_counter_add(post, -5); /* ignored: counters never go down */
    cr_assert_eq(met_counter_value(get), 3.0);
    /* Label pairs sorted by label name, children by values in that order. */
    assert_render(r, "# HELP http_requests_total Total requests.\n"
                     "# TYPE http_requests_total counter\n"
                     "http_requests_total{code=\"200\",method=\"GET\"} 3\n"
                     "http_requests_total{code=\"500\",method=\"POST\"} 1\n");
    met_registry_free(r);
}

Test(metrics, gauge_without_labels_and_float_formatting_like_go)
{
    met_registry *r = met_registry_new();
    met_vec *a, *b, *c, *d, *e;
    cr_assert_eq(met_gauge_vec(r, "g_a", "A.", NULL, &a), 0);
    cr_assert_eq(met_gauge_vec(r, "g_b", "B.", NULL, &b), 0);
    cr_assert_eq(met_gauge_vec(r, "g_c", "C.", NULL, &c), 0);
    cr_assert_eq(met_gauge_vec(r, "g_d", "D.", NULL, &d), 0);
    cr_assert_eq(met_gauge_vec(r, "g_e", "E.", NULL, &e), 0);
    met_gauge_set(met_gauge_get(a, NULL), 12345678);
    met_gauge_set(met_gauge_get(b, NULL), 0.005);
    met_gauge *gc = met_gauge_get(c, NULL);
    met_gauge_inc(gc);
    met_gauge_dec(gc);
    met_gauge_dec(gc);
    met_gauge_set(met_gauge_get(d, NULL), INFINITY);
    met_gauge_set(met_gauge_get(e, NULL), 100000);
    assert_render(r, "# HELP g_a A.\n# TYPE g_a gauge\ng_a 1.2345678e+07\n"
                     "# HELP g_b B.\n# TYPE g_b gauge\ng_b 0.005\n"
                     "# HELP g_c C.\n# TYPE g_c gauge\ng_c -1\n"
                     "# HELP g_d D.\n# TYPE g_d gauge\ng_d +Inf\n"
                     "# HELP g_e E.\n# TYPE g_e gauge\ng_e 100000\n");
    met_registry_free(r);
}

Test(metrics, histogram_buckets_are_cumulative_with_inf_sum_and_count)
{
    met_registry *r = met_registry_new();
    met_vec *v;
    const double b[] = {0.5, 1, 2};
    cr_assert_eq(met_histogram_vec(r, "op_seconds", "Op latency.", MET_L("op"), b, 3, &v), 0);
    met_histogram *h = met_histogram_get(v, MET_L("x"));
    met_histogram_observe(h, 0.25);
    met_histogram_observe(h, 0.5); /* le is inclusive */
    met_histogram_observe(h, 0.75);
    met_histogram_observe(h, 4);
    cr_assert_eq(met_histogram_count(h), 4);
    cr_assert_eq(met_histogram_sum(h), 5.5);
    assert_render(r, "# HELP op_seconds Op latency.\n"
                     "# TYPE op_seconds histogram\n"
                     "op_seconds_bucket{op=\"x\",le=\"0.5\"} 2\n"
                     "op_seconds_bucket{op=\"x\",le=\"1\"} 3\n"
                     "op_seconds_bucket{op=\"x\",le=\"2\"} 3\n"
                     "op_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"
                     "op_seconds_sum{op=\"x\"} 5.5\n"
                     "op_seconds_count{op=\"x\"} 4\n");
    met_registry_free(r);
}

Test(metrics, histogram_without_labels_renders_le_alone)
{
    met_registry *r = met_registry_new();
    met_vec *v;
    const double b[] = {1, INFINITY}; /* an explicit +Inf is folded into the implicit one */
    cr_assert_eq(met_histogram_vec(r, "h", "H.", NULL, b, 2, &v), 0);
    met_histogram_observe(met_histogram_get(v, NULL), 3);
    assert_render(r, "# HELP h H.\n# TYPE h histogram\n"
                     "h_bucket{le=\"1\"} 0\n"
                     "h_bucket{le=\"+Inf\"} 1\n"
                     "h_sum 3\n"
                     "h_count 1\n");
    met_registry_free(r);
}

Test(metrics, label_values_and_help_are_escaped)
{
    met_registry *r = met_registry_new();
    met_vec *v;
    cr_assert_eq(
        met_counter_vec(r, "esc_total", "Back\\slash and\nnewline \"quotes\".", MET_L("path"), &v),
        0);
    met_counter_inc(met_counter_get(v, MET_L("a\"b\\c\nd")));
    assert_render(r, "# HELP esc_total Back\\\\slash and\\nnewline \"quotes\".\n"
                     "# TYPE esc_total counter\n"
                     "esc_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
    met_registry_free(r);
}

Test(metrics, families_render_sorted_by_name_and_empty_ones_are_omitted)
{
    met_registry *r = met_registry_new();
    met_vec *z, *a, *empty;
    cr_assert_eq(met_counter_vec(r, "zeta_total", "Z.", NULL, &z), 0);
    cr_assert_eq(met_counter_vec(r, "alpha_total", "A.", NULL, &a), 0);
    cr_assert_eq(met_counter_vec(r, "middle_total", "M.", MET_L("k"), &empty), 0);
    met_counter_get(z, NULL);
    met_counter_get(a, NULL);
    assert_render(r, "# HELP alpha_total A.\n# TYPE alpha_total counter\nalpha_total 0\n"
                     "# HELP zeta_total Z.\n# TYPE zeta_total counter\nzeta_total 0\n");
    met_registry_free(r);
}

Test(metrics, registration_is_idempotent_and_conflicts_are_rejected)
{
    met_registry *r = met_registry_new();
    met_vec *a, *b, *c;
    cr_assert_eq(met_counter_vec(r, "x_total", "X.", MET_L("a", "b"), &a), 0);
    cr_assert_eq(met_counter_vec(r, "x_total", "X.", MET_L("a", "b"), &b), 0);
    cr_assert_eq(a, b);
    cr_assert_eq(met_counter_vec(r, "x_total", "X.", MET_L("a"), &c), KC_ERR_INVALID_ARG);
    cr_assert_eq(met_gauge_vec(r, "x_total", "X.", MET_L("a", "b"), &c), KC_ERR_INVALID_ARG);
    met_registry_free(r);
}

Test(metrics, invalid_names_and_wrong_label_counts_are_rejected)
{
    met_registry *r = met_registry_new();
    met_vec *v;
    const double b[] = {2, 1};
    cr_assert_eq(met_counter_vec(r, "9bad", "", NULL, &v), KC_ERR_INVALID_ARG);
    cr_assert_eq(met_counter_vec(r, "bad-name", "", NULL, &v), KC_ERR_INVALID_ARG);
    cr_assert_eq(met_counter_vec(r, "ok_total", "", MET_L("__reserved"), &v), KC_ERR_INVALID_ARG);
    cr_assert_eq(met_counter_vec(r, "ok_total", "", MET_L("a", "a"), &v), KC_ERR_INVALID_ARG);
    cr_assert_eq(met_histogram_vec(r, "h", "", MET_L("le"), NULL, 0, &v), KC_ERR_INVALID_ARG);
    cr_assert_eq(met_histogram_vec(r, "h", "", NULL, b, 2, &v), KC_ERR_INVALID_ARG);
    cr_assert_eq(met_counter_vec(r, "ok_total", "", MET_L("a", "b"), &v), 0);
    cr_assert_null(met_counter_get(v, MET_L("only-one")));
    cr_assert_null(met_counter_get(v, MET_L("1", "2", "3")));
    cr_assert_null(met_gauge_get(v, MET_L("1", "2"))); /* wrong type */
    cr_assert_not_null(met_counter_get(v, MET_L("1", "2")));
    met_counter_inc(NULL); /* NULL children are no-ops */
    met_histogram_observe(NULL, 1);
    met_registry_free(r);
}

Test(metrics, same_label_values_return_the_same_child)
{
    met_registry *r = met_registry_new();
    met_vec *v;
    cr_assert_eq(met_gauge_vec(r, "g", "", MET_L("a", "b"), &v), 0);
    /* Enough children to force several hash table resizes. */
    char x[16], y[16];
    met_gauge *first = NULL;
    for (int i = 0; i < 1000; i++) {
        snprintf(x, sizeof x, "%d", i);
        snprintf(y, sizeof y, "%d", i % 7);
        met_gauge *g = met_gauge_get(v, MET_L(x, y));
        cr_assert_not_null(g);
        met_gauge_set(g, i);
        if (i == 0)
            first = g;
    }
    /* ("ab","c") and ("a","bc") are different children. */
    met_gauge *g1 = met_gauge_get(v, MET_L("ab", "c"));
    met_gauge *g2 = met_gauge_get(v, MET_L("a", "bc"));
    cr_assert_neq(g1, g2);
    cr_assert_eq(met_gauge_get(v, MET_L("0", "0")), first);
    cr_assert_eq(met_gauge_value(met_gauge_get(v, MET_L("999", "5"))), 999);
    met_registry_free(r);
}

#define NTHREADS 8
#define NITER 50000

typedef struct hammer_arg {
    met_vec *counters;
    met_vec *hist;
    int id;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *a = p;
    met_counter *shared = met_counter_get(a->counters, MET_L("shared"));
    met_histogram *h = met_histogram_get(a->hist, NULL);
    char own[16];
    for (int i = 0; i < NITER; i++) {
        met_counter_inc(shared);
        met_histogram_observe(h, (double)(i % 4));
        /* Lookups and creation of new children race with the increments. */
        snprintf(own, sizeof own, "t%d-%d", a->id, i % 50);
        met_counter_inc(met_counter_get(a->counters, MET_L(own)));
    }
    return NULL;
}

Test(metrics, concurrent_increments_from_8_threads_sum_exactly)
{
    met_registry *r = met_registry_new();
    met_vec *c, *h;
    const double b[] = {0.5, 1.5, 2.5};
    cr_assert_eq(met_counter_vec(r, "c_total", "", MET_L("who"), &c), 0);
    cr_assert_eq(met_histogram_vec(r, "h", "", NULL, b, 3, &h), 0);
    pthread_t t[NTHREADS];
    hammer_arg args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (hammer_arg){c, h, i};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, &args[i]), 0);
    }
    /* Render concurrently too: it must not crash or deadlock. */
    for (int i = 0; i < 20; i++) {
        char *out = NULL;
        cr_assert_eq(met_render(r, &out, NULL), 0);
        free(out);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(met_counter_value(met_counter_get(c, MET_L("shared"))), NTHREADS * NITER);
    cr_assert_eq(met_counter_value(met_counter_get(c, MET_L("t3-7"))), NITER / 50);
    met_histogram *hh = met_histogram_get(h, NULL);
    cr_assert_eq(met_histogram_count(hh), (uint64_t)NTHREADS * NITER);
    /* Each thread observes 0,1,2,3 repeatedly: the sum is exact in doubles. */
    cr_assert_eq(met_histogram_sum(hh), (double)NTHREADS * (NITER / 4) * 6);
    char *out = render(r);
    cr_assert_not_null(strstr(out, "h_bucket{le=\"0.5\"} 100000\n"));
    cr_assert_not_null(strstr(out, "h_bucket{le=\"+Inf\"} 400000\n"));
    cr_assert_not_null(strstr(out, "h_count 400000\n"));
    free(out);
    met_registry_free(r);
}

Test(metrics, controller_runtime_families_have_upstream_names_and_buckets)
{
    met_registry *r = met_registry_new();
    met_cr m;
    cr_assert_eq(met_cr_register(r, &m), 0);
    cr_assert_eq(met_cr_register(r, &m), 0); /* idempotent */
    cr_assert_eq(met_cr_init_controller(&m, "ippool", 4), 0);
    met_histogram_observe(
        met_histogram_get(m.workqueue_queue_duration_seconds, MET_L("ippool", "ippool")), 0.002);
    met_histogram_observe(met_histogram_get(m.reconcile_time_seconds, MET_L("ippool")), 0.012);
    met_counter_inc(met_counter_get(m.rest_client_requests_total, MET_L("200", "GET", "h:6443")));
    met_gauge_set(met_gauge_get(m.leader_election_master_status, MET_L("provisio")), 1);
    char *out = render(r);
    const char *want[] = {
        "# HELP controller_runtime_reconcile_total Total number of reconciliations per "
        "controller\n# TYPE controller_runtime_reconcile_total counter\n"
        "controller_runtime_reconcile_total{controller=\"ippool\",result=\"error\"} 0\n"
        "controller_runtime_reconcile_total{controller=\"ippool\",result=\"requeue\"} 0\n"
        "controller_runtime_reconcile_total{controller=\"ippool\",result=\"requeue_after\"} 0\n"
        "controller_runtime_reconcile_total{controller=\"ippool\",result=\"success\"} 0\n",
        "controller_runtime_max_concurrent_reconciles{controller=\"ippool\"} 4\n",
        "controller_runtime_active_workers{controller=\"ippool\"} 0\n",
        "controller_runtime_reconcile_errors_total{controller=\"ippool\"} 0\n",
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"ippool\",le=\"0.01\"} 0\n"
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"ippool\",le=\"0.025\"} 1\n",
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"ippool\",le=\"60\"} 1\n"
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"ippool\",le=\"+Inf\"} 1\n",
        /* client-go's ExponentialBuckets(10e-9, 10, 12) as Go prints them. */
        "workqueue_queue_duration_seconds_bucket{controller=\"ippool\",name=\"ippool\",le=\"1e-"
        "08\"} "
        "0\n",
        "le=\"1e-07\"} 0\n",
        "le=\"1e-06\"} 0\n",
        "le=\"9.999999999999999e-06\"} 0\n",
        "le=\"0.001\"} 0\n",
        "le=\"0.01\"} 1\n",
        "le=\"1000\"} 1\n",
        "rest_client_requests_total{code=\"200\",host=\"h:6443\",method=\"GET\"} 1\n",
        "# HELP leader_election_master_status Gauge of if the reporting system is master of the "
        "relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to "
        "identify the lease. Please make sure to group by name.\n",
        "leader_election_master_status{name=\"provisio\"} 1\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect_not_null(strstr(out, want[i]), "missing: %s", want[i]);
    /* workqueue_depth has no child yet, so it is not rendered at all. */
    cr_assert_null(strstr(out, "workqueue_depth"));
    free(out);
    met_registry_free(r);
}

static double sample_value(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    cr_assert_not_null(p, "no sample %s", name);
    return strtod(p + strlen(key), NULL);
}

Test(metrics, process_metrics_are_read_from_proc_at_scrape_time)
{
    met_registry *r = met_registry_new();
    cr_assert_eq(met_register_process_metrics(r), 0);
    cr_assert_eq(met_register_process_metrics(r), 0); /* collector added once */
    char *out = render(r);
    double rss = sample_value(out, "process_resident_memory_bytes");
    double start = sample_value(out, "process_start_time_seconds");
    double fds = sample_value(out, "process_open_fds");
    double cpu = sample_value(out, "process_cpu_seconds_total");
    cr_assert_gt(rss, 1024 * 1024);
    cr_assert_gt(fds, 2);
    cr_assert_geq(cpu, 0);
    double now = (double)time(NULL);
    cr_assert(start > now - 3600 && start <= now + 1, "start time %f vs now %f", start, now);
    free(out);
    met_registry_free(r);
}

Test(metrics, default_registry_is_shared_and_can_be_freed)
{
    met_registry *a = met_default();
    cr_assert_not_null(a);
    cr_assert_eq(met_default(), a);
    met_vec *v;
    cr_assert_eq(met_counter_vec(a, "d_total", "", NULL, &v), 0);
    met_default_free();
    met_registry *b = met_default();
    cr_assert_not_null(b);
    char *out = render(b);
    cr_assert_str_eq(out, ""); /* a fresh, empty registry */
    free(out);
    met_default_free();
}
