/*
 * rec_stale - see rec_stale.h. A map uid -> the versions our writes replaced,
 * pruned of expired entries at most every REC_STALE_PRUNE_EVERY seconds (on a
 * note, so an idle operator keeps what it has: a few entries).
 */
#include "rec_stale.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "inf_map.h"
#include "kc_error.h"
#include "pv_clock.h"
#include "rec_util.h"

#define REC_STALE_PRUNE_EVERY 10.0 /* s between sweeps of expired entries */

typedef struct stale_entry {
    double at;
    size_t n;
    char *rvs[REC_STALE_RVS];
    char uid[];
} stale_entry;

struct rec_stale {
    pthread_mutex_t mu;
    inf_map map; /* uid -> stale_entry */
    double last_prune;
};

int rec_stale_new(rec_stale **out)
{
    rec_stale *s = calloc(1, sizeof *s);
    if (!s)
        return KC_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    inf_map_init(&s->map);
    *out = s;
    return KC_OK;
}

static void entry_free(stale_entry *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->rvs[i]);
    free(e);
}

void rec_stale_free(rec_stale *s)
{
    if (!s)
        return;
    size_t pos = 0;
    void *v;
    while (inf_map_next(&s->map, &pos, NULL, &v))
        entry_free(v);
    inf_map_close(&s->map);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Drop entries older than REC_STALE_TTL (s->mu held). */
static void prune_locked(rec_stale *s, double now)
{
    if (now - s->last_prune < REC_STALE_PRUNE_EVERY)
        return;
    s->last_prune = now;
    size_t n = 0, pos = 0;
    void *v;
    while (inf_map_next(&s->map, &pos, NULL, &v))
        if (now - ((stale_entry *)v)->at > REC_STALE_TTL)
            n++;
    if (n == 0)
        return;
    stale_entry **old = malloc(n * sizeof *old);
    if (!old)
        return;
    size_t k = 0;
    pos = 0;
    while (k < n && inf_map_next(&s->map, &pos, NULL, &v))
        if (now - ((stale_entry *)v)->at > REC_STALE_TTL)
            old[k++] = v;
    for (size_t i = 0; i < k; i++) {
        inf_map_remove(&s->map, old[i]->uid);
        entry_free(old[i]);
    }
    free(old);
}

static stale_entry *entry_get_or_add(rec_stale *s, const char *uid)
{
    stale_entry *e = inf_map_get(&s->map, uid);
    if (e)
        return e;
    size_t len = strlen(uid);
    e = calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    memcpy(e->uid, uid, len + 1);
    if (inf_map_put(&s->map, e->uid, e) != 0) {
        free(e);
        return NULL;
    }
    return e;
}

void rec_stale_note(rec_stale *s, const char *uid, const char *rv)
{
    if (!s || !uid || !rv || !*uid || !*rv)
        return;
    double now = pv_clock_monotonic();
    pthread_mutex_lock(&s->mu);
    prune_locked(s, now);
    stale_entry *e = entry_get_or_add(s, uid);
    if (e) {
        bool have = false;
        for (size_t i = 0; i < e->n && !have; i++)
            have = !strcmp(e->rvs[i], rv);
        char *copy = have ? NULL : strdup(rv);
        if (copy) {
            if (e->n == REC_STALE_RVS) {
                free(e->rvs[0]);
                memmove(e->rvs, e->rvs + 1, (REC_STALE_RVS - 1) * sizeof e->rvs[0]);
                e->n--;
            }
            e->rvs[e->n++] = copy;
        }
        e->at = now;
    }
    pthread_mutex_unlock(&s->mu);
}

bool rec_stale_check(rec_stale *s, const char *uid, const char *rv)
{
    if (!s || !uid || !rv)
        return false;
    bool stale = false;
    pthread_mutex_lock(&s->mu);
    stale_entry *e = inf_map_get(&s->map, uid);
    if (e) {
        if (pv_clock_monotonic() - e->at <= REC_STALE_TTL)
            for (size_t i = 0; i < e->n && !stale; i++)
                stale = !strcmp(e->rvs[i], rv);
        if (!stale) {
            inf_map_remove(&s->map, uid);
            entry_free(e);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return stale;
}

void rec_stale_forget(rec_stale *s, const char *uid)
{
    if (!s || !uid)
        return;
    pthread_mutex_lock(&s->mu);
    stale_entry *e = inf_map_remove(&s->map, uid);
    pthread_mutex_unlock(&s->mu);
    entry_free(e);
}

void rec_stale_note_obj(rec_stale *s, json_object *obj)
{
    rec_stale_note(s, rec_obj_str(obj, "metadata.uid"),
                   rec_obj_str(obj, "metadata.resourceVersion"));
}

bool rec_stale_check_obj(rec_stale *s, json_object *obj)
{
    return rec_stale_check(s, rec_obj_str(obj, "metadata.uid"),
                           rec_obj_str(obj, "metadata.resourceVersion"));
}
