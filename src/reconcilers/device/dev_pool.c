/*
 * dev_pool - a DevicePool as the operator uses it: the declared devices,
 * the devices the node agent discovered, and the health of each (API.md
 * "Devices": healthy unless spec says false or, for a device with a path,
 * the agent finds its file missing); and what a DeviceClaim wants.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev_internal.h"
#include "kc_error.h"
#include "rec_util.h"

const char *dev_publish_name(dev_publish p)
{
    switch (p) {
    case DEV_PUBLISH_RESOURCE_SLICE:
        return "ResourceSlice";
    case DEV_PUBLISH_NONE:
        return "None";
    default:
        return "NodeCapacity";
    }
}

static void attrs_free(dev_attr *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].key);
        free(a[i].value);
    }
    free(a);
}

/* Copy the string pairs of obj (an object, may be NULL) onto *a. */
static int attrs_add(json_object *obj, dev_attr **a, size_t *n)
{
    if (!obj || !json_object_is_type(obj, json_type_object))
        return KC_OK;
    json_object_object_foreach(obj, k, v)
    {
        if (!json_object_is_type(v, json_type_string))
            continue;
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++)
            seen = !strcmp((*a)[i].key, k);
        if (seen)
            continue; /* the device's own attribute wins */
        dev_attr *na = realloc(*a, (*n + 1) * sizeof *na);
        if (!na)
            return KC_ERR_NOMEM;
        *a = na;
        na[*n].key = strdup(k);
        na[*n].value = strdup(json_object_get_string(v));
        (*n)++;
        if (!na[*n - 1].key || !na[*n - 1].value)
            return KC_ERR_NOMEM;
    }
    return KC_OK;
}

static void device_clear(dev_device *d)
{
    free(d->id);
    free(d->message);
    attrs_free(d->attrs, d->n_attrs);
}

void dev_pool_free(dev_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        device_clear(&p->devs[i]);
    free(p->devs);
    free(p->name);
    free(p->node);
    free(p->resource);
    free(p);
}

static int dev_cmp(const void *a, const void *b)
{
    return strcmp(((const dev_device *)a)->id, ((const dev_device *)b)->id);
}

static const dev_device *find_in(const dev_device *devs, size_t n, const char *id)
{
    dev_device key = {.id = (char *)id};
    return n ? bsearch(&key, devs, n, sizeof *devs, dev_cmp) : NULL;
}

const dev_device *dev_pool_find(const dev_pool *p, const char *id)
{
    return p && id ? find_in(p->devs, p->n, id) : NULL;
}

static bool is_dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* The agent's entry for id in report devices (an array), or NULL. */
static json_object *report_entry(json_object *rdevs, const char *id, const char *source)
{
    size_t n = rdevs ? json_object_array_length(rdevs) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(rdevs, i);
        const char *eid = rec_obj_str(e, "id");
        const char *src = rec_obj_str(e, "source");
        if (eid && !strcmp(eid, id) && (!source || !src || !strcmp(src, source)))
            return e;
    }
    return NULL;
}

