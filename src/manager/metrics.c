/*
 * metrics - Prometheus registry and text exposition (see metrics.h).
 *
 * Layout: a registry keeps its families in an array sorted by name (so
 * rendering needs no sort of families) behind one mutex, which is also held
 * for the whole of a render so collectors never run concurrently. A family
 * (met_vec) keeps its children in an open-addressing hash table of child
 * pointers keyed by the label values, behind a rwlock: lookups of existing
 * children take it shared, the first use of a label combination takes it
 * exclusive. Children are allocated one by one and never moved or freed
 * before the registry, which is what lets callers cache child pointers and
 * lets the renderer copy the child list and drop the lock before formatting.
 *
 * Values: counters and gauges keep their double as bits in an atomic
 * uint64; add is a compare-and-swap loop (what client_golang does). A
 * histogram child keeps one atomic count per bucket (non-cumulative: an
 * observation touches one bucket) and its sum as atomic double bits; the
 * cumulative counts and _count are computed at render time, so _count always
 * equals the +Inf bucket.
 *
 * Numbers are printed like Go's strconv.FormatFloat(v, 'g', -1, 64): the
 * shortest decimal that reads back to the same double, in exponent form when
 * the decimal exponent is < -4 or >= 6 (Go's rule for the shortest 'g'). This
 * keeps our output byte for byte comparable to a Go exporter's (le="1e-08",
 * 1.2345678e+07).
 */
#include "metrics.h"

#include "kc_error.h"
#include "pv_strbuf.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- internal types ------------------------------------------------------ */

typedef struct met_child {
    const struct met_vec *vec; /* owning family (bounds of a histogram) */
    uint64_t hash;
    char **values;              /* nlabels copies, registration order */
    _Atomic uint64_t val;       /* counter/gauge value or histogram sum, as double bits */
    _Atomic uint64_t buckets[]; /* histogram only: nbounds + 1 (last is +Inf) */
} met_child;

struct met_vec {
    char *name;
    char *help;
    met_type type;
    size_t nlabels;
    char **labels;  /* registration order */
    size_t *order;  /* label indices sorted by label name (output order) */
    double *bounds; /* histogram upper bounds without +Inf */
    size_t nbounds;

    pthread_rwlock_t lock; /* guards slots, nslots, children, nchildren */
    met_child **slots;     /* open addressing, power-of-two size */
    size_t nslots;
    met_child **children; /* creation order, for rendering */
    size_t nchildren, capchildren;
};

typedef struct collector {
    void (*fn)(void *ud);
    void *ud;
    void (*free_ud)(void *ud); /* NULL: ud is borrowed */
} collector;

struct met_registry {
    pthread_mutex_t mu; /* guards everything below; held during render */
    met_vec **fams;     /* sorted by name */
    size_t nfams, capfams;
    collector *collectors;
    size_t ncollectors, capcollectors;
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double delta)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    for (;;) {
        uint64_t nv = dbits(bitsd(old) + delta);
        if (atomic_compare_exchange_weak_explicit(a, &old, nv, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

static bool valid_metric_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool valid_label_name(const char *s)
{
    if (!s || !*s || strncmp(s, "__", 2) == 0)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++) {
            h ^= *p;
            h *= 1099511628211ULL;
        }
        h ^= 0xFF; /* separator: ("ab","c") and ("a","bc") differ */
        h *= 1099511628211ULL;
    }
    return h;
}

/* ---- text exposition escaping (on pv_strbuf, oom sticky) ------------------ */

/* HELP text: backslash and newline escaped. */
static void tb_help(pv_strbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            pv_strbuf_add(b, "\\\\");
        else if (*p == '\n')
            pv_strbuf_add(b, "\\n");
        else
            pv_strbuf_addn(b, p, 1);
    }
}

/* Label value: backslash, double quote and newline escaped. */
static void tb_label_value(pv_strbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            pv_strbuf_add(b, "\\\\");
        else if (*p == '"')
            pv_strbuf_add(b, "\\\"");
        else if (*p == '\n')
            pv_strbuf_add(b, "\\n");
        else
            pv_strbuf_addn(b, p, 1);
    }
}

