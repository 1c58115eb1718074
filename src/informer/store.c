/*
 * store - thread-safe object cache with indexes (see store.h).
 *
 * This file holds the object helpers, entries, the invariant check, the
 * store's lifecycle and its writes. The STORE_COMPACT compression and the
 * reference counting of shared objects are in store_compact.c; the pointer
 * set, store_values and index membership in store_index.c; the reads in
 * store_read.c; the types they share in store_internal.h.
 *
 * Layout. `entries` maps key -> store_entry; an entry holds its key inline,
 * the object (a json-c tree in STORE_SHARED mode, or one malloc'd buffer
 * "resourceVersion\0" + body in STORE_COMPACT mode, the body being either
 * the compact JSON text, NUL-terminated, or 'Z', a 4-byte length and a
 * zstd frame of that text compressed with the store's dictionary) and the
 * index
 * buckets it is a member of. Each index maps value -> bucket; a bucket holds
 * its value inline and the set of member entries (an open-addressing pointer
 * set). Objects are never copied by the store.
 *
 * Invariants (under the write lock):
 *   - e is in bucket b's members  <=>  b is in e->buckets;
 *   - no bucket is empty (a bucket is freed when its last member leaves);
 *   - an entry's buckets are exactly what the index functions emitted for
 *     its current object (they are recomputed on every write; the old object
 *     is never asked again, so index functions need not be deterministic).
 *
 * In debug and sanitizer builds every write checks these before it lets go
 * of the write lock (store_check_locked; PV_ASSERT); store_check runs the
 * same check for tests in any build.
 *
 * Writes prepare everything that can fail (buckets, set and map capacity,
 * the new entry) before touching any membership, then commit with operations
 * that cannot fail; a failed write leaves the store as it was (at most some
 * freshly created, still empty buckets, which are freed at once).
 */
#include "store_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inf_map.h"
#include "kc_error.h"
#include "pv_assert.h"

/* Debug builds walk the whole store after each write only up to this many entries. */
#define CHECK_WALK_MAX 2048

/* ---- object helpers -------------------------------------------------------- */

const char *store_str_at(json_object *obj, const char *a, const char *b)
{
    json_object *x, *y;
    if (!json_object_object_get_ex(obj, a, &x) || !json_object_object_get_ex(x, b, &y))
        return NULL;
    if (!json_object_is_type(y, json_type_string))
        return NULL;
    return json_object_get_string(y);
}

const char *store_obj_rv(json_object *obj)
{
    const char *rv = store_str_at(obj, "metadata", "resourceVersion");
    return rv != NULL && rv[0] != '\0' ? rv : NULL;
}

int store_key_of(json_object *obj, char **key_out)
{
    *key_out = NULL;
    const char *name = store_str_at(obj, "metadata", "name");
    if (name == NULL || name[0] == '\0')
        return KC_ERR_INVALID_ARG;
    const char *ns = store_str_at(obj, "metadata", "namespace");
    size_t nlen = strlen(name), slen = ns != NULL ? strlen(ns) : 0;
    char *k = malloc(slen + (slen ? 1 : 0) + nlen + 1);
    if (k == NULL)
        return KC_ERR_NOMEM;
    char *p = k;
    if (slen) {
        memcpy(p, ns, slen);
        p += slen;
        *p++ = '/';
    }
    memcpy(p, name, nlen + 1);
    *key_out = k;
    return KC_OK;
}

/* Shrink json-c's hash tables (16 slots per object) and arrays (32 slots) to
 * fit. Only on objects no other thread can see. */
