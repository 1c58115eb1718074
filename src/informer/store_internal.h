/*
 * store_internal - what store.c (entries, lifecycle, writes), store_compact.c
 * (compression, reference counting), store_index.c (pointer set, index
 * membership) and store_read.c (reads) share: the store's types and helpers.
 * Not part of the informer's contract: no other module includes this header.
 */
#ifndef PROVISIO_STORE_INTERNAL_H
#define PROVISIO_STORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <zstd.h>

#include "inf_map.h"
#include "store.h"

/* An open-addressing set of pointers (bucket members). */
typedef struct pset {
    void **slots; /* NULL = empty */
    uint32_t cap; /* 0 or a power of two */
    uint32_t len;
} pset;

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

/* A store's dictionaries; the (de)compression contexts are the process's
 * (store_compact.c). */
typedef struct store_zip {
    pthread_mutex_t mu; /* cdict, the samples */
    ZSTD_CDict *cdict;  /* NULL until the samples are complete */
    char *samples;
    size_t sample_len;
    unsigned n_samples;
    uint64_t n_writes; /* while sampling */
    bool off;          /* the dictionary could not be made: store text */
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

/* The buckets an object belongs to, gathered before a write commits. */
typedef struct bucket_list {
    idx_bucket **v;
    uint32_t n, cap;
} bucket_list;

/* ---- object helpers (store.c) --------------------------------------------- */

/* obj.a.b when it is a string, else NULL. */
const char *store_str_at(json_object *obj, const char *a, const char *b);
/* obj's metadata.resourceVersion, NULL when missing or empty. */
const char *store_obj_rv(json_object *obj);
/* Shrink json-c's hash tables and arrays to fit; only on objects no other thread can see. */
void store_shrink_tree(json_object *o);
/* The index called name, or NULL. */
store_index *store_index_find(store *s, const char *name);

/* ---- reference counting and compression (store_compact.c) ----------------- */

/* json_object_get(obj) under obj's striped lock (pairs with store_obj_put). */
json_object *store_obj_ref(json_object *obj);
/* The stored form of obj (consumed on success and on failure alike, except in shared mode). */
int store_prepare_data(store *s, json_object *obj, void **data_out);
/* Bytes of a compact body (for store_data_bytes). */
size_t store_data_size(const char *data);
/* Free stored data (compact) or drop the store's reference (shared); NULL is fine. */
void store_data_release(store *s, void *data);
/* A reader's reference to an entry's object; call under the lock. NULL when out of memory. */
json_object *store_data_ref(store *s, void *data);
/* Turn stored data that has left the store into a caller's reference (consumes data). */
json_object *store_data_to_obj(store *s, void *data);
/* The stored data and obj have the same non-empty resourceVersion. */
bool store_data_rv_equal(store *s, void *data, json_object *obj);

/* ---- pointer set, values and index membership (store_index.c) ------------- */

/* Insert p; capacity must have been reserved. */
void store_pset_add(pset *ps, void *p);
/* p is in ps. */
bool store_pset_contains(const pset *ps, const void *p);
/* Free v's strings and array; v can be reused. */
void store_values_close(store_values *v);
/* Remove b from its index and free it when it has no members. */
void store_bucket_free_if_empty(idx_bucket *b);
/* Append b to l unless already there; KC_ERR_NOMEM. */
int store_bucket_list_add(bucket_list *l, idx_bucket *b);
/* Undo a failed preparation: free the buckets it created (still empty). */
void store_bucket_list_abort(bucket_list *l);
/* Run index idx on obj and append to l the buckets obj belongs to (under the write lock). */
int store_index_prepare(store_index *idx, json_object *obj, store_values *vals, bucket_list *l);
/* Buckets of obj over all indexes, prepared (see store_index_prepare). */
int store_buckets_prepare(store *s, json_object *obj, bucket_list *l);
/* Make e's memberships exactly l (consumed). Cannot fail. */
void store_buckets_commit(store_entry *e, bucket_list *l);

#endif
