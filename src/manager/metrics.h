/*
 * metrics - a small Prometheus registry with text exposition format 0.0.4.
 *
 * A registry holds metric families (a "vec": name, help, type and a fixed
 * list of label names). A family has one child per combination of label
 * values; a child is what you increment, set or observe. Children are
 * created on first use and live until the registry is freed, so a caller may
 * look a child up once and keep the pointer (the hot path is then a single
 * atomic operation):
 *
 *   met_counter *ok = met_counter_get(m.reconcile_total, MET_L("ippool", "success"));
 *   met_counter_inc(ok);
 *
 * Output (met_render) matches what Go's client_golang writes, so dashboards
 * and recording rules built for controller-runtime work unchanged: families
 * sorted by name, label pairs sorted by label name, children sorted by their
 * label values, numbers formatted like Go's strconv 'g' shortest form
 * ("1e-08", "0.005", "1.2345678e+07"), families without children omitted.
 *
 * Threading: every function may be called from any thread. Registration and
 * the first lookup of a child take locks; updating a child is lock-free
 * (atomics). met_render takes the registry lock; values it reads may be from
 * slightly different instants (a histogram's _sum may trail its _count by an
 * observation in flight; _count always equals the +Inf bucket).
 *
 * Errors: int returns are 0 or a negative kc_status (KC_ERR_NOMEM,
 * KC_ERR_INVALID_ARG).
 */
#ifndef PROVISIO_METRICS_H
#define PROVISIO_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct met_registry met_registry;
typedef struct met_vec met_vec;             /* a metric family */
typedef struct met_counter met_counter;     /* a child of a counter family */
typedef struct met_gauge met_gauge;         /* a child of a gauge family */
typedef struct met_histogram met_histogram; /* a child of a histogram family */

typedef enum met_type {
    MET_COUNTER,
    MET_GAUGE,
    MET_HISTOGRAM,
} met_type;

/* Label values for a lookup: met_counter_get(v, MET_L("a", "b")). */
#define MET_L(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- registries ---------------------------------------------------------- */

/* A new empty registry, or NULL when out of memory. Free with met_registry_free. */
met_registry *met_registry_new(void);

/*
 * Free r, its families and children (every met_vec / child pointer obtained
 * from it becomes invalid). NULL is a no-op. No other thread may use r.
 */
void met_registry_free(met_registry *r);

/*
 * The process-wide default registry, created on first call (NULL only when
 * out of memory). The manager registers everything here and /metrics
 * renders it. Borrowed: valid until met_default_free.
 */
met_registry *met_default(void);

/* Free the default registry (end of main, or between tests). No other thread may use it. */
void met_default_free(void);

/* ---- families ------------------------------------------------------------ */

/*
 * Register a family in r. name must match [a-zA-Z_:][a-zA-Z0-9_:]*; labels is
 * a NULL-terminated array of label names ([a-zA-Z_][a-zA-Z0-9_]*, not
 * starting with "__", and not "le" for histograms), or NULL for none. help
 * is any text. All strings are copied.
 *
 * Registering a name that exists returns the existing family when type,
 * labels (and buckets) are the same, so registration is idempotent; a
 * conflicting definition is KC_ERR_INVALID_ARG.
 *
 * *out is borrowed from r and valid until r is freed.
 */
int met_counter_vec(met_registry *r, const char *name, const char *help, const char *const *labels,
                    met_vec **out);
int met_gauge_vec(met_registry *r, const char *name, const char *help, const char *const *labels,
                  met_vec **out);

/*
 * Histogram family with nbuckets strictly increasing upper bounds (a last
 * +Inf bound may be given or not: the +Inf bucket always exists). Bounds are
 * copied.
 */
int met_histogram_vec(met_registry *r, const char *name, const char *help,
                      const char *const *labels, const double *buckets, size_t nbuckets,
                      met_vec **out);

/* Fill out[0..count) with start, start*factor, ... (Go's ExponentialBuckets). */
void met_exponential_buckets(double start, double factor, size_t count, double *out);

met_type met_vec_type(const met_vec *v);
const char *met_vec_name(const met_vec *v);

/* ---- children ------------------------------------------------------------ */

/*
 * The child of v for these label values (NULL-terminated, exactly as many as
 * v has label names, in the order they were registered; NULL for a family
 * without labels), created at zero on first use. Values are copied.
 * Returns NULL when v has another type, the count is wrong, or memory ran
 * out. The pointer is borrowed from v's registry; keep it as long as you
 * like until the registry is freed.
 *
 * Every update function below accepts NULL and then does nothing, so an
 * out-of-memory lookup degrades to a lost sample, never a crash.
 */
