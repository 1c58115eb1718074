/*
 * store_index - index membership of store entries: the open-addressing
 * pointer set of a bucket's members, store_values, preparing and committing
 * an entry's buckets, and the ready-made index functions (part of store; see
 * store.c for the invariants they keep, store_internal.h for the types).
 */
#include "store_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inf_map.h"
#include "kc_error.h"
#include "pv_assert.h"

/* ---- pointer set (bucket members) ----------------------------------------- */

static size_t pset_home(const pset *ps, const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (ps->cap - 1);
}

static int pset_reserve(pset *ps, uint32_t extra)
{
    uint64_t need = (uint64_t)ps->len + extra;
    uint64_t cap = ps->cap ? ps->cap : 2;
    while (need * 4 > cap * 3)
        cap *= 2;
    if (cap == ps->cap)
        return KC_OK;
    if (cap > UINT32_MAX)
        return KC_ERR_NOMEM;
    void **slots = calloc((size_t)cap, sizeof(*slots));
    if (slots == NULL)
        return KC_ERR_NOMEM;
    pset old = *ps;
    ps->slots = slots;
    ps->cap = (uint32_t)cap;
    for (uint32_t j = 0; j < old.cap; j++) {
        if (old.slots[j] == NULL)
            continue;
        size_t i = pset_home(ps, old.slots[j]);
        while (ps->slots[i] != NULL)
            i = (i + 1) & (ps->cap - 1);
        ps->slots[i] = old.slots[j];
    }
    free(old.slots);
    return KC_OK;
}

/* Insert p; capacity must have been reserved. */
void store_pset_add(pset *ps, void *p)
{
    size_t mask = ps->cap - 1;
    size_t i = pset_home(ps, p);
    while (ps->slots[i] != NULL) {
        if (ps->slots[i] == p)
            return;
        i = (i + 1) & mask;
    }
    ps->slots[i] = p;
    ps->len++;
}

static void pset_remove(pset *ps, const void *p)
{
    if (ps->len == 0)
        return;
    size_t mask = ps->cap - 1;
    size_t hole = pset_home(ps, p);
    while (ps->slots[hole] != p) {
        if (ps->slots[hole] == NULL)
            return;
        hole = (hole + 1) & mask;
    }
    size_t j = hole;
    for (;;) {
        j = (j + 1) & mask;
        if (ps->slots[j] == NULL)
            break;
        size_t home = pset_home(ps, ps->slots[j]);
        bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            ps->slots[hole] = ps->slots[j];
            hole = j;
        }
    }
    ps->slots[hole] = NULL;
    ps->len--;
}

bool store_pset_contains(const pset *ps, const void *p)
{
    if (ps->len == 0)
        return false;
    size_t mask = ps->cap - 1;
    for (size_t i = pset_home(ps, p); ps->slots[i] != NULL; i = (i + 1) & mask)
        if (ps->slots[i] == p)
            return true;
    return false;
}

/* ---- store_values ------------------------------------------------------------ */

int store_values_add(store_values *v, const char *value)
{
    if (v == NULL || value == NULL)
        return KC_ERR_INVALID_ARG;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        char **nv = realloc(v->v, cap * sizeof(*nv));
        if (nv == NULL)
            return KC_ERR_NOMEM;
        v->v = nv;
        v->cap = cap;
    }
    char *copy = strdup(value);
    if (copy == NULL)
        return KC_ERR_NOMEM;
    v->v[v->n++] = copy;
    return KC_OK;
}

static void values_clear(store_values *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    v->n = 0;
}

void store_values_close(store_values *v)
{
    values_clear(v);
    free(v->v);
    v->v = NULL;
    v->cap = 0;
}

/* ---- index membership --------------------------------------------------------- */

void store_bucket_free_if_empty(idx_bucket *b)
{
    if (b->members.len != 0)
        return;
    inf_map_remove(&b->idx->buckets, b->value);
    free(b->members.slots);
    free(b);
}

int store_bucket_list_add(bucket_list *l, idx_bucket *b)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (l->v[i] == b)
            return KC_OK;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 2;
        idx_bucket **nv = realloc(l->v, cap * sizeof(*nv));
        if (nv == NULL)
            return KC_ERR_NOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = b;
    return KC_OK;
}

