/*
 * dev_choose - which pool and which devices a DeviceClaim gets: the pools of
 * its resource name that could ever hold it (node, selector, count), the one
 * of those with enough free devices now (spread by the claim's uid), and in
 * it the free healthy matching devices (again from the claim's place).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev_internal.h"
#include "inf_map.h"
#include "kc_error.h"
#include "pv_strbuf.h"
#include "rec_reserve.h"
#include "rec_util.h"

static bool in_list(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s))
            return true;
    return false;
}

static bool on_node(const dev_pool *p, const dev_want *w)
{
    return !w->node || !strcmp(w->node, p->node);
}

void dev_pool_fit(const void *pool, const void *want, const void *used, const void *requested,
                  const char *const *skip, size_t n_skip, int64_t *fit, int64_t *free_now)
{
    (void)requested;
    const dev_pool *p = pool;
    const dev_want *w = want;
    *fit = 0;
    *free_now = 0;
    if (!p || !w || !on_node(p, w))
        return;
    if (w->n_sel == 0) {
        /* Every device matches: the set's memo, less the skipped free ones. */
        *fit = (int64_t)p->n;
        *free_now = dev_set_free_healthy(used, p);
        for (size_t i = 0; i < n_skip; i++) {
            const dev_device *d = dev_pool_find(p, skip[i]);
            if (d && d->healthy && !dev_set_has(used, d->id) && !in_list(skip, i, skip[i]))
                (*free_now)--;
        }
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        const dev_device *d = &p->devs[i];
        if (!dev_device_matches(d, w))
            continue;
        (*fit)++;
        if (d->healthy && !dev_set_has(used, d->id) && !in_list(skip, n_skip, d->id))
            (*free_now)++;
    }
}

/* Whether any device of the views has attribute key. */
static bool key_known(const rec_pool_view *views, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const dev_pool *p = views[i].pool;
        for (size_t j = 0; p && j < p->n; j++)
            for (size_t k = 0; k < p->devs[j].n_attrs; k++)
                if (!strcmp(p->devs[j].attrs[k].key, key))
                    return true;
    }
    return false;
}

static int view_cmp(const void *a, const void *b)
{
    const rec_pool_view *x = *(const rec_pool_view *const *)a,
                        *y = *(const rec_pool_view *const *)b;
    return strcmp(x->name, y->name);
}

/* "2 devices of R on node N matching k=v,..." for messages. */
static void describe(const dev_want *w, pv_strbuf *b)
{
    pv_strbuf_addf(b, "%lld device%s of %s", (long long)w->count, w->count == 1 ? "" : "s",
                   w->resource);
    if (w->node)
        pv_strbuf_addf(b, " on node %s", w->node);
    for (size_t i = 0; i < w->n_sel; i++)
        pv_strbuf_addf(b, "%s%s=%s", i ? "," : " matching ", w->sel[i].key, w->sel[i].value);
}

/* Why no pool fits now: InsufficientDevices (some could) or NoMatchingDevices. */
static void explain(const rec_pool_view *views, size_t n, const rec_pool_view **could,
                    size_t n_could, const dev_want *w, const char **reason, pv_strbuf *b)
{
    if (n_could > 0) {
        *reason = DEV_REASON_INSUFFICIENT;
        describe(w, b);
        pv_strbuf_add(b, " wanted; ");
        for (size_t i = 0; i < n_could && i < 5; i++)
            pv_strbuf_addf(b, "%s%s has %lld free", i ? ", " : "", could[i]->name,
                           (long long)could[i]->free);
        pv_strbuf_add(b, "; waiting for devices to be freed or to appear");
        return;
    }
    *reason = DEV_REASON_NO_MATCH;
    pv_strbuf_add(b, "no DevicePool can ever hold ");
    describe(w, b);
    if (n == 0)
        pv_strbuf_addf(b, ": there is no DevicePool of %s", w->resource);
    for (size_t i = 0; i < n && i < 5; i++) {
        const char *why = !views[i].pool               ? "has an invalid spec"
                          : views[i].deleting          ? "is being deleted"
                          : !on_node(views[i].pool, w) ? "is on another node"
                                                       : NULL;
        if (why)
            pv_strbuf_addf(b, "%s%s %s", i ? "; " : ": ", views[i].name, why);
        else
            pv_strbuf_addf(b, "%s%s has %lld matching", i ? "; " : ": ", views[i].name,
                           (long long)views[i].fit);
    }
}

