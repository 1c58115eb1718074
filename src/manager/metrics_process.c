/*
 * metrics_process - the process_* collector (from /proc, as client_golang's
 * process collector) and the controller-runtime families (part of metrics;
 * see metrics.c for the registry, metrics_internal.h for what is shared).
 */
#include "metrics_internal.h"

#include "kc_error.h"
#include "pv_strbuf.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- process metrics ----------------------------------------------------- */

typedef struct proc_metrics {
    met_counter *cpu;
    met_gauge *open_fds, *max_fds, *vmem, *vmem_max, *rss, *start;
    double start_time; /* 0 until read */
} proc_metrics;

/* Read a whole small /proc file into a heap string (NULL on failure). */
static char *read_proc_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    pv_strbuf b = {0};
    char chunk[512];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        pv_strbuf_addn(&b, chunk, n);
    fclose(f);
    if (!b.p) { /* an empty file, or no memory for the first chunk */
        pv_strbuf_free(&b);
        return NULL;
    }
    return pv_strbuf_take(&b, NULL); /* NULL on oom */
}

/* Boot time in seconds since the epoch, from /proc/stat's btime line. */
static double boot_time(void)
{
    char *s = read_proc_file("/proc/stat");
    if (!s)
        return 0;
    double bt = 0;
    const char *p = strstr(s, "\nbtime ");
    if (p)
        bt = strtod(p + 7, NULL);
    free(s);
    return bt;
}