/* Undo a failed preparation: free the buckets it created (still empty). */
void store_bucket_list_abort(bucket_list *l)
{
    for (uint32_t i = 0; i < l->n; i++)
        store_bucket_free_if_empty(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/*
 * Run index idx on obj and append to l the buckets obj belongs to, creating
 * missing ones and reserving room for one more member in each. Under the
 * write lock.
 */
int store_index_prepare(store_index *idx, json_object *obj, store_values *vals, bucket_list *l)
{
    values_clear(vals);
    int rc = idx->fn(obj, vals, idx->user);
    if (rc != KC_OK)
        return rc < 0 ? rc : KC_ERR_INVALID_ARG;
    for (size_t i = 0; i < vals->n; i++) {
        idx_bucket *b = inf_map_get(&idx->buckets, vals->v[i]);
        if (b == NULL) {
            size_t vlen = strlen(vals->v[i]);
            b = calloc(1, sizeof(*b) + vlen + 1);
            if (b == NULL)
                return KC_ERR_NOMEM;
            b->idx = idx;
            memcpy(b->value, vals->v[i], vlen + 1);
            if (inf_map_put(&idx->buckets, b->value, b) != KC_OK) {
                free(b);
                return KC_ERR_NOMEM;
            }
        }
        /* Listed first so that an abort frees it if it is still empty. */
        if (store_bucket_list_add(l, b) != KC_OK) {
            store_bucket_free_if_empty(b);
            return KC_ERR_NOMEM;
        }
        if (pset_reserve(&b->members, 1) != KC_OK)
            return KC_ERR_NOMEM;
    }
    return KC_OK;
}

/* Buckets of obj over all indexes, prepared (see store_index_prepare). */
int store_buckets_prepare(store *s, json_object *obj, bucket_list *l)
{
    if (s->n_indexes == 0)
        return KC_OK;
    store_values vals = {0};
    int rc = KC_OK;
    for (size_t i = 0; i < s->n_indexes && rc == KC_OK; i++)
        rc = store_index_prepare(s->indexes[i], obj, &vals, l);
    store_values_close(&vals);
    if (rc != KC_OK)
        store_bucket_list_abort(l);
    return rc;
}

/* Make e's memberships exactly l (consumed). Cannot fail. */
void store_buckets_commit(store_entry *e, bucket_list *l)
{
    for (uint32_t i = 0; i < e->n_buckets; i++)
        pset_remove(&e->buckets[i]->members, e);
    for (uint32_t i = 0; i < l->n; i++) {
        store_pset_add(&l->v[i]->members, e);
        PV_ASSERT(store_pset_contains(&l->v[i]->members, e));
    }
    for (uint32_t i = 0; i < e->n_buckets; i++)
        store_bucket_free_if_empty(e->buckets[i]);
    free(e->buckets);
    e->buckets = l->v;
    e->n_buckets = l->n;
    l->v = NULL;
    l->n = l->cap = 0;
}

/* ---- ready-made index functions -------------------------------------------------- */

int store_index_namespace(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *ns = store_str_at(obj, "metadata", "namespace");
    if (ns == NULL || ns[0] == '\0')
        return KC_OK;
    return store_values_add(out, ns);
}

int store_index_owner_uid(json_object *obj, store_values *out, void *user)
{
    (void)user;
    json_object *md, *refs;
    if (!json_object_object_get_ex(obj, "metadata", &md) ||
        !json_object_object_get_ex(md, "ownerReferences", &refs) ||
        !json_object_is_type(refs, json_type_array))
        return KC_OK;
    size_t n = json_object_array_length(refs);
    for (size_t i = 0; i < n; i++) {
        json_object *uid;
        if (json_object_object_get_ex(json_object_array_get_idx(refs, i), "uid", &uid) &&
            json_object_is_type(uid, json_type_string)) {
            int rc = store_values_add(out, json_object_get_string(uid));
            if (rc != KC_OK)
                return rc;
        }
    }
    return KC_OK;
}

int store_index_field(json_object *obj, store_values *out, void *user)
{
    const char *path = user;
    if (path == NULL)
        return KC_ERR_INVALID_ARG;
    json_object *cur = obj;
    const char *p = path;
    while (cur != NULL && *p != '\0') {
        const char *dot = strchr(p, '.');
        size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);
        json_object *next = NULL;
        if (!json_object_is_type(cur, json_type_object))
            return KC_OK;
        /* Compare segment by length: no copy, no fixed buffer. */
        json_object_object_foreach(cur, k, v)
        {
            if (strncmp(k, p, len) == 0 && k[len] == '\0') {
                next = v;
                break;
            }
        }
        cur = next;
        p += len;
        if (*p == '.')
            p++;
    }
    if (cur == NULL)
        return KC_OK;
    if (json_object_is_type(cur, json_type_string))
        return store_values_add(out, json_object_get_string(cur));
    if (json_object_is_type(cur, json_type_array)) {
        size_t n = json_object_array_length(cur);
        for (size_t i = 0; i < n; i++) {
            json_object *v = json_object_array_get_idx(cur, i);
            if (json_object_is_type(v, json_type_string)) {
                int rc = store_values_add(out, json_object_get_string(v));
                if (rc != KC_OK)
                    return rc;
            }
        }
    }
    return KC_OK;
}