/*
 * Go's strconv.FormatFloat(v, 'g', -1, 64) into buf (>= 32 bytes): find the
 * fewest significant digits that round-trip, then use %e form when the
 * decimal exponent is < -4 or >= 6 (Go's rule for the shortest 'g'),
 * otherwise plain decimal with exactly those digits.
 */
static void fmt_go_float(double v, char *buf, size_t size)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        snprintf(buf, size, signbit(v) ? "-0" : "0");
        return;
    }
    /* Integers below 2^53 (the usual counter) print directly when short. */
    if (v == floor(v) && fabs(v) < 1e6) {
        snprintf(buf, size, "%.0f", v);
        return;
    }
    char e[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v)
            break;
    }
    if (prec > 17)
        prec = 17;
    const char *ep = strchr(e, 'e');
    int exp10 = ep ? atoi(ep + 1) : 0;
    if (exp10 < -4 || exp10 >= 6) {
        snprintf(buf, size, "%s", e);
        return;
    }
    int decimals = prec - 1 - exp10;
    if (decimals < 0)
        decimals = 0;
    snprintf(buf, size, "%.*f", decimals, v);
}

static void tb_float(pv_strbuf *b, double v)
{
    char tmp[48];
    fmt_go_float(v, tmp, sizeof tmp);
    pv_strbuf_add(b, tmp);
}

/* ---- registry -------------------------------------------------------------- */

static void vec_free(met_vec *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nchildren; i++) {
        met_child *c = v->children[i];
        for (size_t j = 0; j < v->nlabels; j++)
            free(c->values[j]);
        free(c->values);
        free(c);
    }
    free(v->children);
    free(v->slots);
    for (size_t i = 0; i < v->nlabels; i++)
        free(v->labels[i]);
    free(v->labels);
    free(v->order);
    free(v->bounds);
    free(v->name);
    free(v->help);
    pthread_rwlock_destroy(&v->lock);
    free(v);
}

met_registry *met_registry_new(void)
{
    met_registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void met_registry_free(met_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nfams; i++)
        vec_free(r->fams[i]);
    free(r->fams);
    for (size_t i = 0; i < r->ncollectors; i++)
        if (r->collectors[i].free_ud)
            r->collectors[i].free_ud(r->collectors[i].ud);
    free(r->collectors);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static pthread_mutex_t g_default_mu = PTHREAD_MUTEX_INITIALIZER;
static met_registry *g_default;

met_registry *met_default(void)
{
    pthread_mutex_lock(&g_default_mu);
    if (!g_default)
        g_default = met_registry_new();
    met_registry *r = g_default;
    pthread_mutex_unlock(&g_default_mu);
    return r;
}

void met_default_free(void)
{
    pthread_mutex_lock(&g_default_mu);
    met_registry *r = g_default;
    g_default = NULL;
    pthread_mutex_unlock(&g_default_mu);
    met_registry_free(r);
}

/*
 * Add a collector; when free_ud is set, r owns ud from now on (also on
 * failure). A collector whose fn is already registered is not added twice.
 */
static int add_collector(met_registry *r, void (*fn)(void *ud), void *ud, void (*free_ud)(void *ud))
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (free_ud) {
        for (size_t i = 0; i < r->ncollectors; i++) {
            if (r->collectors[i].fn == fn) {
                free_ud(ud);
                goto out;
            }
        }
    }
    if (r->ncollectors == r->capcollectors) {
        size_t cap = r->capcollectors ? r->capcollectors * 2 : 4;
        collector *nc = realloc(r->collectors, cap * sizeof *nc);
        if (!nc) {
            if (free_ud)
                free_ud(ud);
            rc = KC_ERR_NOMEM;
            goto out;
        }
        r->collectors = nc;
        r->capcollectors = cap;
    }
    r->collectors[r->ncollectors++] = (collector){fn, ud, free_ud};
out:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int met_add_collector(met_registry *r, void (*fn)(void *ud), void *ud)
{
    if (!r || !fn)
        return KC_ERR_INVALID_ARG;
    return add_collector(r, fn, ud, NULL);
}

/* Comparison context for sorting label indices by name. */
static int cmp_label_idx(const void *a, const void *b, void *arg)
{
    char **labels = arg;
    return strcmp(labels[*(const size_t *)a], labels[*(const size_t *)b]);
}

/* True when an existing family has exactly this definition. */
static bool same_definition(const met_vec *v, met_type type, const char *const *labels,
                            size_t nlabels, const double *bounds, size_t nbounds)
{
    if (v->type != type || v->nlabels != nlabels || v->nbounds != nbounds)
        return false;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(v->labels[i], labels[i]) != 0)
            return false;
    for (size_t i = 0; i < nbounds; i++)
        if (v->bounds[i] != bounds[i])
            return false;
    return true;
}

