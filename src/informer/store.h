/*
 * store - the informer's thread-safe cache of Kubernetes objects, keyed
 * "namespace/name" (or "name" when cluster-scoped), with custom indexes
 * (client-go's cache.Indexer / threadSafeMap semantics).
 *
 * One thread (the reflector's) normally writes; any thread reads. A pthread
 * rwlock (writer-preferring) guards the store; every read hands back a
 * reference the reader owns and may keep after the call -- never a pointer the
 * store could free under it.
 *
 * Two ways to hold objects (store_opts.mode):
 *
 *   STORE_SHARED (default): the json-c tree given to store_add is kept and
 *   shared with readers by reference. Object tables and arrays are shrunk to
 *   fit on insert. Reads cost a reference count. Readers MUST treat shared
 *   objects as read-only, and the rule is stricter than "don't modify":
 *   json-c (as built by Debian) counts references without atomics and caches
 *   serialisations inside the object, so on an object from the store
 *     - release it with store_obj_put(), never json_object_put();
 *     - never json_object_get/put it or any part of it, and do not keep
 *       pointers into it past your store_obj_put;
 *     - only look things up: json_object_object_get_ex, array_get_idx,
 *       array_length, get_int/int64/double/boolean, object_foreach, and
 *       json_object_get_string on string-typed values only;
 *     - to serialise it or change it, make a json_object_deep_copy() first
 *       (the copy is yours: json_object_put it as usual).
 *
 *   STORE_COMPACT: the store keeps each object as its compact JSON text
 *   (about the size of the wire form, ~10x smaller than a json-c tree),
 *   compressed with a zstd dictionary made of the store's first objects
 *   (another ~4x for objects of one kind), and every read decompresses and
 *   parses a private copy for the reader. Reads cost a parse
 *   (~10 us for a 600-byte object); the objects readers get are theirs alone.
 *   The same release rule (store_obj_put) applies so callers need not care
 *   which mode a store uses.
 *
 * Objects handed *to* the store (store_add, store_replace) are consumed: the
 * caller's reference passes to the store, even when the call fails. They must
 * be private to the caller (freshly decoded or deep-copied; never an object
 * obtained from a store), because the store may rearrange their tables. A
 * caller that wants to keep using such an object takes its own reference first
 * (json_object_get while the object is still private to it) and releases it
 * later with store_obj_put.
 *
 * Index functions run under the store's write lock: they must be quick, must
 * not call into the store, and must only read the object.
 *
 * Errors: 0 or a negative kc_status (KC_ERR_NOMEM, KC_ERR_INVALID_ARG,
 * KC_ERR_NOT_FOUND). Lists come back in no particular order.
 */
#ifndef PROVISIO_STORE_H
#define PROVISIO_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

typedef struct store store;

typedef enum store_mode {
    STORE_SHARED = 0,
    STORE_COMPACT = 1,
} store_mode;

typedef struct store_opts {
    store_mode mode;
} store_opts;

/* A new empty store; opts may be NULL (STORE_SHARED). */
int store_new(const store_opts *opts, store **out);

/*
 * Free the store and its references. No thread may use s any more; objects
 * readers still hold stay valid until they store_obj_put them. s may be NULL.
 */
void store_free(store *s);

/*
 * Shrink json-c's tables (16 slots an object, ~0.7 KB however few keys it
 * has) and arrays of obj, a private object, to fit: what the store does to
 * what it keeps. For objects held a while before store_add (a list page:
 * 100 DevicePools parsed are ~15 MB unshrunk, ~3 MB shrunk).
 */
void store_shrink(json_object *obj);

/*
 * The key of obj (borrowed): "namespace/name", or "name" when
 * metadata.namespace is absent or empty. *key_out is malloc'd, owned by the
 * caller (free()). KC_ERR_INVALID_ARG if obj has no metadata.name.
 */
int store_key_of(json_object *obj, char **key_out);

/* ---- indexes ------------------------------------------------------------- */

/* The values an index function emits for one object. */
typedef struct store_values store_values;

/* Emit one index value (copied). Duplicates are harmless. 0 or KC_ERR_NOMEM. */
int store_values_add(store_values *v, const char *value);

/*
 * An index function: emit 0..n values for obj (borrowed, read-only) with
 * store_values_add and return 0; a negative status makes the write fail.
 */
typedef int (*store_index_fn)(json_object *obj, store_values *out, void *user);

/*
 * Register index `name` (copied). Objects already in the store are indexed at
 * once. user is borrowed and passed to fn; it must outlive the store.
 * KC_ERR_INVALID_ARG if the name is taken.
 */
int store_add_index(store *s, const char *name, store_index_fn fn, void *user);

/* Ready-made index functions. */
/* "namespace": metadata.namespace (nothing for cluster-scoped objects). */
int store_index_namespace(json_object *obj, store_values *out, void *user);
/* metadata.ownerReferences[].uid. */
int store_index_owner_uid(json_object *obj, store_values *out, void *user);
/*
 * A field given by a dotted path in user (a const char *, e.g. "spec.pool"):
 * a string value is emitted; an array of strings emits each string; anything
 * else emits nothing.
 */
int store_index_field(json_object *obj, store_values *out, void *user);