met_counter *met_counter_get(met_vec *v, const char *const *values);
met_gauge *met_gauge_get(met_vec *v, const char *const *values);
met_histogram *met_histogram_get(met_vec *v, const char *const *values);

void met_counter_inc(met_counter *c);
/* Add delta >= 0 (a negative or NaN delta is ignored: counters never go down). */
void met_counter_add(met_counter *c, double delta);
/*
 * Overwrite the value. Only for collectors that mirror a monotonic counter
 * kept elsewhere (the kernel's CPU time); never for normal counting.
 */
void met_counter_set(met_counter *c, double value);
double met_counter_value(const met_counter *c);

void met_gauge_set(met_gauge *g, double value);
void met_gauge_add(met_gauge *g, double delta);
void met_gauge_inc(met_gauge *g);
void met_gauge_dec(met_gauge *g);
double met_gauge_value(const met_gauge *g);

void met_histogram_observe(met_histogram *h, double value);
uint64_t met_histogram_count(const met_histogram *h);
double met_histogram_sum(const met_histogram *h);

/* ---- collectors and rendering -------------------------------------------- */

/*
 * Call fn(ud) at the start of every met_render of r, with r's render lock
 * held (collectors of one registry never run concurrently). A collector
 * refreshes gauges/counters from somewhere else (/proc/self). It must not
 * register families or render. ud is borrowed until r is freed.
 */
int met_add_collector(met_registry *r, void (*fn)(void *ud), void *ud);

/*
 * Render r in the Prometheus text format 0.0.4. *out is a NUL-terminated
 * heap string owned by the caller (free()); *out_len its length (may be
 * NULL). Returns 0 or KC_ERR_NOMEM (then *out is NULL).
 */
int met_render(met_registry *r, char **out, size_t *out_len);

/* Content-Type of met_render's output. */
#define MET_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- the families controller-runtime / client-go register ---------------- */

/*
 * process_cpu_seconds_total, process_open_fds, process_max_fds,
 * process_virtual_memory_bytes, process_virtual_memory_max_bytes,
 * process_resident_memory_bytes, process_start_time_seconds: the Prometheus
 * process collector's names and help, read from /proc/self at scrape time.
 */
int met_register_process_metrics(met_registry *r);

/*
 * The families of controller-runtime (v0.19 names, help texts, label sets
 * and buckets) that provisio feeds. Pointers are borrowed from the registry.
 */
typedef struct met_cr {
    /* pkg/internal/controller/metrics */
    met_vec *reconcile_total;                 /* counter {controller,result} */
    met_vec *reconcile_errors_total;          /* counter {controller} */
    met_vec *terminal_reconcile_errors_total; /* counter {controller} */
    met_vec *reconcile_time_seconds;          /* histogram {controller} */
    met_vec *max_concurrent_reconciles;       /* gauge {controller} */
    met_vec *active_workers;                  /* gauge {controller} */
    /* pkg/metrics/workqueue.go (client-go's workqueue provider) */
    met_vec *workqueue_depth;                             /* gauge {name,controller} */
    met_vec *workqueue_adds_total;                        /* counter {name,controller} */
    met_vec *workqueue_queue_duration_seconds;            /* histogram {name,controller} */
    met_vec *workqueue_work_duration_seconds;             /* histogram {name,controller} */
    met_vec *workqueue_unfinished_work_seconds;           /* gauge {name,controller} */
    met_vec *workqueue_longest_running_processor_seconds; /* gauge {name,controller} */
    met_vec *workqueue_retries_total;                     /* counter {name,controller} */
    /* pkg/metrics/leaderelection.go */
    met_vec *leader_election_master_status; /* gauge {name} */
    /* pkg/metrics/client_go_adapter.go */
    met_vec *rest_client_requests_total; /* counter {code,method,host} */
} met_cr;

/* Values of the "result" label of controller_runtime_reconcile_total. */
#define MET_RESULT_SUCCESS "success"
#define MET_RESULT_ERROR "error"
#define MET_RESULT_REQUEUE "requeue"
#define MET_RESULT_REQUEUE_AFTER "requeue_after"

/*
 * Register all of the above plus the process metrics in r and fill *out.
 * Idempotent for the same registry.
 */
int met_cr_register(met_registry *r, met_cr *out);

/*
 * What controller-runtime does when a controller starts: create the
 * reconcile_total children for all four results, the error counters at 0,
 * active_workers at 0 and max_concurrent_reconciles at max_concurrent, so the
 * series exist before the first reconcile.
 */
int met_cr_init_controller(const met_cr *m, const char *controller, int max_concurrent);

#endif
