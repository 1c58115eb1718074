/*
 * store - thread-safe object cache with indexes (see store.h).
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
 *
 * Compression (STORE_COMPACT). Objects of one resource repeat most of their
 * text (keys, apiVersion, kind, labels, pool and namespace names, condition
 * messages), so the store keeps a zstd raw-content dictionary made of the
 * texts of one in ZIP_SAMPLE_EVERY of its first writes (ZIP_SAMPLE_OBJECTS
 * objects or ZIP_SAMPLE_BYTES bytes, whichever comes first; spread out, so
 * a claim storm gives both new and Ready claims) and compresses every later
 * write with it: a 480-byte Reservation becomes ~110 bytes, a 590-byte
 * Ready IPClaim ~100 (zstd alone: ~320 and ~370; a dictionary of new claims
 * only: ~240). The dictionary never changes once made, so every compressed
 * body can always be read back; the first writes stay text. Any zstd failure (out of memory)
 * stores the text instead: compression never loses an object. The
 * compression context is behind zip.mu (writers), the decompression context
 * behind zip.dmu (readers run under the shared read lock, several at once);
 * the parse runs outside both.
 *
 * Reference counting. Debian's json-c does not count references atomically,
 * so two threads must never json_object_get/put the same object at once.
 * Every get/put of an object the store has shared goes through
 * obj_ref()/store_obj_put(), which hold one of a few striped mutexes chosen
 * by the object's address. The store takes the reader's reference while it
 * still holds its lock, so the object cannot be freed in between.
 */
#include "store.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "inf_map.h"
#include "kc_error.h"
#include "pv_assert.h"

#define ZIP_SAMPLE_OBJECTS 16
#define ZIP_SAMPLE_EVERY 32 /* one write in 32 is a sample: a mix of the objects' states */
#define ZIP_SAMPLE_BYTES 8192
#define ZIP_LEVEL 1
#define ZIP_TAG 'Z'
/* Debug builds walk the whole store after each write only up to this many entries. */
#define CHECK_WALK_MAX 2048

/* ---- reference counting across threads ----------------------------------- */

#define REF_STRIPES 64
static pthread_mutex_t ref_locks[REF_STRIPES];
static pthread_once_t ref_once = PTHREAD_ONCE_INIT;

static void ref_locks_init(void)
{
    for (size_t i = 0; i < REF_STRIPES; i++)
        pthread_mutex_init(&ref_locks[i], NULL);
}

static pthread_mutex_t *ref_lock_of(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9e3779b97f4a7c15ULL;
    return &ref_locks[(x >> 58) % REF_STRIPES];
}

static json_object *obj_ref(json_object *obj)
{
    pthread_once(&ref_once, ref_locks_init);
    pthread_mutex_t *m = ref_lock_of(obj);
    pthread_mutex_lock(m);
    json_object_get(obj);
    pthread_mutex_unlock(m);
    return obj;
}

void store_obj_put(json_object *obj)
{
    if (obj == NULL)
        return;
    pthread_once(&ref_once, ref_locks_init);
    pthread_mutex_t *m = ref_lock_of(obj);
    pthread_mutex_lock(m);
    json_object_put(obj);
    pthread_mutex_unlock(m);
}