int dev_choose_pool(const rec_pool_view *views, size_t n, const void *want, const char *claim_uid,
                    size_t *chosen, const char **reason, char **message)
{
    const dev_want *w = want;
    *message = NULL;
    *reason = NULL;
    /* A selector key no device of the resource has is a mistake, not a wait;
     * without a usable pool there is nothing to tell (a claim applied before
     * its pool waits for one: NoMatchingDevices below). */
    bool any_pool = false;
    for (size_t i = 0; i < n && !any_pool; i++)
        any_pool = views[i].pool != NULL;
    for (size_t i = 0; i < w->n_sel && any_pool; i++)
        if (!key_known(views, n, w->sel[i].key)) {
            *reason = DEV_REASON_INVALID_SPEC;
            int rc = rec_msg(message,
                             "spec.selector: no %s device has the attribute %s; check the "
                             "attributes of the DevicePools of %s (kubectl get dp -o yaml)",
                             w->resource, w->sel[i].key, w->resource);
            return rc == KC_OK ? REC_NO_SLOT : rc;
        }
    const rec_pool_view **fitting = n ? malloc(n * sizeof *fitting) : NULL;
    const rec_pool_view **could = n ? malloc(n * sizeof *could) : NULL;
    if (n && (!fitting || !could)) {
        free(fitting);
        free(could);
        return KC_ERR_NOMEM;
    }
    size_t n_fit = 0, n_could = 0;
    for (size_t i = 0; i < n; i++) {
        if (!views[i].pool || views[i].deleting || views[i].fit < w->count)
            continue;
        could[n_could++] = &views[i];
        if (views[i].free >= w->count)
            fitting[n_fit++] = &views[i];
    }
    int rc = KC_OK;
    if (n_fit > 0) {
        qsort(fitting, n_fit, sizeof *fitting, view_cmp);
        uint64_t h = inf_map_hash(claim_uid ? claim_uid : "");
        *chosen = (size_t)(fitting[h % n_fit] - views);
    } else {
        if (n_could > 1)
            qsort(could, n_could, sizeof *could, view_cmp);
        pv_strbuf b = {0};
        explain(views, n, could, n_could, w, reason, &b);
        *message = pv_strbuf_take(&b, NULL);
        rc = *message ? REC_NO_SLOT : KC_ERR_NOMEM;
    }
    free(fitting);
    free(could);
    return rc;
}

int dev_pick(const void *pool, const void *used, const void *requested, const char *const *skip,
             size_t n_skip, const char *claim_uid, const void *want, char **slot)
{
    (void)requested;
    const dev_pool *p = pool;
    const dev_want *w = want;
    if (!p || !w || p->n == 0 || !on_node(p, w))
        return REC_NO_SLOT;
    size_t start = (size_t)(inf_map_hash(claim_uid ? claim_uid : "") % p->n);
    for (size_t k = 0; k < p->n; k++) {
        const dev_device *d = &p->devs[(start + k) % p->n];
        if (d->healthy && dev_device_matches(d, w) && !dev_set_has(used, d->id) &&
            !in_list(skip, n_skip, d->id)) {
            *slot = strdup(d->id);
            return *slot ? KC_OK : KC_ERR_NOMEM;
        }
    }
    return REC_NO_SLOT;
}

size_t dev_choose_keep(const char *const *held, size_t n, const char *status_slot,
                       const char *wanted)
{
    (void)wanted;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (status_slot && !strcmp(held[i], status_slot))
            return i;
        if (strcmp(held[i], held[best]) < 0)
            best = i;
    }
    return best;
}

bool dev_slot_replace(const void *pool, const void *want, const char *slot)
{
    const dev_pool *p = pool;
    const dev_want *w = want;
    if (!p || !w || !w->replace)
        return false;
    const dev_device *d = dev_pool_find(p, slot);
    return !d || !d->healthy;
}

int dev_slot_name(const char *pool_name, const char *slot, char **name, char **canonical)
{
    *name = NULL;
    if (canonical)
        *canonical = NULL;
    size_t len = slot ? strlen(slot) : 0;
    /* a DNS label, as the pool's ids are: the name's last label */
    if (!pool_name || len == 0 || len > 63 || slot[0] == '-' || slot[len - 1] == '-')
        return KC_ERR_INVALID_ARG;
    for (const char *c = slot; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return KC_ERR_INVALID_ARG;
    if (rec_msg(name, "devicepool.%s.%s", pool_name, slot) != KC_OK)
        return KC_ERR_NOMEM;
    if (canonical && !(*canonical = strdup(slot))) {
        free(*name);
        *name = NULL;
        return KC_ERR_NOMEM;
    }
    return KC_OK;
}