static int vec_register(met_registry *r, met_type type, const char *name, const char *help,
                        const char *const *labels, const double *buckets, size_t nbuckets,
                        met_vec **out)
{
    if (!r || !out || !valid_metric_name(name))
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    size_t nlabels = 0;
    if (labels) {
        while (labels[nlabels]) {
            if (!valid_label_name(labels[nlabels]))
                return KC_ERR_INVALID_ARG;
            if (type == MET_HISTOGRAM && strcmp(labels[nlabels], "le") == 0)
                return KC_ERR_INVALID_ARG;
            for (size_t j = 0; j < nlabels; j++)
                if (strcmp(labels[j], labels[nlabels]) == 0)
                    return KC_ERR_INVALID_ARG;
            nlabels++;
        }
    }
    size_t nbounds = 0;
    if (type == MET_HISTOGRAM) {
        if (!buckets && nbuckets)
            return KC_ERR_INVALID_ARG;
        nbounds = nbuckets;
        if (nbounds > 0 && isinf(buckets[nbounds - 1]) && buckets[nbounds - 1] > 0)
            nbounds--; /* +Inf is implicit */
        for (size_t i = 0; i < nbounds; i++) {
            if (isnan(buckets[i]) || isinf(buckets[i]))
                return KC_ERR_INVALID_ARG;
            if (i > 0 && !(buckets[i] > buckets[i - 1]))
                return KC_ERR_INVALID_ARG;
        }
    }

    pthread_mutex_lock(&r->mu);
    /* Binary search for the insertion point (families sorted by name). */
    size_t lo = 0, hi = r->nfams;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->fams[mid]->name, name);
        if (c == 0) {
            met_vec *v = r->fams[mid];
            bool same = same_definition(v, type, labels, nlabels, buckets, nbounds);
            pthread_mutex_unlock(&r->mu);
            if (!same)
                return KC_ERR_INVALID_ARG;
            *out = v;
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }

    met_vec *v = calloc(1, sizeof *v);
    if (!v)
        goto nomem;
    pthread_rwlock_init(&v->lock, NULL);
    v->type = type;
    v->name = strdup(name);
    v->help = strdup(help ? help : "");
    v->labels = calloc(nlabels + 1, sizeof *v->labels);
    v->order = calloc(nlabels + 1, sizeof *v->order);
    if (!v->name || !v->help || !v->labels || !v->order)
        goto nomem;
    for (size_t i = 0; i < nlabels; i++) {
        v->labels[v->nlabels] = strdup(labels[i]);
        if (!v->labels[v->nlabels])
            goto nomem;
        v->order[i] = i;
        v->nlabels++;
    }
    if (nlabels > 1)
        qsort_r(v->order, nlabels, sizeof *v->order, cmp_label_idx, v->labels);
    if (nbounds) {
        v->bounds = malloc(nbounds * sizeof *v->bounds);
        if (!v->bounds)
            goto nomem;
        memcpy(v->bounds, buckets, nbounds * sizeof *v->bounds);
        v->nbounds = nbounds;
    }
    if (r->nfams == r->capfams) {
        size_t cap = r->capfams ? r->capfams * 2 : 16;
        met_vec **nf = realloc(r->fams, cap * sizeof *nf);
        if (!nf)
            goto nomem;
        r->fams = nf;
        r->capfams = cap;
    }
    memmove(r->fams + lo + 1, r->fams + lo, (r->nfams - lo) * sizeof *r->fams);
    r->fams[lo] = v;
    r->nfams++;
    pthread_mutex_unlock(&r->mu);
    *out = v;
    return 0;