void store_objs_free(json_object **objs, size_t n)
{
    if (objs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        store_obj_put(objs[i]);
    free(objs);
}

void store_keys_free(char **keys, size_t n)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* ---- pointer set (bucket members) ----------------------------------------- */

typedef struct pset {
    void **slots; /* NULL = empty */
    uint32_t cap; /* 0 or a power of two */
    uint32_t len;
} pset;

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
static void pset_add(pset *ps, void *p)
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

static bool pset_contains(const pset *ps, const void *p)
{
    if (ps->len == 0)
        return false;
    size_t mask = ps->cap - 1;
    for (size_t i = pset_home(ps, p); ps->slots[i] != NULL; i = (i + 1) & mask)
        if (ps->slots[i] == p)
            return true;
    return false;
}

/* ---- types ---------------------------------------------------------------- */

typedef struct store_index store_index;

typedef struct idx_bucket {
    store_index *idx;
    pset members; /* store_entry * */
    char value[];
} idx_bucket;

struct store_index {
    char *name;
    store_index_fn fn;
    void *user;
    inf_map buckets; /* value -> idx_bucket */
};

typedef struct store_entry {
    void *data;           /* json_object * (shared) or "rv\0json" (compact) */
    idx_bucket **buckets; /* NULL when n_buckets == 0 */
    uint32_t n_buckets;
    char key[];
} store_entry;

struct store_values {
    char **v;
    size_t n, cap;
};

typedef struct store_zip {
    pthread_mutex_t mu; /* cctx, cdict, the samples */
    ZSTD_CCtx *cctx;
    ZSTD_CDict *cdict; /* NULL until the samples are complete */
    char *samples;
    size_t sample_len;
    unsigned n_samples;
    uint64_t n_writes;   /* while sampling */
    bool off;            /* the dictionary could not be made: store text */
    pthread_mutex_t dmu; /* dctx */
    ZSTD_DCtx *dctx;
    ZSTD_DDict *ddict; /* made with cdict, before any compressed body exists */
} store_zip;

struct store {
    pthread_rwlock_t lock;
    inf_map entries; /* key -> store_entry */
    store_index **indexes;
    size_t n_indexes;
    bool compact;
    size_t data_bytes; /* compact mode: bytes of all bodies (under the write lock) */
    store_zip zip;
};

/* ---- object helpers -------------------------------------------------------- */

static const char *str_at(json_object *obj, const char *a, const char *b)
{
    json_object *x, *y;
    if (!json_object_object_get_ex(obj, a, &x) || !json_object_object_get_ex(x, b, &y))
        return NULL;
    if (!json_object_is_type(y, json_type_string))
        return NULL;
    return json_object_get_string(y);
}

static const char *obj_rv(json_object *obj)
{
    const char *rv = str_at(obj, "metadata", "resourceVersion");
    return rv != NULL && rv[0] != '\0' ? rv : NULL;
}

int store_key_of(json_object *obj, char **key_out)
{
    *key_out = NULL;
    const char *name = str_at(obj, "metadata", "name");
    if (name == NULL || name[0] == '\0')
        return KC_ERR_INVALID_ARG;
    const char *ns = str_at(obj, "metadata", "namespace");
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
static void shrink_tree(json_object *o)
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
                shrink_tree(v);
        }
    } else if (json_object_is_type(o, json_type_array)) {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++) {
            json_object *v = json_object_array_get_idx(o, i);
            if (v != NULL)
                shrink_tree(v);
        }
        (void)json_object_array_shrink(o, 0);
    }
}

/* ---- compression (STORE_COMPACT) ----------------------------------------------- */

/* A compact entry's buffer with its "rv\0" head written and room for
 * body_len more bytes after it; NULL when out of memory. */
static char *data_new(const char *rv, size_t rvlen, size_t body_len)
{
    char *buf = malloc(rvlen + 1 + body_len);
    if (buf == NULL)
        return NULL;
    if (rvlen)
        memcpy(buf, rv, rvlen);
    buf[rvlen] = '\0';
    return buf;
}

/* Make the dictionaries from the samples; under zip.mu. */
static void zip_make_dict(store_zip *z)
{
    z->cctx = ZSTD_createCCtx();
    z->dctx = ZSTD_createDCtx();
    z->cdict = ZSTD_createCDict(z->samples, z->sample_len, ZIP_LEVEL);
    z->ddict = ZSTD_createDDict(z->samples, z->sample_len);
    if (!z->cctx || !z->dctx || !z->cdict || !z->ddict) {
        ZSTD_freeCCtx(z->cctx);
        ZSTD_freeDCtx(z->dctx);
        ZSTD_freeCDict(z->cdict);
        ZSTD_freeDDict(z->ddict);
        z->cctx = NULL;
        z->dctx = NULL;
        z->cdict = NULL;
        z->ddict = NULL;
        z->off = true;
    }
    free(z->samples);
    z->samples = NULL;
}

/*
 * The body of a compact entry with js compressed: "rv\0" 'Z' len frame,
 * malloc'd; or NULL to store the text (no dictionary yet, zstd failed, or
 * no gain).
 */