/* ---- writes (normally the reflector thread) ------------------------------ */

/*
 * Add obj, or replace the object with the same key. obj is consumed (see
 * above). If old_out is non-NULL it receives the object that was replaced
 * (the caller's reference, release with store_obj_put), or NULL when obj is
 * new. On error the store is unchanged.
 */
int store_add(store *s, json_object *obj, json_object **old_out);

/*
 * store_add without the replaced object: *existed says whether obj replaced
 * one. In STORE_COMPACT mode this spares decoding (decompressing and
 * parsing) the replaced object for a caller that has no use for it.
 */
int store_add_existed(store *s, json_object *obj, bool *existed);

/*
 * Delete the object with key (borrowed). If old_out is non-NULL it receives
 * the deleted object (the caller's reference). KC_ERR_NOT_FOUND if absent.
 */
int store_delete(store *s, const char *key, json_object **old_out);

/* One change made by store_replace. key is malloc'd; objects are references
 * the delta owns (store_delta_free releases them). */
typedef struct store_change {
    char *key;
    json_object *old_obj; /* NULL for an add */
    json_object *new_obj; /* NULL for a delete */
} store_change;

typedef struct store_delta {
    store_change *added;
    size_t n_added;
    store_change *updated; /* resourceVersion differs (or is missing) */
    size_t n_updated;
    store_change *deleted; /* in the store, not in the new list */
    size_t n_deleted;
    size_t n_unchanged; /* same key and resourceVersion: the stored object is kept */
    size_t n_skipped;   /* objects without metadata.name, and earlier duplicates of a key */
} store_delta;

/*
 * Replace the whole content with objs[0..n) (a relist), atomically for
 * readers. Every reference in objs is consumed; the array itself stays the
 * caller's. An object whose key exists with the same resourceVersion is
 * unchanged (the stored object is kept, the new one released); a different
 * or missing resourceVersion is an update; stored keys absent from objs are
 * deleted. When delta is non-NULL it is filled with what changed (free it
 * with store_delta_free) so the reflector can emit add/update/delete events.
 * On KC_ERR_NOMEM the store may hold a mix of old and new objects (each one
 * consistent with the indexes) and delta describes what was done: relist.
 * Call store_delta_free on delta whatever the result.
 */
int store_replace(store *s, json_object **objs, size_t n, store_delta *delta);

/* Release what a store_delta holds and zero it. d may be NULL. */
void store_delta_free(store_delta *d);

/* ---- reads (any thread) -------------------------------------------------- */

/*
 * The object with key (borrowed) in *out, a reference owned by the caller
 * (store_obj_put). KC_ERR_NOT_FOUND (and *out NULL) if absent.
 */
int store_get(store *s, const char *key, json_object **out);

/* store_get by namespace and name (the key store_key_of makes: "ns/name",
 * or name alone when ns is NULL or empty). Also KC_ERR_NOMEM. */
int store_get_in(store *s, const char *ns, const char *name, json_object **out);

/*
 * The metadata.resourceVersion of the object with key, as a malloc'd string
 * in *rv_out ("" when it has none), without parsing it in STORE_COMPACT mode:
 * for a caller that keeps what it derived from an object per resourceVersion
 * and reads the object only when that changed. KC_ERR_NOT_FOUND if absent.
 */
int store_rv(store *s, const char *key, char **rv_out);

/* Number of objects. */
size_t store_len(store *s);

/*
 * STORE_COMPACT: bytes the objects take as stored (resourceVersion and the
 * text, or its zstd-compressed form; malloc overhead and the index not
 * counted). 0 in STORE_SHARED mode.
 */
size_t store_data_bytes(store *s);

/*
 * All objects: *objs_out is a malloc'd array of *n_out references owned by the
 * caller; free with store_objs_free. An empty store gives NULL and 0.
 */
int store_list(store *s, json_object ***objs_out, size_t *n_out);

/* All keys: malloc'd array of malloc'd strings; free with store_keys_free. */
int store_list_keys(store *s, char ***keys_out, size_t *n_out);

/*
 * Objects whose index `index` emitted `value` (both borrowed). Same ownership
 * as store_list. KC_ERR_INVALID_ARG if no such index; an unknown value gives
 * an empty result.
 */
int store_by_index(store *s, const char *index, const char *value, json_object ***objs_out,
                   size_t *n_out);

/* Keys of those objects (cheap in both modes: nothing is parsed or shared). */
int store_index_keys(store *s, const char *index, const char *value, char ***keys_out,
                     size_t *n_out);

/* Release one object reference handed out by the store. obj may be NULL. */
void store_obj_put(json_object *obj);

/* store_obj_put each of objs[0..n), then free(objs). objs may be NULL. */
void store_objs_free(json_object **objs, size_t n);

/* free each key and the array. keys may be NULL. */
void store_keys_free(char **keys, size_t n);

/*
 * Check the store's invariants (store.c's top comment: bucket membership
 * both ways, no empty bucket, the byte count) under its read lock: NULL when
 * they hold, else a static text naming the first that does not. Debug and
 * sanitizer builds run the same check inside every write; this is for
 * tests, in any build. Any thread.
 */
const char *store_check(store *s);

#endif