void store_shrink_tree(json_object *o)
{
    if (json_object_is_type(o, json_type_object)) {
        struct lh_table *t = json_object_get_object(o);
        int size = 2;
        /* json-c grows a table when count >= size * LH_LOAD_FACTOR (0.66). */
        while ((double)t->count >= (double)size * LH_LOAD_FACTOR)
            size *= 2;
        if (size < t->size)
            (void)lh_table_resize(t, size); /* on failure the table stays as it was */
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            if (v != NULL)
                store_shrink_tree(v);
        }
    } else if (json_object_is_type(o, json_type_array)) {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++) {
            json_object *v = json_object_array_get_idx(o, i);
            if (v != NULL)
                store_shrink_tree(v);
        }
        (void)json_object_array_shrink(o, 0);
    }
}

void store_shrink(json_object *obj)
{
    if (obj != NULL)
        store_shrink_tree(obj);
}

/* ---- entries -------------------------------------------------------------------- */

/*
 * Put key -> data (obj is the parsed form of data, used for the indexes) under
 * the write lock. On success *old_data receives what the entry held (NULL if
 * the key is new) and data belongs to the store; on failure nothing changed.
 */
static int upsert_locked(store *s, const char *key, json_object *obj, void *data, void **old_data)
{
    *old_data = NULL;
    bucket_list l = {0};
    int rc = store_buckets_prepare(s, obj, &l);
    if (rc != KC_OK)
        return rc;
    store_entry *e = inf_map_get(&s->entries, key);
    bool fresh = e == NULL;
    if (fresh) {
        size_t klen = strlen(key);
        e = calloc(1, sizeof(*e) + klen + 1);
        if (e == NULL || inf_map_reserve(&s->entries, 1) != KC_OK) {
            free(e);
            store_bucket_list_abort(&l);
            return KC_ERR_NOMEM;
        }
        memcpy(e->key, key, klen + 1);
        (void)inf_map_put(&s->entries, e->key, e); /* reserved: cannot fail */
    }
    store_buckets_commit(e, &l);
    *old_data = e->data;
    e->data = data;
    if (s->compact) {
        s->data_bytes += store_data_size(data);
        if (*old_data != NULL)
            s->data_bytes -= store_data_size(*old_data);
    }
    return KC_OK;
}

/* Remove e under the write lock; returns its data. */
static void *remove_locked(store *s, store_entry *e)
{
    bucket_list none = {0};
    store_buckets_commit(e, &none);
    inf_map_remove(&s->entries, e->key);
    void *data = e->data;
    if (s->compact && data != NULL)
        s->data_bytes -= store_data_size(data);
    free(e);
    return data;
}

store_index *store_index_find(store *s, const char *name)
{
    for (size_t i = 0; i < s->n_indexes; i++)
        if (strcmp(s->indexes[i]->name, name) == 0)
            return s->indexes[i];
    return NULL;
}

static void index_free(store_index *idx)
{
    size_t pos = 0;
    void *v;
    while (inf_map_next(&idx->buckets, &pos, NULL, &v)) {
        idx_bucket *b = v;
        free(b->members.slots);
        free(b);
    }
    inf_map_close(&idx->buckets);
    free(idx->name);
    free(idx);
}