static char *zip_body(store *s, const char *rv, size_t rvlen, const char *js, size_t jlen)
{
    store_zip *z = &s->zip;
    char *buf = NULL;
    pthread_mutex_lock(&z->mu);
    if (z->cdict == NULL && !z->off) {
        /* Still sampling: keep one text in ZIP_SAMPLE_EVERY (whole, or up to
         * the limit). */
        if (z->n_writes++ % ZIP_SAMPLE_EVERY != 0) {
            pthread_mutex_unlock(&z->mu);
            return NULL;
        }
        size_t take =
            jlen < ZIP_SAMPLE_BYTES - z->sample_len ? jlen : ZIP_SAMPLE_BYTES - z->sample_len;
        if (z->samples == NULL)
            z->samples = malloc(ZIP_SAMPLE_BYTES);
        if (z->samples == NULL) {
            z->off = true;
        } else {
            memcpy(z->samples + z->sample_len, js, take);
            z->sample_len += take;
            z->n_samples++;
            if (z->n_samples >= ZIP_SAMPLE_OBJECTS || z->sample_len >= ZIP_SAMPLE_BYTES)
                zip_make_dict(z);
        }
        pthread_mutex_unlock(&z->mu);
        return NULL; /* a sample is stored as text */
    }
    if (z->cdict != NULL && jlen <= UINT32_MAX) {
        size_t bound = ZSTD_compressBound(jlen);
        size_t head = rvlen + 1 + 1 + sizeof(uint32_t);
        buf = data_new(rv, rvlen, 1 + sizeof(uint32_t) + bound);
        if (buf != NULL) {
            size_t n = ZSTD_compress_usingCDict(z->cctx, buf + head, bound, js, jlen, z->cdict);
            if (ZSTD_isError(n) || n >= jlen) {
                free(buf);
                buf = NULL;
            } else {
                buf[rvlen + 1] = ZIP_TAG;
                uint32_t n32 = (uint32_t)n;
                memcpy(buf + rvlen + 2, &n32, sizeof n32);
                char *fit = realloc(buf, head + n);
                if (fit != NULL)
                    buf = fit;
            }
        }
    }
    pthread_mutex_unlock(&z->mu);
    return buf;
}

/* Parse a compact body; NULL on failure (out of memory, or a body that
 * does not decompress, which the store never writes). */
static json_object *zip_parse(store *s, const char *body)
{
    if (body[0] != ZIP_TAG)
        return json_tokener_parse(body);
    store_zip *z = &s->zip;
    uint32_t n;
    memcpy(&n, body + 1, sizeof n);
    const char *frame = body + 1 + sizeof n;
    unsigned long long len = ZSTD_getFrameContentSize(frame, n);
    if (len == ZSTD_CONTENTSIZE_ERROR || len == ZSTD_CONTENTSIZE_UNKNOWN || len >= SIZE_MAX)
        return NULL;
    char *text = malloc((size_t)len + 1);
    if (text == NULL)
        return NULL;
    pthread_mutex_lock(&z->dmu);
    size_t got = ZSTD_decompress_usingDDict(z->dctx, text, (size_t)len, frame, n, z->ddict);
    pthread_mutex_unlock(&z->dmu);
    json_object *o = NULL;
    if (!ZSTD_isError(got) && got == len) {
        text[got] = '\0';
        o = json_tokener_parse(text);
    }
    free(text);
    return o;
}

/* The stored form of obj (consumed on success and on failure alike, except
 * that in shared mode the returned data *is* obj). */
static int prepare_data(store *s, json_object *obj, void **data_out)
{
    *data_out = NULL;
    if (!s->compact) {
        shrink_tree(obj);
        *data_out = obj;
        return KC_OK;
    }
    const char *rv = obj_rv(obj);
    size_t rvlen = rv ? strlen(rv) : 0, jlen = 0;
    const char *js = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &jlen);
    if (js == NULL)
        return KC_ERR_NOMEM;
    char *buf = zip_body(s, rv, rvlen, js, jlen);
    if (buf == NULL) {
        buf = data_new(rv, rvlen, jlen + 1);
        if (buf == NULL)
            return KC_ERR_NOMEM;
        memcpy(buf + rvlen + 1, js, jlen + 1);
    }
    *data_out = buf;
    return KC_OK;
}

/* Bytes of a compact body (for store_data_bytes). */
static size_t data_size(const char *data)
{
    size_t rvlen = strlen(data);
    const char *body = data + rvlen + 1;
    if (body[0] == ZIP_TAG) {
        uint32_t n;
        memcpy(&n, body + 1, sizeof n);
        return rvlen + 1 + 1 + sizeof n + n;
    }
    return rvlen + 1 + strlen(body) + 1;
}

static void data_release(store *s, void *data)
{
    if (data == NULL)
        return;
    if (s->compact)
        free(data);
    else
        store_obj_put(data);
}

/* A reader's reference to an entry's object; call under the lock. NULL on
 * parse failure (out of memory). */
static json_object *data_ref(store *s, void *data)
{
    if (!s->compact)
        return obj_ref(data);
    const char *buf = data;
    return zip_parse(s, buf + strlen(buf) + 1);
}