nomem:
    pthread_mutex_unlock(&r->mu);
    vec_free(v);
    return KC_ERR_NOMEM;
}

int met_counter_vec(met_registry *r, const char *name, const char *help, const char *const *labels,
                    met_vec **out)
{
    return vec_register(r, MET_COUNTER, name, help, labels, NULL, 0, out);
}

int met_gauge_vec(met_registry *r, const char *name, const char *help, const char *const *labels,
                  met_vec **out)
{
    return vec_register(r, MET_GAUGE, name, help, labels, NULL, 0, out);
}

int met_histogram_vec(met_registry *r, const char *name, const char *help,
                      const char *const *labels, const double *buckets, size_t nbuckets,
                      met_vec **out)
{
    return vec_register(r, MET_HISTOGRAM, name, help, labels, buckets, nbuckets, out);
}

void met_exponential_buckets(double start, double factor, size_t count, double *out)
{
    for (size_t i = 0; i < count; i++) {
        out[i] = start;
        start *= factor;
    }
}

met_type met_vec_type(const met_vec *v)
{
    return v->type;
}

const char *met_vec_name(const met_vec *v)
{
    return v->name;
}

/* ---- children ------------------------------------------------------------ */

static bool child_matches(const met_vec *v, const met_child *c, uint64_t h,
                          const char *const *values)
{
    if (c->hash != h)
        return false;
    for (size_t i = 0; i < v->nlabels; i++)
        if (strcmp(c->values[i], values[i]) != 0)
            return false;
    return true;
}

/* Caller holds v->lock (either mode). */
static met_child *slot_find(const met_vec *v, uint64_t h, const char *const *values)
{
    if (!v->nslots)
        return NULL;
    size_t mask = v->nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        met_child *c = v->slots[i];
        if (!c)
            return NULL;
        if (child_matches(v, c, h, values))
            return c;
    }
}

/* Caller holds v->lock exclusively; there is a free slot. */
static void slot_put(met_child **slots, size_t nslots, met_child *c)
{
    size_t mask = nslots - 1;
    size_t i = (size_t)c->hash & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = c;
}

static met_child *child_new(const met_vec *v, uint64_t h, const char *const *values)
{
    size_t nb = v->type == MET_HISTOGRAM ? v->nbounds + 1 : 0;
    met_child *c = calloc(1, sizeof *c + nb * sizeof c->buckets[0]);
    if (!c)
        return NULL;
    c->vec = v;
    c->hash = h;
    c->values = calloc(v->nlabels + 1, sizeof *c->values);
    if (!c->values) {
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < v->nlabels; i++) {
        c->values[i] = strdup(values[i]);
        if (!c->values[i]) {
            for (size_t j = 0; j < i; j++)
                free(c->values[j]);
            free(c->values);
            free(c);
            return NULL;
        }
    }
    atomic_init(&c->val, dbits(0.0));
    for (size_t i = 0; i < nb; i++)
        atomic_init(&c->buckets[i], 0);
    return c;
}

static met_child *vec_child(met_vec *v, met_type type, const char *const *values)
{
    if (!v || v->type != type)
        return NULL;
    static const char *const none[] = {NULL};
    if (!values)
        values = none;
    for (size_t i = 0; i < v->nlabels; i++)
        if (!values[i])
            return NULL; /* too few values */
    if (values[v->nlabels])
        return NULL; /* too many values */

    uint64_t h = hash_values(values, v->nlabels);
    pthread_rwlock_rdlock(&v->lock);
    met_child *c = slot_find(v, h, values);
    pthread_rwlock_unlock(&v->lock);
    if (c)
        return c;

    pthread_rwlock_wrlock(&v->lock);
    c = slot_find(v, h, values); /* another thread may have won */
    if (c)
        goto out;
    /* Keep the load factor at most 1/2 so probes stay short. */
    if ((v->nchildren + 1) * 2 > v->nslots) {
        size_t nslots = v->nslots ? v->nslots * 2 : 8;
        met_child **ns = calloc(nslots, sizeof *ns);
        if (!ns)
            goto out;
        for (size_t i = 0; i < v->nslots; i++)
            if (v->slots[i])
                slot_put(ns, nslots, v->slots[i]);
        free(v->slots);
        v->slots = ns;
        v->nslots = nslots;
    }
    if (v->nchildren == v->capchildren) {
        size_t cap = v->capchildren ? v->capchildren * 2 : 8;
        met_child **nc = realloc(v->children, cap * sizeof *nc);
        if (!nc)
            goto out;
        v->children = nc;
        v->capchildren = cap;
    }
    c = child_new(v, h, values);
    if (!c)
        goto out;
    slot_put(v->slots, v->nslots, c);
    v->children[v->nchildren++] = c;
out:
    pthread_rwlock_unlock(&v->lock);
    return c;
}

