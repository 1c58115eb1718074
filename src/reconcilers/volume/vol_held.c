/*
 * vol_held - per-pool sums of the cached Reservations (vol_held.h).
 *
 * pools: pool name -> pool_sum (its sums and its landed set); landed: the
 * key "<slot>\x1f<admittedUntil>" -> landed_entry (how many Reservations of
 * the pool carry that pair: one, unless somebody made copies by hand). A
 * pool whose last Reservation went is dropped.
 */
#include "vol_held.h"

#include "inf_map.h"
#include "kc_error.h"
#include "rec_util.h"
#include "vol_ledger.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct landed_entry {
    size_t count;
    char key[];
} landed_entry;

typedef struct pool_sum {
    vol_held_sum sum;
    inf_map landed;
    char name[];
} pool_sum;

struct vol_held {
    pthread_mutex_t mu;
    inf_map pools;
    bool broken; /* an add ran out of memory: the sums are wrong for good */
};

int vol_held_new(vol_held **out)
{
    vol_held *h = calloc(1, sizeof *h);
    if (!h)
        return KC_ERR_NOMEM;
    pthread_mutex_init(&h->mu, NULL);
    inf_map_init(&h->pools);
    *out = h;
    return KC_OK;
}

static void pool_free(pool_sum *p)
{
    size_t pos = 0;
    void *v;
    while (inf_map_next(&p->landed, &pos, NULL, &v))
        free(v);
    inf_map_close(&p->landed);
    free(p);
}

void vol_held_free(vol_held *h)
{
    if (!h)
        return;
    size_t pos = 0;
    void *v;
    while (inf_map_next(&h->pools, &pos, NULL, &v))
        pool_free(v);
    inf_map_close(&h->pools);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

bool vol_held_read(json_object *r, const char **uid, int64_t *bytes, int64_t *until, bool *valid)
{
    *uid = rec_obj_str(r, "spec.slot");
    json_object *b = rec_obj_at(r, "spec.bytes");
    time_t created, u;
    if (!*uid || !json_object_is_type(b, json_type_int) ||
        !rec_parse_time(rec_obj_str(r, "metadata.creationTimestamp"), &created) ||
        !rec_parse_time(rec_obj_str(r, "spec.admittedUntil"), &u))
        return false;
    *bytes = json_object_get_int64(b);
    *until = (int64_t)u;
    *valid = *bytes > 0 && vol_resv_valid((int64_t)created, *until);
    return true;
}

/* "<uid>\x1f<until>" (malloc'd), or NULL. */
static char *landed_key(const char *uid, int64_t until)
{
    char *k = NULL;
    return asprintf(&k, "%s\x1f%" PRId64, uid, until) < 0 ? NULL : k;
}

/* Count (sign +1) or uncount (-1) r. Caller holds mu. False: out of memory. */
static bool apply_locked(vol_held *h, json_object *r, int sign)
{
    const char *pool = rec_obj_str(r, "spec.pool.name");
    if (!pool)
        return true; /* not any pool's */
    const char *uid;
    int64_t bytes = 0, until = 0;
    bool valid = false;
    bool keyed = vol_held_read(r, &uid, &bytes, &until, &valid);
    char *key = keyed ? landed_key(uid, until) : NULL;
    if (keyed && !key)
        return false;
    pool_sum *p = inf_map_get(&h->pools, pool);
    if (!p && sign < 0) {
        free(key);
        return true; /* never counted */
    }
    if (!p) {
        size_t len = strlen(pool) + 1;
        p = calloc(1, sizeof *p + len);
        if (!p) {
            free(key);
            return false;
        }
        memcpy(p->name, pool, len);
        inf_map_init(&p->landed);
        if (inf_map_put(&h->pools, p->name, p) != KC_OK) {
            free(p);
            free(key);
            return false;
        }
    }
    if (key) {
        landed_entry *e = inf_map_get(&p->landed, key);
        if (sign > 0 && !e) {
            size_t len = strlen(key) + 1;
            e = malloc(sizeof *e + len);
            if (!e) {
                free(key);
                return false;
            }
            memcpy(e->key, key, len);
            e->count = 0;
            if (inf_map_put(&p->landed, e->key, e) != KC_OK) {
                free(e);
                free(key);
                return false;
            }
        }
        if (sign > 0) {
            e->count++;
        } else if (e && --e->count == 0) {
            inf_map_remove(&p->landed, e->key);
            free(e);
        }
        free(key);
    }
    if (sign > 0) {
        p->sum.n++;
    } else if (p->sum.n > 0) {
        p->sum.n--;
    }
    if (keyed && valid) {
        p->sum.valid_bytes += sign * bytes;
        p->sum.valid_count += sign;
    }
    if (p->sum.n == 0 && p->landed.len == 0) {
        inf_map_remove(&h->pools, p->name);
        pool_free(p);
    }
    return true;
}

static void apply(vol_held *h, json_object *old_obj, json_object *new_obj)
{
    pthread_mutex_lock(&h->mu);
    if (!h->broken) {
        if (old_obj && !apply_locked(h, old_obj, -1))
            h->broken = true;
        if (new_obj && !h->broken && !apply_locked(h, new_obj, +1))
            h->broken = true;
    }
    pthread_mutex_unlock(&h->mu);
}

void vol_held_add(vol_held *h, json_object *r)
{
    apply(h, NULL, r);
}

void vol_held_remove(vol_held *h, json_object *r)
{
    apply(h, r, NULL);
}

void vol_held_update(vol_held *h, json_object *old_obj, json_object *new_obj)
{
    apply(h, old_obj, new_obj);
}

bool vol_held_snapshot(vol_held *h, const char *pool, const vol_admission *asked, size_t n,
                       vol_held_sum *out, bool *landed)
{
    memset(out, 0, sizeof *out);
    char **keys = n ? calloc(n, sizeof *keys) : NULL;
    for (size_t i = 0; i < n; i++) {
        landed[i] = false;
        if (keys)
            keys[i] = landed_key(asked[i].uid, asked[i].until);
    }
    pthread_mutex_lock(&h->mu);
    bool ok = !h->broken;
    const pool_sum *p = ok ? inf_map_get(&h->pools, pool) : NULL;
    if (p) {
        *out = p->sum;
        for (size_t i = 0; keys && i < n; i++)
            landed[i] = keys[i] && inf_map_get(&p->landed, keys[i]) != NULL;
    }
    pthread_mutex_unlock(&h->mu);
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    return ok;
}