/* Turn stored data that has left the store into a caller's reference
 * (consumes data). */
static json_object *data_to_obj(store *s, void *data)
{
    if (data == NULL)
        return NULL;
    if (!s->compact)
        return data;
    json_object *o = data_ref(s, data);
    free(data);
    return o;
}

static bool data_rv_equal(store *s, void *data, json_object *obj)
{
    const char *a = s->compact ? (const char *)data : obj_rv(data);
    const char *b = obj_rv(obj);
    return a != NULL && b != NULL && a[0] != '\0' && strcmp(a, b) == 0;
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

static void values_close(store_values *v)
{
    values_clear(v);
    free(v->v);
    v->v = NULL;
    v->cap = 0;
}

/* ---- index membership --------------------------------------------------------- */

static void bucket_free_if_empty(idx_bucket *b)
{
    if (b->members.len != 0)
        return;
    inf_map_remove(&b->idx->buckets, b->value);
    free(b->members.slots);
    free(b);
}

typedef struct bucket_list {
    idx_bucket **v;
    uint32_t n, cap;
} bucket_list;

static int bucket_list_add(bucket_list *l, idx_bucket *b)
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
static void bucket_list_abort(bucket_list *l)
{
    for (uint32_t i = 0; i < l->n; i++)
        bucket_free_if_empty(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/*
 * Run index idx on obj and append to l the buckets obj belongs to, creating
 * missing ones and reserving room for one more member in each. Under the
 * write lock.
 */
static int index_prepare(store_index *idx, json_object *obj, store_values *vals, bucket_list *l)
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
        if (bucket_list_add(l, b) != KC_OK) {
            bucket_free_if_empty(b);
            return KC_ERR_NOMEM;
        }
        if (pset_reserve(&b->members, 1) != KC_OK)
            return KC_ERR_NOMEM;
    }
    return KC_OK;
}

/* Buckets of obj over all indexes, prepared (see index_prepare). */
static int buckets_prepare(store *s, json_object *obj, bucket_list *l)
{
    if (s->n_indexes == 0)
        return KC_OK;
    store_values vals = {0};
    int rc = KC_OK;
    for (size_t i = 0; i < s->n_indexes && rc == KC_OK; i++)
        rc = index_prepare(s->indexes[i], obj, &vals, l);
    values_close(&vals);
    if (rc != KC_OK)
        bucket_list_abort(l);
    return rc;
}

/* Make e's memberships exactly l (consumed). Cannot fail. */
static void buckets_commit(store_entry *e, bucket_list *l)
{
    for (uint32_t i = 0; i < e->n_buckets; i++)
        pset_remove(&e->buckets[i]->members, e);
    for (uint32_t i = 0; i < l->n; i++) {
        pset_add(&l->v[i]->members, e);
        PV_ASSERT(pset_contains(&l->v[i]->members, e));
    }
    for (uint32_t i = 0; i < e->n_buckets; i++)
        bucket_free_if_empty(e->buckets[i]);
    free(e->buckets);
    e->buckets = l->v;
    e->n_buckets = l->n;
    l->v = NULL;
    l->n = l->cap = 0;
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
    int rc = buckets_prepare(s, obj, &l);
    if (rc != KC_OK)
        return rc;
    store_entry *e = inf_map_get(&s->entries, key);
    bool fresh = e == NULL;
    if (fresh) {
        size_t klen = strlen(key);
        e = calloc(1, sizeof(*e) + klen + 1);
        if (e == NULL || inf_map_reserve(&s->entries, 1) != KC_OK) {
            free(e);
            bucket_list_abort(&l);
            return KC_ERR_NOMEM;
        }
        memcpy(e->key, key, klen + 1);
        (void)inf_map_put(&s->entries, e->key, e); /* reserved: cannot fail */
    }
    buckets_commit(e, &l);
    *old_data = e->data;
    e->data = data;
    if (s->compact) {
        s->data_bytes += data_size(data);
        if (*old_data != NULL)
            s->data_bytes -= data_size(*old_data);
    }
    return KC_OK;
}

/* Remove e under the write lock; returns its data. */
static void *remove_locked(store *s, store_entry *e)
{
    bucket_list none = {0};
    buckets_commit(e, &none);
    inf_map_remove(&s->entries, e->key);
    void *data = e->data;
    if (s->compact && data != NULL)
        s->data_bytes -= data_size(data);
    free(e);
    return data;
}

static store_index *index_find(store *s, const char *name)
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
            if (!pset_contains(&b->members, e))
                return "b is in e->buckets => e is in bucket b's members";
            for (uint32_t j = 0; j < i; j++)
                if (e->buckets[j] == b)
                    return "an entry lists each of its buckets once";
        }
        memberships += e->n_buckets;
        if (s->compact)
            bytes += data_size(e->data);
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
    pthread_mutex_init(&s->zip.dmu, NULL);
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
        data_release(s, e->data);
        free(e->buckets);
        free(e);
    }
    inf_map_close(&s->entries);
    for (size_t i = 0; i < s->n_indexes; i++)
        index_free(s->indexes[i]);
    free(s->indexes);
    ZSTD_freeCCtx(s->zip.cctx);
    ZSTD_freeDCtx(s->zip.dctx);
    ZSTD_freeCDict(s->zip.cdict);
    ZSTD_freeDDict(s->zip.ddict);
    free(s->zip.samples);
    pthread_mutex_destroy(&s->zip.mu);
    pthread_mutex_destroy(&s->zip.dmu);
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
    int rc = index_find(s, name) != NULL ? KC_ERR_INVALID_ARG : KC_OK;
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
        json_object *obj = s->compact ? data_ref(s, e->data) : e->data;
        if (obj == NULL) {
            rc = KC_ERR_NOMEM;
            break;
        }
        bucket_list l = {0};
        for (uint32_t i = 0; i < e->n_buckets; i++)
            if ((rc = bucket_list_add(&l, e->buckets[i])) != KC_OK)
                break;
        uint32_t had = l.n;
        if (rc == KC_OK)
            rc = index_prepare(idx, obj, &vals, &l);
        if (s->compact)
            json_object_put(obj); /* private parse */
        if (rc == KC_OK) {
            /* l = old buckets + new ones; only the new ones need a member. */
            for (uint32_t i = had; i < l.n; i++)
                pset_add(&l.v[i]->members, e);
            free(e->buckets);
            e->buckets = l.v;
            e->n_buckets = l.n;
        } else {
            for (uint32_t i = had; i < l.n; i++)
                bucket_free_if_empty(l.v[i]);
            free(l.v);
        }
    }
    values_close(&vals);
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