size_t store_data_bytes(store *s)
{
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->data_bytes;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

/* ---- invariants ----------------------------------------------------------------- */

static bool entry_has_bucket(const store_entry *e, const idx_bucket *b)
{
    for (uint32_t i = 0; i < e->n_buckets; i++)
        if (e->buckets[i] == b)
            return true;
    return false;
}

/*
 * NULL when the invariants of the file's top comment hold (as far as they
 * can be seen without asking the index functions again), else the first
 * that does not. Under the lock (read or write). Nothing is checked past
 * walk_max entries.
 */
static const char *store_check_locked(store *s, size_t walk_max)
{
    if (s->entries.len > walk_max)
        return NULL;
    size_t pos = 0, memberships = 0, bytes = 0;
    void *v;
    while (inf_map_next(&s->entries, &pos, NULL, &v)) {
        const store_entry *e = v;
        if (e->data == NULL)
            return "every entry holds an object";
        for (uint32_t i = 0; i < e->n_buckets; i++) {
            const idx_bucket *b = e->buckets[i];
            if (!store_pset_contains(&b->members, e))
                return "b is in e->buckets => e is in bucket b's members";
            for (uint32_t j = 0; j < i; j++)
                if (e->buckets[j] == b)
                    return "an entry lists each of its buckets once";
        }
        memberships += e->n_buckets;
        if (s->compact)
            bytes += store_data_size(e->data);
    }
    if (s->compact && bytes != s->data_bytes)
        return "data_bytes is the size of every stored body";
    size_t members = 0;
    for (size_t k = 0; k < s->n_indexes; k++) {
        store_index *idx = s->indexes[k];
        size_t bpos = 0;
        while (inf_map_next(&idx->buckets, &bpos, NULL, &v)) {
            const idx_bucket *b = v;
            if (b->members.len == 0)
                return "no bucket is empty";
            if (b->idx != idx || inf_map_get(&idx->buckets, b->value) != b)
                return "a bucket is found in its index under its value";
            uint32_t seen = 0;
            for (uint32_t j = 0; j < b->members.cap; j++) {
                const store_entry *e = b->members.slots[j];
                if (e == NULL)
                    continue;
                seen++;
                if (inf_map_get(&s->entries, e->key) != e)
                    return "a bucket's members are stored entries";
                if (!entry_has_bucket(e, b))
                    return "e is in bucket b's members => b is in e->buckets";
            }
            if (seen != b->members.len)
                return "a bucket's member count is its number of members";
            members += seen;
        }
    }
    if (members != memberships)
        return "memberships seen from entries and from buckets are the same";
    return NULL;
}

const char *store_check(store *s)
{
    pthread_rwlock_rdlock(&s->lock);
    const char *bad = store_check_locked(s, SIZE_MAX);
    pthread_rwlock_unlock(&s->lock);
    return bad;
}

/* Every write lets go of the write lock here: debug builds check the store first. */
static void store_unlock_write(store *s)
{
    PV_CHECK(store_check_locked(s, CHECK_WALK_MAX));
    pthread_rwlock_unlock(&s->lock);
}

/* ---- public: lifecycle ------------------------------------------------------------ */

int store_new(const store_opts *opts, store **out)
{
    *out = NULL;
    store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KC_ERR_NOMEM;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* The reflector must not starve behind a stream of readers. */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int err = pthread_rwlock_init(&s->lock, &a);
    pthread_rwlockattr_destroy(&a);
    if (err != 0) {
        free(s);
        return KC_ERR_NOMEM;
    }
    inf_map_init(&s->entries);
    s->compact = opts != NULL && opts->mode == STORE_COMPACT;
    pthread_mutex_init(&s->zip.mu, NULL);
    *out = s;
    return KC_OK;
}

void store_free(store *s)
{
    if (s == NULL)
        return;
    size_t pos = 0;
    void *v;
    while (inf_map_next(&s->entries, &pos, NULL, &v)) {
        store_entry *e = v;
        store_data_release(s, e->data);
        free(e->buckets);
        free(e);
    }
    inf_map_close(&s->entries);
    for (size_t i = 0; i < s->n_indexes; i++)
        index_free(s->indexes[i]);
    free(s->indexes);
    ZSTD_freeCDict(s->zip.cdict);
    ZSTD_freeDDict(s->zip.ddict);
    free(s->zip.samples);
    pthread_mutex_destroy(&s->zip.mu);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

/* Drop index idx's memberships from every entry (rollback of a failed
 * store_add_index). */
static void index_detach(store *s, store_index *idx)
{
    size_t pos = 0;
    void *v;
    while (inf_map_next(&s->entries, &pos, NULL, &v)) {
        store_entry *e = v;
        uint32_t k = 0;
        for (uint32_t i = 0; i < e->n_buckets; i++)
            if (e->buckets[i]->idx != idx)
                e->buckets[k++] = e->buckets[i];
        e->n_buckets = k;
    }
}

int store_add_index(store *s, const char *name, store_index_fn fn, void *user)
{
    if (s == NULL || name == NULL || fn == NULL)
        return KC_ERR_INVALID_ARG;
    store_index *idx = calloc(1, sizeof(*idx));
    if (idx == NULL)
        return KC_ERR_NOMEM;
    idx->name = strdup(name);
    if (idx->name == NULL) {
        free(idx);
        return KC_ERR_NOMEM;
    }
    idx->fn = fn;
    idx->user = user;
    inf_map_init(&idx->buckets);

    pthread_rwlock_wrlock(&s->lock);
    int rc = store_index_find(s, name) != NULL ? KC_ERR_INVALID_ARG : KC_OK;
    store_index **nv = NULL;
    if (rc == KC_OK) {
        nv = realloc(s->indexes, (s->n_indexes + 1) * sizeof(*nv));
        if (nv == NULL)
            rc = KC_ERR_NOMEM;
        else
            s->indexes = nv;
    }
    /* Index what is already stored. */
    store_values vals = {0};
    size_t pos = 0;
    void *v;
    while (rc == KC_OK && inf_map_next(&s->entries, &pos, NULL, &v)) {
        store_entry *e = v;
        json_object *obj = s->compact ? store_data_ref(s, e->data) : e->data;
        if (obj == NULL) {
            rc = KC_ERR_NOMEM;
            break;
        }
        bucket_list l = {0};
        for (uint32_t i = 0; i < e->n_buckets; i++)
            if ((rc = store_bucket_list_add(&l, e->buckets[i])) != KC_OK)
                break;
        uint32_t had = l.n;
        if (rc == KC_OK)
            rc = store_index_prepare(idx, obj, &vals, &l);
        if (s->compact)
            json_object_put(obj); /* private parse */
        if (rc == KC_OK) {
            /* l = old buckets + new ones; only the new ones need a member. */
            for (uint32_t i = had; i < l.n; i++)
                store_pset_add(&l.v[i]->members, e);
            free(e->buckets);
            e->buckets = l.v;
            e->n_buckets = l.n;
        } else {
            for (uint32_t i = had; i < l.n; i++)
                store_bucket_free_if_empty(l.v[i]);
            free(l.v);
        }
    }
    store_values_close(&vals);
    if (rc == KC_OK) {
        s->indexes[s->n_indexes++] = idx;
    } else {
        index_detach(s, idx); /* entries indexed before the failure */
    }
    store_unlock_write(s);
    if (rc != KC_OK)
        index_free(idx);
    return rc;
}

/* ---- public: writes ------------------------------------------------------------------ */

static int add_common(store *s, json_object *obj, json_object **old_out, bool *existed)
{
    if (old_out)
        *old_out = NULL;
    if (existed)
        *existed = false;
    if (s == NULL || obj == NULL) {
        json_object_put(obj);
        return KC_ERR_INVALID_ARG;
    }
    char *key = NULL;
    void *data = NULL;
    int rc = store_key_of(obj, &key);
    if (rc == KC_OK)
        rc = store_prepare_data(s, obj, &data);
    if (rc != KC_OK) {
        free(key);
        json_object_put(obj); /* still private to us */
        return rc;
    }
    void *old = NULL;
    pthread_rwlock_wrlock(&s->lock);
    rc = upsert_locked(s, key, obj, data, &old);
    store_unlock_write(s);
    free(key);
    if (rc != KC_OK) {
        if (s->compact)
            free(data);
        json_object_put(obj); /* never shared: the write failed */
        return rc;
    }
    if (s->compact)
        json_object_put(obj); /* the store keeps the text */
    if (existed)
        *existed = old != NULL;
    if (old_out)
        *old_out = store_data_to_obj(s, old);
    else
        store_data_release(s, old);
    return KC_OK;
}

int store_add(store *s, json_object *obj, json_object **old_out)
{
    return add_common(s, obj, old_out, NULL);
}

int store_add_existed(store *s, json_object *obj, bool *existed)
{
    return add_common(s, obj, NULL, existed);
}

int store_delete(store *s, const char *key, json_object **old_out)
{
    if (old_out)
        *old_out = NULL;
    if (s == NULL || key == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_rwlock_wrlock(&s->lock);
    store_entry *e = inf_map_get(&s->entries, key);
    void *old = e != NULL ? remove_locked(s, e) : NULL;
    store_unlock_write(s);
    if (e == NULL)
        return KC_ERR_NOT_FOUND;
    if (old_out)
        *old_out = store_data_to_obj(s, old);
    else
        store_data_release(s, old);
    return KC_OK;
}

/* One object of a relist on its way into the store. */
typedef struct replace_item {
    char *key;
    json_object *obj; /* NULL once released */
    void *data;       /* prepared form; NULL once the store owns it or it was released */
    void *old;        /* the data it replaced (updates) */
    enum { RI_SKIP, RI_NEW, RI_ADDED, RI_UPDATED, RI_UNCHANGED } state;
} replace_item;

static void change_push(store_change **v, size_t *n, char *key, json_object *old_obj,
                        json_object *new_obj)
{
    /* Arrays are sized for the worst case up front; no growth here. */
    store_change *c = &(*v)[(*n)++];
    c->key = key;
    c->old_obj = old_obj;
    c->new_obj = new_obj;
}

int store_replace(store *s, json_object **objs, size_t n, store_delta *delta)
{
    if (delta)
        memset(delta, 0, sizeof(*delta));
    if (s == NULL || (objs == NULL && n > 0)) {
        for (size_t i = 0; objs != NULL && i < n; i++)
            json_object_put(objs[i]);
        return KC_ERR_INVALID_ARG;
    }
    int rc = KC_OK;
    replace_item *items = calloc(n ? n : 1, sizeof(*items));
    inf_map fresh; /* key -> replace_item, the last of each key */
    inf_map_init(&fresh);
    store_entry **gone = NULL;
    size_t n_gone = 0, n_skipped = 0;
    if (items == NULL || inf_map_reserve(&fresh, n) != KC_OK)
        rc = KC_ERR_NOMEM;

    /* Outside the lock: keys and stored forms. */
    for (size_t i = 0; i < n && items != NULL; i++) {
        replace_item *it = &items[i];
        it->obj = objs[i];
        it->state = RI_SKIP;
        if (rc != KC_OK || it->obj == NULL)
            continue;
        int krc = store_key_of(it->obj, &it->key);
        if (krc == KC_ERR_NOMEM) {
            rc = krc;
            continue;
        }
        if (krc != KC_OK) {
            n_skipped++;
            continue;
        }
        if ((rc = store_prepare_data(s, it->obj, &it->data)) != KC_OK) {
            it->data = NULL;
            continue;
        }
        replace_item *prev = inf_map_get(&fresh, it->key);
        if (prev != NULL) {
            prev->state = RI_SKIP; /* the later one wins */
            n_skipped++;
        }
        (void)inf_map_put(&fresh, it->key, it); /* reserved */
        it->state = RI_NEW;
    }
    if (items == NULL) {
        for (size_t i = 0; i < n; i++)
            json_object_put(objs[i]);
        inf_map_close(&fresh);
        return KC_ERR_NOMEM;
    }

    pthread_rwlock_wrlock(&s->lock);
    if (rc == KC_OK && delta != NULL) {
        size_t cap_new = n ? n : 1, cap_old = s->entries.len ? s->entries.len : 1;
        delta->added = calloc(cap_new, sizeof(store_change));
        delta->updated = calloc(cap_new, sizeof(store_change));
        delta->deleted = calloc(cap_old, sizeof(store_change));
        if (!delta->added || !delta->updated || !delta->deleted)
            rc = KC_ERR_NOMEM;
    }
    if (rc == KC_OK && s->entries.len > 0) {
        gone = malloc(s->entries.len * sizeof(*gone));
        if (gone == NULL)
            rc = KC_ERR_NOMEM;
    }
    /* Adds and updates. */
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        replace_item *it = &items[i];
        if (it->state != RI_NEW)
            continue;
        store_entry *e = inf_map_get(&s->entries, it->key);
        if (e != NULL && store_data_rv_equal(s, e->data, it->obj)) {
            it->state = RI_UNCHANGED;
            continue;
        }
        rc = upsert_locked(s, it->key, it->obj, it->data, &it->old);
        if (rc != KC_OK)
            break;
        it->state = e != NULL ? RI_UPDATED : RI_ADDED;
        if (delta != NULL) {
            json_object *nobj = s->compact ? it->obj : store_obj_ref(it->obj);
            store_change **v = e != NULL ? &delta->updated : &delta->added;
            size_t *nv = e != NULL ? &delta->n_updated : &delta->n_added;
            change_push(v, nv, it->key, NULL, nobj);
            it->key = NULL; /* now the delta's */
            if (s->compact)
                it->obj = NULL;
        }
        it->data = NULL; /* the store's now */
    }
    /* Deletes: stored keys the new list does not have. */
    if (rc == KC_OK) {
        size_t pos = 0;
        void *v;
        while (inf_map_next(&s->entries, &pos, NULL, &v))
            if (inf_map_get(&fresh, ((store_entry *)v)->key) == NULL)
                gone[n_gone++] = v;
        for (size_t i = 0; i < n_gone; i++) {
            store_entry *e = gone[i];
            char *key = delta != NULL ? strdup(e->key) : NULL;
            if (delta != NULL && key == NULL) {
                rc = KC_ERR_NOMEM;
                n_gone = i;
                break;
            }
            gone[i] = remove_locked(s, e); /* now holds the entry's data */
            if (delta != NULL)
                change_push(&delta->deleted, &delta->n_deleted, key, NULL, NULL);
        }
    } else {
        n_gone = 0;
    }
    store_unlock_write(s);

    /* Outside the lock: hand old objects to the delta, release the rest. */
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        replace_item *it = &items[i];
        if (it->state == RI_UPDATED) {
            if (delta != NULL)
                delta->updated[u++].old_obj = store_data_to_obj(s, it->old);
            else
                store_data_release(s, it->old);
        }
        if (it->state == RI_UNCHANGED && delta != NULL)
            delta->n_unchanged++;
        if (it->data != NULL && s->compact)
            free(it->data);
        /* Shared mode: it->obj is it->data; the store keeps it unless it
         * was not stored. Compact mode: the parsed object is ours. */
        if (it->obj != NULL && (s->compact || (it->state != RI_ADDED && it->state != RI_UPDATED)))
            json_object_put(it->obj); /* never shared */
        free(it->key);
    }
    for (size_t i = 0; i < n_gone; i++) {
        if (delta != NULL)
            delta->deleted[i].old_obj = store_data_to_obj(s, gone[i]);
        else
            store_data_release(s, gone[i]);
    }
    if (delta != NULL)
        delta->n_skipped = n_skipped;
    free(gone);
    free(items);
    inf_map_close(&fresh);
    return rc;
}

void store_delta_free(store_delta *d)
{
    if (d == NULL)
        return;
    store_change *lists[3] = {d->added, d->updated, d->deleted};
    size_t lens[3] = {d->n_added, d->n_updated, d->n_deleted};
    for (size_t j = 0; j < 3; j++) {
        for (size_t i = 0; i < lens[j]; i++) {
            free(lists[j][i].key);
            store_obj_put(lists[j][i].old_obj);
            store_obj_put(lists[j][i].new_obj);
        }
        free(lists[j]);
    }
    memset(d, 0, sizeof(*d));
}