static void proc_collect(void *ud)
{
    proc_metrics *pm = ud;
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    char *stat = read_proc_file("/proc/self/stat");
    /* Fields after the command name, which may hold spaces and parens. */
    const char *p = stat ? strrchr(stat, ')') : NULL;
    if (p && ticks > 0) {
        p += 2; /* ") " */
        unsigned long long f[22] = {0};
        size_t nf = 0;
        while (*p && nf < 22) {
            char *end;
            f[nf++] = strtoull(p, &end, 10); /* field 3 (state) parses as 0 */
            p = end;
            while (*p && *p != ' ')
                p++;
            while (*p == ' ')
                p++;
        }
        if (nf >= 22) {
            /* man 5 proc: utime 14, stime 15, starttime 22, vsize 23, rss 24. */
            met_counter_set(pm->cpu, (double)(f[11] + f[12]) / (double)ticks);
            met_gauge_set(pm->vmem, (double)f[20]);
            met_gauge_set(pm->rss, (double)f[21] * (double)page);
            if (pm->start_time == 0) {
                double bt = boot_time();
                if (bt > 0)
                    pm->start_time = bt + (double)f[19] / (double)ticks;
            }
            met_gauge_set(pm->start, pm->start_time);
        }
    }
    free(stat);

    DIR *d = opendir("/proc/self/fd");
    if (d) {
        double n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        met_gauge_set(pm->open_fds, n);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        met_gauge_set(pm->max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
    if (getrlimit(RLIMIT_AS, &rl) == 0)
        met_gauge_set(pm->vmem_max, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

int met_register_process_metrics(met_registry *r)
{
    if (!r)
        return KC_ERR_INVALID_ARG;
    met_vec *cpu, *open_fds, *max_fds, *vmem, *vmem_max, *rss, *start;
    int rc;
    if ((rc = met_counter_vec(r, "process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.", NULL, &cpu)) ||
        (rc = met_gauge_vec(r, "process_open_fds", "Number of open file descriptors.", NULL,
                            &open_fds)) ||
        (rc = met_gauge_vec(r, "process_max_fds", "Maximum number of open file descriptors.", NULL,
                            &max_fds)) ||
        (rc = met_gauge_vec(r, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                            NULL, &vmem)) ||
        (rc = met_gauge_vec(r, "process_virtual_memory_max_bytes",
                            "Maximum amount of virtual memory available in bytes.", NULL,
                            &vmem_max)) ||
        (rc = met_gauge_vec(r, "process_resident_memory_bytes", "Resident memory size in bytes.",
                            NULL, &rss)) ||
        (rc =
             met_gauge_vec(r, "process_start_time_seconds",
                           "Start time of the process since unix epoch in seconds.", NULL, &start)))
        return rc;
    proc_metrics *pm = calloc(1, sizeof *pm);
    if (!pm)
        return KC_ERR_NOMEM;
    pm->cpu = met_counter_get(cpu, NULL);
    pm->open_fds = met_gauge_get(open_fds, NULL);
    pm->max_fds = met_gauge_get(max_fds, NULL);
    pm->vmem = met_gauge_get(vmem, NULL);
    pm->vmem_max = met_gauge_get(vmem_max, NULL);
    pm->rss = met_gauge_get(rss, NULL);
    pm->start = met_gauge_get(start, NULL);
    if (!pm->cpu || !pm->open_fds || !pm->max_fds || !pm->vmem || !pm->vmem_max || !pm->rss ||
        !pm->start) {
        free(pm);
        return KC_ERR_NOMEM;
    }
    return metrics_add_collector(r, proc_collect, pm, free);
}

/* ---- controller-runtime families ----------------------------------------- */

/* controller-runtime's buckets for controller_runtime_reconcile_time_seconds. */
static const double reconcile_time_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1,  0.15, 0.2,  0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6,
    0.7,   0.8,  0.9,   1.0,  1.25, 1.5,  1.75, 2.0,  2.5, 3.0,  3.5, 4.0,  4.5, 5,
    6,     7,    8,     9,    10,   15,   20,   25,   30,  40,   50,  60};

int met_cr_register(met_registry *r, met_cr *m)
{
    if (!r || !m)
        return KC_ERR_INVALID_ARG;
    static const char *const ctrl[] = {"controller", NULL};
    static const char *const ctrl_result[] = {"controller", "result", NULL};
    static const char *const wq[] = {"name", "controller", NULL};
    static const char *const name[] = {"name", NULL};
    static const char *const rest[] = {"code", "method", "host", NULL};
    /* client-go workqueue buckets: prometheus.ExponentialBuckets(10e-9, 10, 12). */
    double wq_buckets[12];
    met_exponential_buckets(10e-9, 10, 12, wq_buckets);
    size_t nrt = sizeof reconcile_time_buckets / sizeof reconcile_time_buckets[0];
    int rc;
    memset(m, 0, sizeof *m);
    if ((rc = met_counter_vec(r, "controller_runtime_reconcile_total",
                              "Total number of reconciliations per controller", ctrl_result,
                              &m->reconcile_total)) ||
        (rc = met_counter_vec(r, "controller_runtime_reconcile_errors_total",
                              "Total number of reconciliation errors per controller", ctrl,
                              &m->reconcile_errors_total)) ||
        (rc = met_counter_vec(r, "controller_runtime_terminal_reconcile_errors_total",
                              "Total number of terminal reconciliation errors per controller", ctrl,
                              &m->terminal_reconcile_errors_total)) ||
        (rc = met_histogram_vec(r, "controller_runtime_reconcile_time_seconds",
                                "Length of time per reconciliation per controller", ctrl,
                                reconcile_time_buckets, nrt, &m->reconcile_time_seconds)) ||
        (rc = met_gauge_vec(r, "controller_runtime_max_concurrent_reconciles",
                            "Maximum number of concurrent reconciles per controller", ctrl,
                            &m->max_concurrent_reconciles)) ||
        (rc = met_gauge_vec(r, "controller_runtime_active_workers",
                            "Number of currently used workers per controller", ctrl,
                            &m->active_workers)) ||
        (rc = met_gauge_vec(r, "workqueue_depth", "Current depth of workqueue", wq,
                            &m->workqueue_depth)) ||
        (rc =
             met_counter_vec(r, "workqueue_adds_total", "Total number of adds handled by workqueue",
                             wq, &m->workqueue_adds_total)) ||
        (rc = met_histogram_vec(
             r, "workqueue_queue_duration_seconds",
             "How long in seconds an item stays in workqueue before being requested", wq,
             wq_buckets, 12, &m->workqueue_queue_duration_seconds)) ||
        (rc = met_histogram_vec(r, "workqueue_work_duration_seconds",
                                "How long in seconds processing an item from workqueue takes.", wq,
                                wq_buckets, 12, &m->workqueue_work_duration_seconds)) ||
        (rc = met_gauge_vec(r, "workqueue_unfinished_work_seconds",
                            "How many seconds of work has been done that is in progress and "
                            "hasn't been observed by work_duration. Large values indicate stuck "
                            "threads. One can deduce the number of stuck threads by observing "
                            "the rate at which this increases.",
                            wq, &m->workqueue_unfinished_work_seconds)) ||
        (rc = met_gauge_vec(r, "workqueue_longest_running_processor_seconds",
                            "How many seconds has the longest running processor for workqueue "
                            "been running.",
                            wq, &m->workqueue_longest_running_processor_seconds)) ||
        (rc = met_counter_vec(r, "workqueue_retries_total",
                              "Total number of retries handled by workqueue", wq,
                              &m->workqueue_retries_total)) ||
        (rc = met_gauge_vec(r, "leader_election_master_status",
                            "Gauge of if the reporting system is master of the relevant lease, 0 "
                            "indicates backup, 1 indicates master. 'name' is the string used to "
                            "identify the lease. Please make sure to group by name.",
                            name, &m->leader_election_master_status)) ||
        (rc = met_counter_vec(r, "rest_client_requests_total",
                              "Number of HTTP requests, partitioned by status code, method, and "
                              "host.",
                              rest, &m->rest_client_requests_total)))
        return rc;
    return met_register_process_metrics(r);
}

int met_cr_init_controller(const met_cr *m, const char *controller, int max_concurrent)
{
    if (!m || !controller)
        return KC_ERR_INVALID_ARG;
    static const char *const results[] = {MET_RESULT_SUCCESS, MET_RESULT_ERROR, MET_RESULT_REQUEUE,
                                          MET_RESULT_REQUEUE_AFTER};
    for (size_t i = 0; i < 4; i++)
        if (!met_counter_get(m->reconcile_total, MET_L(controller, results[i])))
            return KC_ERR_NOMEM;
    if (!met_counter_get(m->reconcile_errors_total, MET_L(controller)) ||
        !met_counter_get(m->terminal_reconcile_errors_total, MET_L(controller)))
        return KC_ERR_NOMEM;
    met_gauge *active = met_gauge_get(m->active_workers, MET_L(controller));
    met_gauge *maxc = met_gauge_get(m->max_concurrent_reconciles, MET_L(controller));
    if (!active || !maxc)
        return KC_ERR_NOMEM;
    met_gauge_set(active, 0);
    met_gauge_set(maxc, max_concurrent);
    return 0;
}
