/*
 * metrics_text - the Prometheus text exposition of a registry: escaping,
 * numbers and met_render (part of metrics; see metrics.c for the registry's
 * layout and locking, metrics_internal.h for the shared types).
 *
 * Numbers are printed like Go's strconv.FormatFloat(v, 'g', -1, 64): the
 * shortest decimal that reads back to the same double, in exponent form when
 * the decimal exponent is < -4 or >= 6 (Go's rule for the shortest 'g'). This
 * keeps our output byte for byte comparable to a Go exporter's (le="1e-08",
 * 1.2345678e+07).
 */
#include "metrics_internal.h"

#include "kc_error.h"
#include "pv_strbuf.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        double val = metrics_bitsd(atomic_load_explicit(&c->val, memory_order_relaxed));
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