met_counter *met_counter_get(met_vec *v, const char *const *values)
{
    return (met_counter *)vec_child(v, MET_COUNTER, values);
}

met_gauge *met_gauge_get(met_vec *v, const char *const *values)
{
    return (met_gauge *)vec_child(v, MET_GAUGE, values);
}

met_histogram *met_histogram_get(met_vec *v, const char *const *values)
{
    return (met_histogram *)vec_child(v, MET_HISTOGRAM, values);
}

/* The public child types are the same struct under other names. */
#define CHILD(p) ((met_child *)(p))
#define CCHILD(p) ((const met_child *)(p))

void met_counter_inc(met_counter *c)
{
    met_counter_add(c, 1.0);
}

void met_counter_add(met_counter *c, double delta)
{
    if (!c || !(delta >= 0))
        return;
    atomic_add_double(&CHILD(c)->val, delta);
}

void met_counter_set(met_counter *c, double value)
{
    if (c)
        atomic_store_explicit(&CHILD(c)->val, dbits(value), memory_order_relaxed);
}

double met_counter_value(const met_counter *c)
{
    if (!c)
        return 0;
    return bitsd(atomic_load_explicit(&((met_child *)CCHILD(c))->val, memory_order_relaxed));
}

void met_gauge_set(met_gauge *g, double value)
{
    if (g)
        atomic_store_explicit(&CHILD(g)->val, dbits(value), memory_order_relaxed);
}

void met_gauge_add(met_gauge *g, double delta)
{
    if (g)
        atomic_add_double(&CHILD(g)->val, delta);
}

void met_gauge_inc(met_gauge *g)
{
    met_gauge_add(g, 1.0);
}

void met_gauge_dec(met_gauge *g)
{
    met_gauge_add(g, -1.0);
}

double met_gauge_value(const met_gauge *g)
{
    if (!g)
        return 0;
    return bitsd(atomic_load_explicit(&((met_child *)CCHILD(g))->val, memory_order_relaxed));
}

void met_histogram_observe(met_histogram *h, double value)
{
    if (!h || isnan(value))
        return;
    met_child *c = CHILD(h);
    const met_vec *v = c->vec;
    /* First bucket whose upper bound is >= value (le is inclusive). */
    size_t lo = 0, hi = v->nbounds;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v->bounds[mid] >= value)
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&c->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&c->val, value);
}

uint64_t met_histogram_count(const met_histogram *h)
{
    if (!h)
        return 0;
    met_child *c = (met_child *)CCHILD(h);
    uint64_t n = 0;
    for (size_t i = 0; i <= c->vec->nbounds; i++)
        n += atomic_load_explicit(&c->buckets[i], memory_order_relaxed);
    return n;
}

double met_histogram_sum(const met_histogram *h)
{
    if (!h)
        return 0;
    return bitsd(atomic_load_explicit(&((met_child *)CCHILD(h))->val, memory_order_relaxed));
}

/* ---- rendering ----------------------------------------------------------- */

/* Children sorted by label values taken in label-name order (Go's order). */
static int cmp_children(const void *a, const void *b, void *arg)
{
    const met_vec *v = arg;
    const met_child *x = *(met_child *const *)a;
    const met_child *y = *(met_child *const *)b;
    for (size_t i = 0; i < v->nlabels; i++) {
        size_t k = v->order[i];
        int c = strcmp(x->values[k], y->values[k]);
        if (c)
            return c;
    }
    return 0;
}