static bool report_present(json_object *e)
{
    json_object *v = rec_obj_at(e, "present");
    return v && json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

static int add_device(dev_pool *p, size_t *cap, const char *id, dev_device **out)
{
    if (p->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        dev_device *nd = realloc(p->devs, nc * sizeof *nd);
        if (!nd)
            return KC_ERR_NOMEM;
        p->devs = nd;
        *cap = nc;
    }
    dev_device *d = &p->devs[p->n];
    memset(d, 0, sizeof *d);
    if (!(d->id = strdup(id)))
        return KC_ERR_NOMEM;
    p->n++;
    *out = d;
    return KC_OK;
}

static bool agent_fresh(json_object *agent, time_t now)
{
    time_t t;
    return rec_parse_time(rec_obj_str(agent, "heartbeatTime"), &t) && now - t <= DEV_AGENT_STALE &&
           t - now <= DEV_AGENT_STALE;
}

static int pool_parse(json_object *obj, time_t now, dev_pool *p, char **problem)
{
    const char *name = rec_obj_str(obj, "metadata.name");
    const char *node = rec_obj_str(obj, "spec.nodeName");
    const char *res = rec_obj_str(obj, "spec.resourceName");
    if (!name || !node || !*node || !res || !*res)
        return rec_msg(problem, "spec.nodeName and spec.resourceName are required");
    if (!(p->name = strdup(name)) || !(p->node = strdup(node)) || !(p->resource = strdup(res)))
        return KC_ERR_NOMEM;
    const char *pub = rec_obj_str(obj, "spec.publish");
    json_object *adv = rec_obj_at(obj, "spec.advertise");
    if (pub && !strcmp(pub, "ResourceSlice"))
        p->publish = DEV_PUBLISH_RESOURCE_SLICE;
    else if (pub && !strcmp(pub, "None"))
        p->publish = DEV_PUBLISH_NONE;
    else if (!pub && adv && json_object_is_type(adv, json_type_boolean) &&
             !json_object_get_boolean(adv))
        p->publish = DEV_PUBLISH_NONE;
    else
        p->publish = DEV_PUBLISH_NODE_CAPACITY;

    json_object *agent = rec_obj_at(obj, "status.agent");
    json_object *rdevs = rec_obj_at(agent, "devices");
    if (rdevs && !json_object_is_type(rdevs, json_type_array))
        rdevs = NULL;
    p->agent_fresh = agent && agent_fresh(agent, now);
    json_object *discover = rec_obj_at(obj, "spec.discover");
    p->wants_agent = discover != NULL;

    size_t cap = 0;
    json_object *decl = rec_obj_at(obj, "spec.devices");
    size_t nd =
        decl && json_object_is_type(decl, json_type_array) ? json_object_array_length(decl) : 0;
    for (size_t i = 0; i < nd; i++) {
        json_object *e = json_object_array_get_idx(decl, i);
        const char *id = rec_obj_str(e, "id");
        if (!id || !is_dns_label(id))
            return rec_msg(problem, "spec.devices[%zu].id %s is not a DNS label", i,
                           id ? id : "(missing)");
        dev_device *d = NULL;
        int rc = add_device(p, &cap, id, &d);
        if (rc != KC_OK)
            return rc;
        json_object *h = rec_obj_at(e, "healthy");
        d->healthy =
            !(h && json_object_is_type(h, json_type_boolean) && !json_object_get_boolean(h));
        if (!d->healthy && !(d->message = strdup("spec.devices says healthy: false")))
            return KC_ERR_NOMEM;
        const char *path = rec_obj_str(e, "path");
        if (path && *path) {
            p->wants_agent = true;
            json_object *re = p->agent_fresh ? report_entry(rdevs, id, "Declared") : NULL;
            if (d->healthy && p->agent_fresh && (!re || !report_present(re))) {
                d->healthy = false;
                const char *why = re ? rec_obj_str(re, "message") : NULL;
                int mrc = rec_msg(&d->message, "the node agent on %s cannot open %s%s%s", node,
                                  path, why && *why ? ": " : "", why && *why ? why : "");
                if (mrc != KC_OK)
                    return mrc;
            }
        }
        if ((rc = attrs_add(rec_obj_at(e, "attributes"), &d->attrs, &d->n_attrs)) != KC_OK)
            return rc;
    }
    /* Declared ids are unique (the schema's list map). qsort of no devices
     * (devs NULL) is undefined: a pool may declare none. */
    if (p->n > 1)
        qsort(p->devs, p->n, sizeof *p->devs, dev_cmp);
    size_t n_decl = p->n;
    size_t nr = p->agent_fresh && rdevs ? json_object_array_length(rdevs) : 0;
    json_object *dattrs = rec_obj_at(discover, "attributes");
    for (size_t i = 0; i < nr && discover; i++) {
        json_object *e = json_object_array_get_idx(rdevs, i);
        const char *src = rec_obj_str(e, "source");
        const char *id = rec_obj_str(e, "id");
        if (!src || strcmp(src, "Discovered") || !id || !is_dns_label(id) ||
            find_in(p->devs, n_decl, id))
            continue; /* a declared device of that id wins */
        if (p->n >= DEV_MAX_DEVICES)
            break;
        dev_device *d = NULL;
        int rc = add_device(p, &cap, id, &d);
        if (rc != KC_OK)
            return rc;
        d->discovered = true;
        d->healthy = report_present(e);
        if (!d->healthy) {
            const char *why = rec_obj_str(e, "message");
            if ((rc = rec_msg(&d->message, "the node agent on %s cannot open %s%s%s", node,
                              rec_obj_str(e, "path") ? rec_obj_str(e, "path") : id,
                              why && *why ? ": " : "", why && *why ? why : "")) != KC_OK)
                return rc;
        }
        if ((rc = attrs_add(dattrs, &d->attrs, &d->n_attrs)) != KC_OK)
            return rc;
    }
    if (p->n > 1)
        qsort(p->devs, p->n, sizeof *p->devs, dev_cmp);
    size_t k = 0; /* one device per id: the agent's report should not repeat one */
    for (size_t i = 0; i < p->n; i++) {
        if (k > 0 && !strcmp(p->devs[k - 1].id, p->devs[i].id)) {
            device_clear(&p->devs[i]);
            continue;
        }
        p->devs[k++] = p->devs[i];
    }
    p->n = k;
    for (size_t i = 0; i < p->n; i++)
        p->n_healthy += p->devs[i].healthy;
    return KC_OK;
}

int dev_pool_from_obj(json_object *pool_obj, time_t now, dev_pool **out, char **problem)
{
    *out = NULL;
    *problem = NULL;
    dev_pool *p = calloc(1, sizeof *p);
    if (!p)
        return KC_ERR_NOMEM;
    int rc = pool_parse(pool_obj, now, p, problem);
    if (rc != KC_OK || *problem) {
        dev_pool_free(p);
        return rc;
    }
    static atomic_uint_fast64_t serials;
    p->serial = (uint64_t)atomic_fetch_add(&serials, 1) + 1;
    *out = p;
    return KC_OK;
}

bool dev_device_matches(const dev_device *dev, const dev_want *w)
{
    for (size_t i = 0; i < w->n_sel; i++) {
        bool ok = false;
        for (size_t j = 0; j < dev->n_attrs && !ok; j++)
            ok = !strcmp(dev->attrs[j].key, w->sel[i].key) &&
                 !strcmp(dev->attrs[j].value, w->sel[i].value);
        if (!ok)
            return false;
    }
    return true;
}

void dev_want_free(dev_want *w)
{
    if (!w)
        return;
    free(w->resource);
    free(w->node);
    attrs_free(w->sel, w->n_sel);
    free(w);
}

int dev_want_from_obj(json_object *claim_obj, dev_want **out, char **problem)
{
    *out = NULL;
    *problem = NULL;
    const char *res = rec_obj_str(claim_obj, "spec.resourceName");
    if (!res || !*res)
        return rec_msg(problem, "spec.resourceName is required");
    dev_want *w = calloc(1, sizeof *w);
    if (!w || !(w->resource = strdup(res))) {
        dev_want_free(w);
        return KC_ERR_NOMEM;
    }
    const char *node = rec_obj_str(claim_obj, "spec.nodeName");
    if (node && *node && !(w->node = strdup(node))) {
        dev_want_free(w);
        return KC_ERR_NOMEM;
    }
    json_object *cnt = rec_obj_at(claim_obj, "spec.count");
    w->count = cnt && json_object_is_type(cnt, json_type_int) ? json_object_get_int64(cnt) : 1;
    if (w->count < 1 || w->count > 64) {
        int64_t c = w->count;
        dev_want_free(w);
        return rec_msg(problem, "spec.count %lld is out of range: 1 to 64", (long long)c);
    }
    json_object *rep = rec_obj_at(claim_obj, "spec.replaceUnhealthy");
    w->replace = rep && json_object_is_type(rep, json_type_boolean) && json_object_get_boolean(rep);
    if (attrs_add(rec_obj_at(claim_obj, "spec.selector"), &w->sel, &w->n_sel) != KC_OK) {
        dev_want_free(w);
        return KC_ERR_NOMEM;
    }
    *out = w;
    return KC_OK;
}