int store_add(store *s, json_object *obj, json_object **old_out)
{
    if (old_out)
        *old_out = NULL;
    if (s == NULL || obj == NULL) {
        json_object_put(obj);
        return KC_ERR_INVALID_ARG;
    }
    char *key = NULL;
    void *data = NULL;
    int rc = store_key_of(obj, &key);
    if (rc == KC_OK)
        rc = prepare_data(s, obj, &data);
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
    if (old_out)
        *old_out = data_to_obj(s, old);
    else
        data_release(s, old);
    return KC_OK;
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
        *old_out = data_to_obj(s, old);
    else
        data_release(s, old);
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
        if ((rc = prepare_data(s, it->obj, &it->data)) != KC_OK) {
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
        if (e != NULL && data_rv_equal(s, e->data, it->obj)) {
            it->state = RI_UNCHANGED;
            continue;
        }
        rc = upsert_locked(s, it->key, it->obj, it->data, &it->old);
        if (rc != KC_OK)
            break;
        it->state = e != NULL ? RI_UPDATED : RI_ADDED;
        if (delta != NULL) {
            json_object *nobj = s->compact ? it->obj : obj_ref(it->obj);
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
                delta->updated[u++].old_obj = data_to_obj(s, it->old);
            else
                data_release(s, it->old);
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
            delta->deleted[i].old_obj = data_to_obj(s, gone[i]);
        else
            data_release(s, gone[i]);
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

/* ---- public: reads ------------------------------------------------------------------ */

int store_get(store *s, const char *key, json_object **out)
{
    *out = NULL;
    if (s == NULL || key == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_rwlock_rdlock(&s->lock);
    store_entry *e = inf_map_get(&s->entries, key);
    json_object *o = e != NULL ? data_ref(s, e->data) : NULL;
    pthread_rwlock_unlock(&s->lock);
    if (e == NULL)
        return KC_ERR_NOT_FOUND;
    if (o == NULL)
        return KC_ERR_NOMEM;
    *out = o;
    return KC_OK;
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
    void *item = c->keys ? (void *)strdup(e->key) : (void *)data_ref(c->s, e->data);
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
        store_index *idx = index_find(s, index);
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

/* ---- ready-made index functions -------------------------------------------------- */

int store_index_namespace(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *ns = str_at(obj, "metadata", "namespace");
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