/* {a="x",b="y"} with an optional trailing le pair; nothing when empty. */
static void tb_labels(pv_strbuf *b, const met_vec *v, const met_child *c, const char *le)
{
    if (v->nlabels == 0 && !le)
        return;
    pv_strbuf_add(b, "{");
    for (size_t i = 0; i < v->nlabels; i++) {
        size_t k = v->order[i];
        if (i)
            pv_strbuf_add(b, ",");
        pv_strbuf_add(b, v->labels[k]);
        pv_strbuf_add(b, "=\"");
        tb_label_value(b, c->values[k]);
        pv_strbuf_add(b, "\"");
    }
    if (le) {
        if (v->nlabels)
            pv_strbuf_add(b, ",");
        pv_strbuf_add(b, "le=\"");
        pv_strbuf_add(b, le);
        pv_strbuf_add(b, "\"");
    }
    pv_strbuf_add(b, "}");
}

static void tb_sample(pv_strbuf *b, const met_vec *v, const char *suffix, const met_child *c,
                      const char *le, double value)
{
    pv_strbuf_add(b, v->name);
    if (suffix)
        pv_strbuf_add(b, suffix);
    tb_labels(b, v, c, le);
    pv_strbuf_add(b, " ");
    tb_float(b, value);
    pv_strbuf_add(b, "\n");
}

static const char *type_name(met_type t)
{
    switch (t) {
    case MET_COUNTER:
        return "counter";
    case MET_GAUGE:
        return "gauge";
    case MET_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static void render_family(pv_strbuf *b, met_vec *v)
{
    pthread_rwlock_rdlock(&v->lock);
    size_t n = v->nchildren;
    met_child **kids = n ? malloc(n * sizeof *kids) : NULL;
    if (kids)
        memcpy(kids, v->children, n * sizeof *kids);
    pthread_rwlock_unlock(&v->lock);
    if (n == 0)
        return; /* Go omits families without series */
    if (!kids) {
        b->oom = true;
        return;
    }
    qsort_r(kids, n, sizeof *kids, cmp_children, v);

    pv_strbuf_add(b, "# HELP ");
    pv_strbuf_add(b, v->name);
    pv_strbuf_add(b, " ");
    tb_help(b, v->help);
    pv_strbuf_add(b, "\n# TYPE ");
    pv_strbuf_add(b, v->name);
    pv_strbuf_add(b, " ");
    pv_strbuf_add(b, type_name(v->type));
    pv_strbuf_add(b, "\n");

    for (size_t i = 0; i < n; i++) {
        met_child *c = kids[i];
        double val = bitsd(atomic_load_explicit(&c->val, memory_order_relaxed));
        if (v->type != MET_HISTOGRAM) {
            tb_sample(b, v, NULL, c, NULL, val);
            continue;
        }
        uint64_t cum = 0;
        char le[48];
        for (size_t j = 0; j <= v->nbounds; j++) {
            cum += atomic_load_explicit(&c->buckets[j], memory_order_relaxed);
            if (j < v->nbounds)
                fmt_go_float(v->bounds[j], le, sizeof le);
            else
                snprintf(le, sizeof le, "+Inf");
            tb_sample(b, v, "_bucket", c, le, (double)cum);
        }
        tb_sample(b, v, "_sum", c, NULL, val);
        tb_sample(b, v, "_count", c, NULL, (double)cum);
    }
    free(kids);
}

int met_render(met_registry *r, char **out, size_t *out_len)
{
    if (!r || !out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    if (out_len)
        *out_len = 0;
    pv_strbuf b = {0};
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->ncollectors; i++)
        r->collectors[i].fn(r->collectors[i].ud);
    for (size_t i = 0; i < r->nfams && !b.oom; i++)
        render_family(&b, r->fams[i]);
    pthread_mutex_unlock(&r->mu);
    size_t len;
    char *text = pv_strbuf_take(&b, &len); /* "" for an empty registry */
    if (!text)
        return KC_ERR_NOMEM;
    *out = text;
    if (out_len)
        *out_len = len;
    return 0;
}

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
    return add_collector(r, proc_collect, pm, free);
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
