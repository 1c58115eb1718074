/*
 * metrics - Prometheus registry and text exposition (see metrics.h).
 *
 * This file holds the registry, the families and their children, and the
 * values. The text exposition (escaping, number format, rendering) is in
 * metrics_text.c; the process metrics and the controller-runtime families in
 * metrics_process.c; what they share in metrics_internal.h.
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
 */
#include "metrics_internal.h"

#include "kc_error.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------- */

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

double metrics_bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double delta)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    for (;;) {
        uint64_t nv = dbits(metrics_bitsd(old) + delta);
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
int metrics_add_collector(met_registry *r, void (*fn)(void *ud), void *ud,
                          void (*free_ud)(void *ud))
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
    return metrics_add_collector(r, fn, ud, NULL);
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
    return metrics_bitsd(
        atomic_load_explicit(&((met_child *)CCHILD(c))->val, memory_order_relaxed));
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
    return metrics_bitsd(
        atomic_load_explicit(&((met_child *)CCHILD(g))->val, memory_order_relaxed));
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
    return metrics_bitsd(
        atomic_load_explicit(&((met_child *)CCHILD(h))->val, memory_order_relaxed));
}
