/*
 * dev_set - the used set of one DevicePool: device id -> the claim holding
 * it ("namespace/name"), kept from the Reservations cache by the core's
 * handlers (domain lock held), and the counts and device list of the pool's
 * status built from it. A memo of the free healthy devices of the last pool
 * asked about spares choosing a pool from scanning every device of every
 * pool for every claim; any update drops it.
 */
#include <stdlib.h>
#include <string.h>

#include "dev_internal.h"
#include "inf_map.h"
#include "kc_error.h"

typedef struct held {
    char *holder;
    char id[];
} held;

typedef struct dev_set {
    inf_map m;
    uint64_t memo_pool; /* dev_pool.serial memo_free is of; 0: none */
    int64_t memo_free;  /* its healthy devices m does not hold */
} dev_set;

int dev_set_new(void **set)
{
    dev_set *s = calloc(1, sizeof *s);
    if (!s)
        return KC_ERR_NOMEM;
    inf_map_init(&s->m);
    *set = s;
    return KC_OK;
}

void dev_set_free(void *set)
{
    dev_set *s = set;
    if (!s)
        return;
    size_t pos = 0;
    void *v;
    while (inf_map_next(&s->m, &pos, NULL, &v)) {
        held *h = v;
        free(h->holder);
        free(h);
    }
    inf_map_close(&s->m);
    free(s);
}

int dev_set_update(void *set, const char *slot, const char *holder, bool add)
{
    dev_set *s = set;
    if (!slot || !*slot)
        return KC_ERR_INVALID_ARG;
    s->memo_pool = 0;
    held *h = inf_map_get(&s->m, slot);
    if (!add) {
        if (h) {
            inf_map_remove(&s->m, slot);
            free(h->holder);
            free(h);
        }
        return KC_OK;
    }
    char *copy = holder ? strdup(holder) : NULL;
    if (holder && !copy)
        return KC_ERR_NOMEM;
    if (h) {
        free(h->holder);
        h->holder = copy;
        return KC_OK;
    }
    size_t len = strlen(slot);
    h = malloc(sizeof *h + len + 1);
    if (!h) {
        free(copy);
        return KC_ERR_NOMEM;
    }
    memcpy(h->id, slot, len + 1);
    h->holder = copy;
    if (inf_map_put(&s->m, h->id, h) != 0) {
        free(copy);
        free(h);
        return KC_ERR_NOMEM;
    }
    return KC_OK;
}

const char *dev_set_holder(const void *set, const char *id)
{
    const dev_set *s = set;
    held *h = s && id ? inf_map_get(&s->m, id) : NULL;
    return h ? (h->holder ? h->holder : "") : NULL;
}

bool dev_set_has(const void *set, const char *id)
{
    const dev_set *s = set;
    return s && id && inf_map_get(&s->m, id) != NULL;
}

size_t dev_set_count(const void *set)
{
    const dev_set *s = set;
    return s ? s->m.len : 0;
}

int64_t dev_set_free_healthy(const void *set, const dev_pool *p)
{
    /* Not const: the memo is a cache, the set's contents do not change. */
    dev_set *s = (dev_set *)set;
    if (s && p->serial && s->memo_pool == p->serial)
        return s->memo_free;
    int64_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->devs[i].healthy && !dev_set_has(s, p->devs[i].id))
            n++;
    if (s) {
        s->memo_pool = p->serial;
        s->memo_free = n;
    }
    return n;
}

void dev_detail_free(void *detail)
{
    dev_detail *dt = detail;
    if (!dt)
        return;
    for (size_t i = 0; i < dt->n; i++) {
        free(dt->devs[i].id);
        free(dt->devs[i].message);
        free(dt->devs[i].holder);
    }
    free(dt->devs);
    free(dt);
}

/* The detail of pool p (devices, holders); NULL when memory ran out. */
static dev_detail *detail_new(const dev_set *s, const dev_pool *p)
{
    dev_detail *dt = calloc(1, sizeof *dt);
    if (!dt || (p->n && !(dt->devs = calloc(p->n, sizeof *dt->devs)))) {
        free(dt);
        return NULL;
    }
    dt->wants_agent = p->wants_agent;
    dt->agent_fresh = p->agent_fresh;
    dt->publish = p->publish;
    for (size_t i = 0; i < p->n; i++) {
        const dev_device *d = &p->devs[i];
        dev_detail_dev *e = &dt->devs[dt->n++];
        e->healthy = d->healthy;
        e->discovered = d->discovered;
        const char *holder = dev_set_holder(s, d->id);
        if (!(e->id = strdup(d->id)) || (d->message && !(e->message = strdup(d->message))) ||
            (holder && !(e->holder = strdup(holder)))) {
            dev_detail_free(dt);
            return NULL;
        }
        dt->unhealthy += !d->healthy;
    }
    return dt;
}

void dev_set_counts(void *set, json_object *pool_obj, const void *pool, rec_pool_counts *out)
{
    (void)pool_obj;
    const dev_set *s = set;
    const dev_pool *p = pool;
    memset(out, 0, sizeof *out);
    out->allocated = (int64_t)dev_set_count(s);
    if (!p)
        return;
    out->total = (int64_t)p->n_healthy;
    for (size_t i = 0; i < p->n; i++)
        if (p->devs[i].healthy && !dev_set_has(s, p->devs[i].id))
            out->available++;
    out->detail = detail_new(s, p);
}
