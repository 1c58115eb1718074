/*
 * store_read - the store's reads: get, len, lists of objects or keys, whole
 * or by index value (part of store; see store.c for the locking and the
 * layout, store_internal.h for the types).
 */
#include "store_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "inf_map.h"
#include "kc_error.h"

/* ---- public: reads ------------------------------------------------------------------ */

int store_get(store *s, const char *key, json_object **out)
{
    *out = NULL;
    if (s == NULL || key == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_rwlock_rdlock(&s->lock);
    store_entry *e = inf_map_get(&s->entries, key);
    json_object *o = e != NULL ? store_data_ref(s, e->data) : NULL;
    pthread_rwlock_unlock(&s->lock);
    if (e == NULL)
        return KC_ERR_NOT_FOUND;
    if (o == NULL)
        return KC_ERR_NOMEM;
    *out = o;
    return KC_OK;
}

int store_rv(store *s, const char *key, char **rv_out)
{
    *rv_out = NULL;
    if (s == NULL || key == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_rwlock_rdlock(&s->lock);
    store_entry *e = inf_map_get(&s->entries, key);
    const char *rv = NULL;
    if (e != NULL)
        rv = s->compact ? (const char *)e->data : store_obj_rv(e->data);
    char *copy = e != NULL ? strdup(rv != NULL ? rv : "") : NULL;
    pthread_rwlock_unlock(&s->lock);
    if (e == NULL)
        return KC_ERR_NOT_FOUND;
    if (copy == NULL)
        return KC_ERR_NOMEM;
    *rv_out = copy;
    return KC_OK;
}

int store_get_in(store *s, const char *ns, const char *name, json_object **out)
{
    *out = NULL;
    if (name == NULL)
        return KC_ERR_INVALID_ARG;
    if (ns == NULL || ns[0] == '\0')
        return store_get(s, name, out);
    char buf[256], *key = buf;
    size_t slen = strlen(ns), nlen = strlen(name);
    if (slen + 1 + nlen + 1 > sizeof buf && (key = malloc(slen + 1 + nlen + 1)) == NULL)
        return KC_ERR_NOMEM;
    memcpy(key, ns, slen);
    key[slen] = '/';
    memcpy(key + slen + 1, name, nlen + 1);
    int rc = store_get(s, key, out);
    if (key != buf)
        free(key);
    return rc;
}

size_t store_len(store *s)
{
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->entries.len;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

/* Collect the entries of a map (entries) or of a bucket's set, as objects or
 * keys. Under the read lock. */
typedef struct collector {
    store *s;
    bool keys;
    void **v;
    size_t n;
} collector;

static int collect(collector *c, store_entry *e)
{
    void *item = c->keys ? (void *)strdup(e->key) : (void *)store_data_ref(c->s, e->data);
    if (item == NULL)
        return KC_ERR_NOMEM;
    c->v[c->n++] = item;
    return KC_OK;
}

static void collector_abort(collector *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->keys)
            free(c->v[i]);
        else
            store_obj_put(c->v[i]);
    }
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

static int list_common(store *s, const char *index, const char *value, bool keys, void ***out,
                       size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (s == NULL || (index != NULL && value == NULL))
        return KC_ERR_INVALID_ARG;
    collector c = {s, keys, NULL, 0};
    int rc = KC_OK;
    pthread_rwlock_rdlock(&s->lock);
    if (index == NULL) {
        if (s->entries.len > 0 && (c.v = malloc(s->entries.len * sizeof(void *))) == NULL)
            rc = KC_ERR_NOMEM;
        size_t pos = 0;
        void *v;
        while (rc == KC_OK && inf_map_next(&s->entries, &pos, NULL, &v))
            rc = collect(&c, v);
    } else {
        store_index *idx = store_index_find(s, index);
        idx_bucket *b = idx != NULL ? inf_map_get(&idx->buckets, value) : NULL;
        if (idx == NULL)
            rc = KC_ERR_INVALID_ARG;
        else if (b != NULL && (c.v = malloc(b->members.len * sizeof(void *))) == NULL)
            rc = KC_ERR_NOMEM;
        for (uint32_t i = 0; rc == KC_OK && b != NULL && i < b->members.cap; i++)
            if (b->members.slots[i] != NULL)
                rc = collect(&c, b->members.slots[i]);
    }
    pthread_rwlock_unlock(&s->lock);
    if (rc != KC_OK) {
        collector_abort(&c);
        return rc;
    }
    *out = c.v;
    *n_out = c.n;
    return KC_OK;
}

int store_list(store *s, json_object ***objs_out, size_t *n_out)
{
    return list_common(s, NULL, NULL, false, (void ***)objs_out, n_out);
}

int store_list_keys(store *s, char ***keys_out, size_t *n_out)
{
    return list_common(s, NULL, NULL, true, (void ***)keys_out, n_out);
}

int store_by_index(store *s, const char *index, const char *value, json_object ***objs_out,
                   size_t *n_out)
{
    if (index == NULL) {
        *objs_out = NULL;
        *n_out = 0;
        return KC_ERR_INVALID_ARG;
    }
    return list_common(s, index, value, false, (void ***)objs_out, n_out);
}

int store_index_keys(store *s, const char *index, const char *value, char ***keys_out,
                     size_t *n_out)
{
    if (index == NULL) {
        *keys_out = NULL;
        *n_out = 0;
        return KC_ERR_INVALID_ARG;
    }
    return list_common(s, index, value, true, (void ***)keys_out, n_out);
}
