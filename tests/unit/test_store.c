/*
 * Unit tests of store (src/informer/store.c): CRUD, lists, indexes kept
 * consistent through updates and deletes, relist (store_replace) deltas,
 * reference lifetime, and a reader/writer stress run. Most behaviour tests
 * run against both storage modes (STORE_SHARED and STORE_COMPACT).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_error.h"
#include "store.h"

/* An IPClaim-like object. owners: NULL or a comma-free list "uid1 uid2". */
static json_object *claim(const char *ns, const char *name, const char *rv, const char *pool,
                          const char *owner1, const char *owner2)
{
    json_object *o = json_object_new_object();
    json_object *md = json_object_new_object();
    json_object_object_add(md, "name", json_object_new_string(name));
    if (ns != NULL)
        json_object_object_add(md, "namespace", json_object_new_string(ns));
    if (rv != NULL)
        json_object_object_add(md, "resourceVersion", json_object_new_string(rv));
    if (owner1 != NULL) {
        json_object *refs = json_object_new_array();
        const char *owners[2] = {owner1, owner2};
        for (int i = 0; i < 2 && owners[i] != NULL; i++) {
            json_object *r = json_object_new_object();
            json_object_object_add(r, "kind", json_object_new_string("IPPool"));
            json_object_object_add(r, "uid", json_object_new_string(owners[i]));
            json_object_array_add(refs, r);
        }
        json_object_object_add(md, "ownerReferences", refs);
    }
    json_object_object_add(o, "apiVersion", json_object_new_string("provisio.dev/v1alpha1"));
    json_object_object_add(o, "kind", json_object_new_string("IPClaim"));
    json_object_object_add(o, "metadata", md);
    json_object *spec = json_object_new_object();
    if (pool != NULL)
        json_object_object_add(spec, "pool", json_object_new_string(pool));
    json_object_object_add(o, "spec", spec);
    return o;
}

static const char *field(json_object *o, const char *a, const char *b)
{
    json_object *x, *y;
    if (!json_object_object_get_ex(o, a, &x) || !json_object_object_get_ex(x, b, &y))
        return NULL;
    return json_object_get_string(y);
}

static store *new_store(store_mode mode)
{
    store_opts o = {mode};
    store *s = NULL;
    cr_assert_eq(store_new(&o, &s), KC_OK);
    return s;
}

static store *new_indexed_store(store_mode mode)
{
    store *s = new_store(mode);
    cr_assert_eq(store_add_index(s, "by-pool", store_index_field, (void *)"spec.pool"), KC_OK);
    cr_assert_eq(store_add_index(s, "by-owner", store_index_owner_uid, NULL), KC_OK);
    return s;
}

static void add(store *s, json_object *o)
{
    cr_assert_eq(store_add(s, o, NULL), KC_OK);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The keys of index/value, sorted and joined with ',' (caller frees). */
static char *index_keys(store *s, const char *index, const char *value)
{
    char **keys;
    size_t n;
    cr_assert_eq(store_index_keys(s, index, value, &keys, &n), KC_OK);
    if (n > 0)
        qsort(keys, n, sizeof(*keys), cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(keys[i]) + 1;
    char *out = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, keys[i]);
    }
    store_keys_free(keys, n);
    return out;
}

#define assert_index(s, index, value, want)                                                        \
    do {                                                                                           \
        char *got_ = index_keys(s, index, value);                                                  \
        cr_assert_str_eq(got_, want, "%s=%s", index, value);                                       \
        free(got_);                                                                                \
    } while (0)

/* Run body(mode) once per storage mode, as two tests. */
#define BOTH_MODES(name)                                                                           \
    static void name##_body(store_mode mode);                                                      \
    Test(store_shared, name)                                                                       \
    {                                                                                              \
        name##_body(STORE_SHARED);                                                                 \
    }                                                                                              \
    Test(store_compact, name)                                                                      \
    {                                                                                              \
        name##_body(STORE_COMPACT);                                                                \
    }                                                                                              \
    static void name##_body(store_mode mode)

/* ---- keys ---------------------------------------------------------------- */

Test(store, key_is_namespace_slash_name_or_name_when_cluster_scoped)
{
    char *k;
    json_object *o = claim("team-a", "c1", "1", NULL, NULL, NULL);
    cr_assert_eq(store_key_of(o, &k), KC_OK);
    cr_assert_str_eq(k, "team-a/c1");
    free(k);
    json_object_put(o);
    o = claim(NULL, "pool-1", "1", NULL, NULL, NULL);
    cr_assert_eq(store_key_of(o, &k), KC_OK);
    cr_assert_str_eq(k, "pool-1");
    free(k);
    json_object_put(o);
    o = claim("", "pool-2", "1", NULL, NULL, NULL); /* empty namespace = cluster-scoped */
    cr_assert_eq(store_key_of(o, &k), KC_OK);
    cr_assert_str_eq(k, "pool-2");
    free(k);
    json_object_put(o);
}

Test(store, object_without_name_is_rejected_and_consumed)
{
    char *k = (char *)"x";
    json_object *o = json_tokener_parse("{\"metadata\":{\"namespace\":\"a\"}}");
    cr_assert_eq(store_key_of(o, &k), KC_ERR_INVALID_ARG);
    cr_assert_null(k);
    store *s = new_store(STORE_SHARED);
    cr_assert_eq(store_add(s, o, NULL), KC_ERR_INVALID_ARG); /* o consumed: LSan checks */
    cr_assert_eq(store_len(s), 0);
    store_free(s);
}

/* ---- CRUD ---------------------------------------------------------------- */

BOTH_MODES(add_then_get_returns_the_object)
{
    store *s = new_store(mode);
    add(s, claim("ns", "a", "10", "p1", NULL, NULL));
    json_object *o = NULL;
    cr_assert_eq(store_get(s, "ns/a", &o), KC_OK);
    cr_assert_str_eq(field(o, "metadata", "resourceVersion"), "10");
    cr_assert_str_eq(field(o, "spec", "pool"), "p1");
    cr_assert_eq(store_len(s), 1);
    store_obj_put(o);
    store_free(s);
}

BOTH_MODES(get_of_missing_key_is_not_found)
{
    store *s = new_store(mode);
    json_object *o = (json_object *)1;
    cr_assert_eq(store_get(s, "ns/none", &o), KC_ERR_NOT_FOUND);
    cr_assert_null(o);
    store_free(s);
}

BOTH_MODES(rv_reads_the_resource_version_of_a_key)
{
    store *s = new_store(mode);
    add(s, claim("ns", "a", "10", "p1", NULL, NULL));
    add(s, claim("ns", "b", NULL, "p1", NULL, NULL));
    char *rv = NULL;
    cr_assert_eq(store_rv(s, "ns/a", &rv), KC_OK);
    cr_assert_str_eq(rv, "10");
    free(rv);
    add(s, claim("ns", "a", "11", "p2", NULL, NULL));
    cr_assert_eq(store_rv(s, "ns/a", &rv), KC_OK);
    cr_assert_str_eq(rv, "11");
    free(rv);
    cr_assert_eq(store_rv(s, "ns/b", &rv), KC_OK);
    cr_assert_str_eq(rv, "");
    free(rv);
    rv = (char *)1;
    cr_assert_eq(store_rv(s, "ns/none", &rv), KC_ERR_NOT_FOUND);
    cr_assert_null(rv);
    store_free(s);
}

BOTH_MODES(add_of_existing_key_replaces_and_returns_old)
{
    store *s = new_store(mode);
    json_object *old = (json_object *)1;
    cr_assert_eq(store_add(s, claim("ns", "a", "1", "p1", NULL, NULL), &old), KC_OK);
    cr_assert_null(old);
    cr_assert_eq(store_add(s, claim("ns", "a", "2", "p2", NULL, NULL), &old), KC_OK);
    cr_assert_not_null(old);
    cr_assert_str_eq(field(old, "metadata", "resourceVersion"), "1");
    store_obj_put(old);
    json_object *o;
    cr_assert_eq(store_get(s, "ns/a", &o), KC_OK);
    cr_assert_str_eq(field(o, "metadata", "resourceVersion"), "2");
    cr_assert_eq(store_len(s), 1);
    store_obj_put(o);
    store_free(s);
}

BOTH_MODES(delete_removes_and_returns_the_object)
{
    store *s = new_store(mode);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    add(s, claim("ns", "b", "1", "p1", NULL, NULL));
    json_object *old = NULL;
    cr_assert_eq(store_delete(s, "ns/a", &old), KC_OK);
    cr_assert_str_eq(field(old, "metadata", "name"), "a");
    store_obj_put(old);
    json_object *o;
    cr_assert_eq(store_get(s, "ns/a", &o), KC_ERR_NOT_FOUND);
    cr_assert_eq(store_delete(s, "ns/a", NULL), KC_ERR_NOT_FOUND);
    cr_assert_eq(store_len(s), 1);
    cr_assert_eq(store_delete(s, "ns/b", NULL), KC_OK);
    cr_assert_eq(store_len(s), 0);
    store_free(s);
}

BOTH_MODES(list_returns_every_object_and_key)
{
    store *s = new_store(mode);
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "c%03d", i);
        add(s, claim("ns", name, "1", "p", NULL, NULL));
    }
    for (int i = 0; i < 300; i += 3) {
        snprintf(name, sizeof(name), "ns/c%03d", i);
        cr_assert_eq(store_delete(s, name, NULL), KC_OK);
    }
    json_object **objs;
    size_t n;
    cr_assert_eq(store_list(s, &objs, &n), KC_OK);
    cr_assert_eq(n, 200);
    int seen[300] = {0};
    for (size_t i = 0; i < n; i++) {
        int idx = atoi(field(objs[i], "metadata", "name") + 1);
        cr_assert(idx % 3 != 0, "deleted object c%03d listed", idx);
        cr_assert_eq(seen[idx]++, 0);
    }
    store_objs_free(objs, n);
    char **keys;
    cr_assert_eq(store_list_keys(s, &keys, &n), KC_OK);
    cr_assert_eq(n, 200);
    qsort(keys, n, sizeof(*keys), cmp_str);
    cr_assert_str_eq(keys[0], "ns/c001");
    cr_assert_str_eq(keys[199], "ns/c299");
    store_keys_free(keys, n);
    store_free(s);
}

BOTH_MODES(empty_store_lists_nothing)
{
    store *s = new_store(mode);
    json_object **objs = (json_object **)1;
    size_t n = 9;
    cr_assert_eq(store_list(s, &objs, &n), KC_OK);
    cr_assert_eq(n, 0);
    cr_assert_null(objs);
    store_objs_free(objs, n);
    store_free(s);
}

/* ---- indexes ----------------------------------------------------------- */

BOTH_MODES(index_finds_objects_by_value)
{
    store *s = new_indexed_store(mode);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    add(s, claim("ns", "b", "1", "p2", NULL, NULL));
    add(s, claim("other", "c", "1", "p1", NULL, NULL));
    json_object **objs;
    size_t n;
    cr_assert_eq(store_by_index(s, "by-pool", "p1", &objs, &n), KC_OK);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(field(objs[i], "spec", "pool"), "p1");
    store_objs_free(objs, n);
    assert_index(s, "by-pool", "p1", "ns/a,other/c");
    assert_index(s, "by-pool", "p2", "ns/b");
    assert_index(s, "by-pool", "p3", "");
    store_free(s);
}

BOTH_MODES(index_follows_an_update_that_changes_the_value)
{
    store *s = new_indexed_store(mode);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    add(s, claim("ns", "b", "1", "p1", NULL, NULL));
    add(s, claim("ns", "a", "2", "p2", NULL, NULL));
    assert_index(s, "by-pool", "p1", "ns/b");
    assert_index(s, "by-pool", "p2", "ns/a");
    add(s, claim("ns", "a", "3", NULL, NULL, NULL)); /* field gone: in no bucket */
    assert_index(s, "by-pool", "p2", "");
    add(s, claim("ns", "a", "4", "p1", NULL, NULL));
    assert_index(s, "by-pool", "p1", "ns/a,ns/b");
    store_free(s);
}

BOTH_MODES(index_forgets_deleted_objects)
{
    store *s = new_indexed_store(mode);
    add(s, claim("ns", "a", "1", "p1", "u1", NULL));
    add(s, claim("ns", "b", "1", "p1", "u1", NULL));
    cr_assert_eq(store_delete(s, "ns/a", NULL), KC_OK);
    assert_index(s, "by-pool", "p1", "ns/b");
    assert_index(s, "by-owner", "u1", "ns/b");
    cr_assert_eq(store_delete(s, "ns/b", NULL), KC_OK);
    assert_index(s, "by-pool", "p1", "");
    assert_index(s, "by-owner", "u1", "");
    add(s, claim("ns", "a", "2", "p1", NULL, NULL)); /* re-created bucket works */
    assert_index(s, "by-pool", "p1", "ns/a");
    store_free(s);
}

BOTH_MODES(multi_value_index_puts_an_object_under_each_value)
{
    store *s = new_indexed_store(mode);
    add(s, claim("ns", "a", "1", "p1", "u1", "u2"));
    add(s, claim("ns", "b", "1", "p1", "u2", NULL));
    assert_index(s, "by-owner", "u1", "ns/a");
    assert_index(s, "by-owner", "u2", "ns/a,ns/b");
    add(s, claim("ns", "a", "2", "p1", "u3", "u2")); /* drop u1, add u3 */
    assert_index(s, "by-owner", "u1", "");
    assert_index(s, "by-owner", "u2", "ns/a,ns/b");
    assert_index(s, "by-owner", "u3", "ns/a");
    store_free(s);
}

BOTH_MODES(repeated_index_value_lists_the_object_once)
{
    store *s = new_indexed_store(mode);
    add(s, claim("ns", "a", "1", "p1", "u1", "u1"));
    json_object **objs;
    size_t n;
    cr_assert_eq(store_by_index(s, "by-owner", "u1", &objs, &n), KC_OK);
    cr_assert_eq(n, 1);
    store_objs_free(objs, n);
    cr_assert_eq(store_delete(s, "ns/a", NULL), KC_OK);
    assert_index(s, "by-owner", "u1", "");
    store_free(s);
}

BOTH_MODES(index_added_later_covers_existing_objects)
{
    store *s = new_store(mode);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    add(s, claim("other", "b", "1", "p2", NULL, NULL));
    add(s, claim(NULL, "cluster-thing", "1", "p1", NULL, NULL));
    cr_assert_eq(store_add_index(s, "namespace", store_index_namespace, NULL), KC_OK);
    cr_assert_eq(store_add_index(s, "by-pool", store_index_field, (void *)"spec.pool"), KC_OK);
    assert_index(s, "namespace", "ns", "ns/a");
    assert_index(s, "namespace", "other", "other/b");
    assert_index(s, "by-pool", "p1", "cluster-thing,ns/a");
    cr_assert_eq(store_delete(s, "ns/a", NULL), KC_OK);
    assert_index(s, "namespace", "ns", "");
    assert_index(s, "by-pool", "p1", "cluster-thing");
    store_free(s);
}

Test(store, duplicate_or_unknown_index_is_invalid)
{
    store *s = new_indexed_store(STORE_SHARED);
    cr_assert_eq(store_add_index(s, "by-pool", store_index_namespace, NULL), KC_ERR_INVALID_ARG);
    json_object **objs = (json_object **)1;
    size_t n = 3;
    cr_assert_eq(store_by_index(s, "no-such-index", "x", &objs, &n), KC_ERR_INVALID_ARG);
    cr_assert_null(objs);
    cr_assert_eq(n, 0);
    store_free(s);
}

static int failing_index(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *pool = field(obj, "spec", "pool");
    if (pool != NULL && strcmp(pool, "bad") == 0)
        return KC_ERR_INVALID_ARG;
    return pool != NULL ? store_values_add(out, pool) : KC_OK;
}

BOTH_MODES(failing_index_function_fails_the_write_and_changes_nothing)
{
    store *s = new_store(mode);
    cr_assert_eq(store_add_index(s, "p", failing_index, NULL), KC_OK);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    cr_assert_eq(store_add(s, claim("ns", "a", "2", "bad", NULL, NULL), NULL), KC_ERR_INVALID_ARG);
    json_object *o;
    cr_assert_eq(store_get(s, "ns/a", &o), KC_OK);
    cr_assert_str_eq(field(o, "metadata", "resourceVersion"), "1");
    store_obj_put(o);
    assert_index(s, "p", "p1", "ns/a");
    assert_index(s, "p", "bad", "");
    store_free(s);
}

BOTH_MODES(index_that_fails_on_an_existing_object_is_not_added)
{
    store *s = new_indexed_store(mode);
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        add(s, claim("ns", name, "1", i == 25 ? "bad" : "p1", NULL, NULL));
    }
    cr_assert_eq(store_add_index(s, "p", failing_index, NULL), KC_ERR_INVALID_ARG);
    char **keys;
    size_t n;
    cr_assert_eq(store_index_keys(s, "p", "p1", &keys, &n), KC_ERR_INVALID_ARG);
    cr_assert_eq(store_index_keys(s, "by-pool", "p1", &keys, &n), KC_OK);
    cr_assert_eq(n, 49);
    store_keys_free(keys, n);
    /* The failed index left nothing behind: writes and deletes still work. */
    add(s, claim("ns", "c0", "2", "p2", NULL, NULL));
    cr_assert_eq(store_delete(s, "ns/c1", NULL), KC_OK);
    assert_index(s, "by-pool", "p2", "ns/c0");
    cr_assert_eq(store_add_index(s, "p", failing_index, NULL), KC_ERR_INVALID_ARG);
    cr_assert_eq(store_delete(s, "ns/c25", NULL), KC_OK);
    cr_assert_eq(store_add_index(s, "p", failing_index, NULL), KC_OK);
    assert_index(s, "p", "p2", "ns/c0");
    store_free(s);
}

Test(store, field_index_follows_nested_paths_and_string_arrays)
{
    json_object *o = json_tokener_parse("{\"metadata\":{\"name\":\"x\",\"finalizers\":"
                                        "[\"a/f\",7,\"b/f\"]},\"spec\":{\"deep\":{\"v\":\"d\"},"
                                        "\"n\":5}}");
    store *s = new_store(STORE_SHARED);
    cr_assert_eq(store_add_index(s, "fin", store_index_field, (void *)"metadata.finalizers"),
                 KC_OK);
    cr_assert_eq(store_add_index(s, "deep", store_index_field, (void *)"spec.deep.v"), KC_OK);
    cr_assert_eq(store_add_index(s, "num", store_index_field, (void *)"spec.n"), KC_OK);
    cr_assert_eq(store_add_index(s, "prefix", store_index_field, (void *)"spec.dee"), KC_OK);
    add(s, o);
    assert_index(s, "fin", "a/f", "x");
    assert_index(s, "fin", "b/f", "x");
    assert_index(s, "deep", "d", "x");
    assert_index(s, "num", "5", ""); /* only strings are indexed */
    char **keys;
    size_t n;
    cr_assert_eq(store_index_keys(s, "prefix", "d", &keys, &n), KC_OK);
    cr_assert_eq(n, 0); /* "dee" must not match the key "deep" */
    store_keys_free(keys, n);
    store_free(s);
}

/* ---- relist ------------------------------------------------------------- */

static const store_change *find_change(const store_change *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0)
            return &v[i];
    return NULL;
}

BOTH_MODES(replace_reports_added_updated_and_deleted)
{
    store *s = new_indexed_store(mode);
    add(s, claim("ns", "keep", "1", "p1", NULL, NULL));
    add(s, claim("ns", "bump", "1", "p1", NULL, NULL));
    add(s, claim("ns", "gone", "1", "p1", NULL, NULL));
    add(s, claim("ns", "gone2", "5", "p2", NULL, NULL));
    json_object *list[] = {
        claim("ns", "keep", "1", "p1", NULL, NULL),
        claim("ns", "bump", "2", "p2", NULL, NULL),
        claim("ns", "new", "7", "p2", NULL, NULL),
    };
    store_delta d;
    cr_assert_eq(store_replace(s, list, 3, &d), KC_OK);
    cr_assert_eq(d.n_added, 1);
    cr_assert_eq(d.n_updated, 1);
    cr_assert_eq(d.n_deleted, 2);
    cr_assert_eq(d.n_unchanged, 1);
    cr_assert_eq(d.n_skipped, 0);
    cr_assert_str_eq(d.added[0].key, "ns/new");
    cr_assert_null(d.added[0].old_obj);
    cr_assert_str_eq(field(d.added[0].new_obj, "metadata", "resourceVersion"), "7");
    cr_assert_str_eq(d.updated[0].key, "ns/bump");
    cr_assert_str_eq(field(d.updated[0].old_obj, "metadata", "resourceVersion"), "1");
    cr_assert_str_eq(field(d.updated[0].new_obj, "metadata", "resourceVersion"), "2");
    const store_change *g = find_change(d.deleted, d.n_deleted, "ns/gone");
    cr_assert_not_null(g);
    cr_assert_null(g->new_obj);
    cr_assert_str_eq(field(g->old_obj, "metadata", "name"), "gone");
    cr_assert_not_null(find_change(d.deleted, d.n_deleted, "ns/gone2"));
    store_delta_free(&d);
    cr_assert_eq(store_len(s), 3);
    assert_index(s, "by-pool", "p1", "ns/keep");
    assert_index(s, "by-pool", "p2", "ns/bump,ns/new");
    store_free(s);
}

Test(store_shared, replace_keeps_the_stored_object_when_resource_version_is_unchanged)
{
    store *s = new_store(STORE_SHARED);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    json_object *before;
    cr_assert_eq(store_get(s, "ns/a", &before), KC_OK);
    json_object *list[] = {claim("ns", "a", "1", "p1", NULL, NULL)};
    cr_assert_eq(store_replace(s, list, 1, NULL), KC_OK);
    json_object *after;
    cr_assert_eq(store_get(s, "ns/a", &after), KC_OK);
    cr_assert_eq(before, after);
    store_obj_put(before);
    store_obj_put(after);
    store_free(s);
}

BOTH_MODES(replace_treats_missing_resource_version_as_changed)
{
    store *s = new_store(mode);
    add(s, claim("ns", "a", NULL, "p1", NULL, NULL));
    json_object *list[] = {claim("ns", "a", NULL, "p2", NULL, NULL)};
    store_delta d;
    cr_assert_eq(store_replace(s, list, 1, &d), KC_OK);
    cr_assert_eq(d.n_updated, 1);
    cr_assert_eq(d.n_unchanged, 0);
    store_delta_free(&d);
    store_free(s);
}

BOTH_MODES(replace_skips_nameless_objects_and_the_last_duplicate_wins)
{
    store *s = new_indexed_store(mode);
    json_object *list[] = {
        claim("ns", "a", "1", "p1", NULL, NULL),
        json_tokener_parse("{\"metadata\":{}}"),
        claim("ns", "a", "2", "p2", NULL, NULL),
    };
    store_delta d;
    cr_assert_eq(store_replace(s, list, 3, &d), KC_OK);
    cr_assert_eq(d.n_added, 1);
    cr_assert_eq(d.n_skipped, 2);
    cr_assert_str_eq(field(d.added[0].new_obj, "metadata", "resourceVersion"), "2");
    store_delta_free(&d);
    assert_index(s, "by-pool", "p1", "");
    assert_index(s, "by-pool", "p2", "ns/a");
    store_free(s);
}

BOTH_MODES(replace_with_empty_list_deletes_everything)
{
    store *s = new_indexed_store(mode);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    add(s, claim("ns", "b", "1", "p1", NULL, NULL));
    cr_assert_eq(store_replace(s, NULL, 0, NULL), KC_OK);
    cr_assert_eq(store_len(s), 0);
    assert_index(s, "by-pool", "p1", "");
    store_free(s);
}

BOTH_MODES(replace_of_a_large_list_matches_the_list)
{
    store *s = new_indexed_store(mode);
    char name[32], rv[16], pool[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        snprintf(pool, sizeof(pool), "p%d", i % 7);
        add(s, claim("ns", name, "1", pool, NULL, NULL));
    }
    /* New list: odd ones gone, multiples of 4 bumped, 1000 new. */
    json_object *list[2000];
    size_t n = 0;
    for (int i = 0; i < 3000; i++) {
        if (i < 2000 && i % 2 == 1)
            continue;
        snprintf(name, sizeof(name), "c%d", i);
        snprintf(rv, sizeof(rv), "%d", i % 4 == 0 ? 2 : 1);
        snprintf(pool, sizeof(pool), "p%d", i % 7);
        list[n++] = claim("ns", name, rv, pool, NULL, NULL);
    }
    store_delta d;
    cr_assert_eq(store_replace(s, list, n, &d), KC_OK);
    cr_assert_eq(d.n_added, 1000);
    cr_assert_eq(d.n_deleted, 1000);
    cr_assert_eq(d.n_updated, 500);   /* even i < 2000 with i % 4 == 0: rv 1 -> 2 */
    cr_assert_eq(d.n_unchanged, 500); /* even i < 2000 with i % 4 == 2: still rv 1 */
    store_delta_free(&d);
    cr_assert_eq(store_len(s), 2000);
    size_t total = 0;
    for (int p = 0; p < 7; p++) {
        snprintf(pool, sizeof(pool), "p%d", p);
        char **keys;
        size_t k;
        cr_assert_eq(store_index_keys(s, "by-pool", pool, &keys, &k), KC_OK);
        for (size_t i = 0; i < k; i++) {
            int idx = atoi(keys[i] + 4);
            cr_assert_eq(idx % 7, p);
            cr_assert(idx >= 2000 || idx % 2 == 0, "%s should be deleted", keys[i]);
        }
        total += k;
        store_keys_free(keys, k);
    }
    cr_assert_eq(total, 2000);
    store_free(s);
}

/* ---- reference lifetime ------------------------------------------------------ */

BOTH_MODES(reference_kept_after_delete_and_update_stays_valid)
{
    store *s = new_store(mode);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    json_object *held;
    cr_assert_eq(store_get(s, "ns/a", &held), KC_OK);
    add(s, claim("ns", "a", "2", "p2", NULL, NULL));
    cr_assert_eq(store_delete(s, "ns/a", NULL), KC_OK);
    cr_assert_eq(store_replace(s, NULL, 0, NULL), KC_OK);
    /* ASan would flag a use after free here. */
    cr_assert_str_eq(field(held, "metadata", "resourceVersion"), "1");
    cr_assert_str_eq(field(held, "spec", "pool"), "p1");
    store_obj_put(held);
    store_free(s);
}

BOTH_MODES(reference_outlives_the_store)
{
    store *s = new_store(mode);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    json_object *held;
    cr_assert_eq(store_get(s, "ns/a", &held), KC_OK);
    store_free(s);
    cr_assert_str_eq(field(held, "metadata", "name"), "a");
    store_obj_put(held);
}

Test(store_compact, readers_get_private_copies)
{
    store *s = new_store(STORE_COMPACT);
    add(s, claim("ns", "a", "1", "p1", NULL, NULL));
    json_object *x, *y;
    cr_assert_eq(store_get(s, "ns/a", &x), KC_OK);
    cr_assert_eq(store_get(s, "ns/a", &y), KC_OK);
    cr_assert_neq(x, y);
    json_object *spec;
    cr_assert(json_object_object_get_ex(x, "spec", &spec));
    json_object_object_add(spec, "pool", json_object_new_string("changed"));
    cr_assert_str_eq(field(y, "spec", "pool"), "p1");
    store_obj_put(x);
    cr_assert_eq(store_get(s, "ns/a", &x), KC_OK);
    cr_assert_str_eq(field(x, "spec", "pool"), "p1");
    store_obj_put(x);
    store_obj_put(y);
    store_free(s);
}

BOTH_MODES(add_existed_says_whether_it_replaced_and_keeps_the_new_object)
{
    store *s = new_store(mode);
    bool existed = true;
    cr_assert_eq(store_add_existed(s, claim("ns", "a", "1", "p1", NULL, NULL), &existed), KC_OK);
    cr_assert_not(existed);
    cr_assert_eq(store_add_existed(s, claim("ns", "a", "2", "p2", NULL, NULL), &existed), KC_OK);
    cr_assert(existed);
    json_object *x = NULL;
    cr_assert_eq(store_get(s, "ns/a", &x), KC_OK);
    cr_assert_str_eq(field(x, "spec", "pool"), "p2");
    cr_assert_str_eq(field(x, "metadata", "resourceVersion"), "2");
    store_obj_put(x);
    cr_assert_eq(store_len(s), 1);
    store_free(s);
}

BOTH_MODES(stored_object_round_trips_unchanged)
{
    const char *src =
        "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPClaim\",\"metadata\":{\"name\":"
        "\"c\",\"namespace\":\"n\",\"labels\":{\"a\":\"b\",\"c/d\":\"e\"},\"finalizers\":[\"x/"
        "y\"],\"resourceVersion\":\"99\"},\"spec\":{\"pool\":\"p\",\"n\":1.50,\"big\":"
        "18446744073709551615,\"neg\":-3,\"t\":true,\"z\":null,\"e\":{},\"ea\":[]},\"status\":"
        "{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"message\":\"\\u00e9\\\"q\"}]}}";
    json_object *ref = json_tokener_parse(src);
    store *s = new_store(mode);
    add(s, json_tokener_parse(src));
    json_object *o;
    cr_assert_eq(store_get(s, "n/c", &o), KC_OK);
    cr_assert(json_object_equal(ref, o), "stored object differs from the source");
    store_obj_put(o);
    json_object_put(ref);
    store_free(s);
}

/* ---- concurrency ------------------------------------------------------------ */

enum { RW_KEYS = 300, RW_WRITES = 20000, RW_READERS = 4 };

typedef struct rw_state {
    store *s;
    atomic_int stop;
    atomic_int errors;
    atomic_long reads;
} rw_state;

static void *rw_reader(void *arg)
{
    rw_state *st = arg;
    unsigned seed = 7;
    char key[32], pool[16];
    while (!atomic_load(&st->stop)) {
        int i = (int)(rand_r(&seed) % RW_KEYS);
        snprintf(key, sizeof(key), "ns/c%d", i);
        json_object *o;
        int rc = store_get(st->s, key, &o);
        if (rc == KC_OK) {
            /* An object must be whole: its name matches the key asked for. */
            const char *name = field(o, "metadata", "name");
            if (name == NULL || strcmp(name, key + 3) != 0)
                atomic_fetch_add(&st->errors, 1);
            store_obj_put(o);
        } else if (rc != KC_ERR_NOT_FOUND) {
            atomic_fetch_add(&st->errors, 1);
        }
        snprintf(pool, sizeof(pool), "p%d", i % 5);
        json_object **objs;
        size_t n;
        if (store_by_index(st->s, "by-pool", pool, &objs, &n) != KC_OK) {
            atomic_fetch_add(&st->errors, 1);
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            const char *p = field(objs[j], "spec", "pool");
            if (p == NULL || strcmp(p, pool) != 0)
                atomic_fetch_add(&st->errors, 1); /* index out of step with the object */
        }
        /* Keep some references across the next writes, then drop them. */
        store_objs_free(objs, n);
        atomic_fetch_add(&st->reads, 1);
    }
    return NULL;
}

BOTH_MODES(readers_and_a_writer_run_concurrently_without_tearing)
{
    rw_state st = {new_indexed_store(mode), 0, 0, 0};
    pthread_t r[RW_READERS];
    for (int i = 0; i < RW_READERS; i++)
        pthread_create(&r[i], NULL, rw_reader, &st);
    unsigned seed = 1;
    char name[32], rv[16], pool[16];
    for (int w = 0; w < RW_WRITES; w++) {
        int i = (int)(rand_r(&seed) % RW_KEYS);
        snprintf(name, sizeof(name), "c%d", i);
        int op = (int)(rand_r(&seed) % 10);
        if (op == 0) {
            char key[40];
            snprintf(key, sizeof(key), "ns/%s", name);
            store_delete(st.s, key, NULL);
        } else if (op == 1 && w % 500 == 0) {
            json_object *list[RW_KEYS / 2];
            for (int j = 0; j < RW_KEYS / 2; j++) {
                snprintf(name, sizeof(name), "c%d", j * 2);
                snprintf(pool, sizeof(pool), "p%d", (j * 2) % 5);
                list[j] = claim("ns", name, "r", pool, NULL, NULL);
            }
            cr_assert_eq(store_replace(st.s, list, RW_KEYS / 2, NULL), KC_OK);
        } else {
            snprintf(rv, sizeof(rv), "%d", w);
            /* The pool is a function of the key so readers can check it. */
            snprintf(pool, sizeof(pool), "p%d", i % 5);
            json_object *old = NULL;
            cr_assert_eq(store_add(st.s, claim("ns", name, rv, pool, NULL, NULL), &old), KC_OK);
            store_obj_put(old);
        }
    }
    atomic_store(&st.stop, 1);
    for (int i = 0; i < RW_READERS; i++)
        pthread_join(r[i], NULL);
    cr_assert_eq(atomic_load(&st.errors), 0);
    cr_assert_gt(atomic_load(&st.reads), 0);
    store_free(st.s);
}

/* ---- compression (STORE_COMPACT) ------------------------------------------ */

/* A Reservation-like object i, about 480 bytes of text. */
static char *resv_text(int i, int rv)
{
    char *t = NULL;
    cr_assert(
        asprintf(&t,
                 "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Reservation\","
                 "\"metadata\":{\"creationTimestamp\":\"2026-11-24T02:%02d:%02dZ\","
                 "\"generation\":1,\"labels\":{\"provisio.dev/pool\":\"mem\","
                 "\"provisio.dev/pool-kind\":\"IPPool\"},\"name\":\"ippool.mem.10-100-%d-%d\","
                 "\"resourceVersion\":\"%d\",\"uid\":\"%08x-6f7a-4fd7-a8f3-%012x\"},"
                 "\"spec\":{\"claim\":{\"kind\":\"IPClaim\",\"name\":\"c-%d\",\"namespace\":"
                 "\"mem\",\"uid\":\"%08x-8ffa-418b-b399-%012x\"},\"pool\":{\"kind\":"
                 "\"IPPool\",\"name\":\"mem\"},\"slot\":\"10.100.%d.%d\"}}",
                 i / 60 % 60, i % 60, i / 256, i % 256, rv, (unsigned)(i * 2654435761u),
                 (unsigned)(i * 40503u), i, (unsigned)(i * 97u + 13u), (unsigned)(i * 2246822519u),
                 i / 256, i % 256) > 0);
    return t;
}

Test(store_compact, similar_objects_are_compressed_and_read_back_exactly)
{
    enum { N = 3000 };
    store *s = new_store(STORE_COMPACT);
    size_t text = 0;
    for (int i = 0; i < N; i++) {
        char *t = resv_text(i, 1000 + i);
        text += strlen(t);
        add(s, json_tokener_parse(t));
        free(t);
    }
    size_t stored = store_data_bytes(s);
    /* The first objects are the dictionary's samples and stay text; the rest
     * compress to well under a third. */
    cr_assert_lt(stored * 3, text, "stored %zu bytes for %zu bytes of text", stored, text);
    for (int i = 0; i < N; i++) {
        char *t = resv_text(i, 1000 + i);
        json_object *want = json_tokener_parse(t), *got = NULL;
        char key[64];
        snprintf(key, sizeof key, "ippool.mem.10-100-%d-%d", i / 256, i % 256);
        cr_assert_eq(store_get(s, key, &got), KC_OK, "%s", key);
        cr_assert(json_object_equal(want, got), "%s differs", key);
        store_obj_put(got);
        json_object_put(want);
        free(t);
    }
    /* Updates and deletes keep the count of stored bytes. */
    for (int i = 0; i < N; i += 2) {
        char *t = resv_text(i, 9000 + i);
        add(s, json_tokener_parse(t));
        free(t);
    }
    json_object *got = NULL;
    cr_assert_eq(store_get(s, "ippool.mem.10-100-0-0", &got), KC_OK);
    cr_assert_str_eq(field(got, "metadata", "resourceVersion"), "9000");
    store_obj_put(got);
    for (int i = 0; i < N; i++) {
        char key[64];
        snprintf(key, sizeof key, "ippool.mem.10-100-%d-%d", i / 256, i % 256);
        cr_assert_eq(store_delete(s, key, NULL), KC_OK);
    }
    cr_assert_eq(store_data_bytes(s), 0);
    store_free(s);
}

Test(store_shared, holds_no_compact_bytes)
{
    store *s = new_store(STORE_SHARED);
    char *t = resv_text(1, 1);
    add(s, json_tokener_parse(t));
    free(t);
    cr_assert_eq(store_data_bytes(s), 0);
    store_free(s);
}

/* An object nothing like the samples still round-trips (it may simply not
 * compress). */
Test(store_compact, objects_unlike_the_dictionary_round_trip)
{
    store *s = new_store(STORE_COMPACT);
    for (int i = 0; i < 40; i++) {
        char *t = resv_text(i, i + 1);
        add(s, json_tokener_parse(t));
        free(t);
    }
    const char *odd = "{\"metadata\":{\"name\":\"odd\",\"resourceVersion\":\"7\"},\"data\":"
                      "\"qwertyuiopasdfghjklzxcvbnm0123456789QWERTYUIOPASDFGHJKLZXCVBNM\","
                      "\"list\":[1,2,3,{\"deep\":[[[\"x\"]]]}]}";
    add(s, json_tokener_parse(odd));
    json_object *got = NULL, *want = json_tokener_parse(odd);
    cr_assert_eq(store_get(s, "odd", &got), KC_OK);
    cr_assert(json_object_equal(want, got));
    store_obj_put(got);
    json_object_put(want);
    store_free(s);
}

/* ---- invariants (store.c's top comment), checked by store_check ------------ */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Not deterministic on purpose: the store must never ask an old object again. */
static int flaky_index(json_object *obj, store_values *out, void *user)
{
    (void)obj;
    uint64_t *rng = user;
    char v[8];
    for (uint64_t i = rng_next(rng) % 3; i > 0; i--) {
        snprintf(v, sizeof v, "f%u", (unsigned)(rng_next(rng) % 4));
        int rc = store_values_add(out, v);
        if (rc != KC_OK)
            return rc;
    }
    return KC_OK;
}

static void random_run_keeps_invariants(store_mode mode)
{
    store *s = new_store(mode);
    uint64_t rng = 0x2545F4914F6CDD1Dull, idx_rng = 7;
    cr_assert_eq(store_add_index(s, "by-pool", store_index_field, (void *)"spec.pool"), KC_OK);
    char name[16], rv[16], pool[16], owner[16];
    for (int step = 0; step < 3000; step++) {
        snprintf(name, sizeof name, "c%u", (unsigned)(rng_next(&rng) % 40));
        snprintf(rv, sizeof rv, "%d", step + 1);
        snprintf(pool, sizeof pool, "p%u", (unsigned)(rng_next(&rng) % 5));
        snprintf(owner, sizeof owner, "u%u", (unsigned)(rng_next(&rng) % 6));
        uint64_t op = rng_next(&rng) % 10;
        if (step == 500) /* an index added to a populated store indexes what is there */
            cr_assert_eq(store_add_index(s, "by-owner", store_index_owner_uid, NULL), KC_OK);
        if (step == 1000)
            cr_assert_eq(store_add_index(s, "flaky", flaky_index, &idx_rng), KC_OK);
        if (op < 6) {
            add(s, claim("ns", name, rv, rng_next(&rng) % 4 ? pool : NULL,
                         rng_next(&rng) % 2 ? owner : NULL, NULL));
        } else if (op < 9) {
            char key[32];
            snprintf(key, sizeof key, "ns/%s", name);
            int rc = store_delete(s, key, NULL);
            cr_assert(rc == KC_OK || rc == KC_ERR_NOT_FOUND);
        } else { /* a relist of a few objects, some the same, some gone */
            json_object *objs[4];
            size_t n = rng_next(&rng) % 4;
            for (size_t i = 0; i < n; i++) {
                snprintf(name, sizeof name, "c%u", (unsigned)(rng_next(&rng) % 40));
                objs[i] = claim("ns", name, rv, pool, owner, NULL);
            }
            store_delta d;
            cr_assert_eq(store_replace(s, objs, n, &d), KC_OK);
            store_delta_free(&d);
        }
        const char *bad = store_check(s);
        cr_assert_null(bad, "step %d: %s", step, bad ? bad : "");
    }
    store_free(s);
}

Test(store_shared, invariants_hold_through_a_random_run_of_writes)
{
    random_run_keeps_invariants(STORE_SHARED);
}

Test(store_compact, invariants_hold_through_a_random_run_of_writes)
{
    random_run_keeps_invariants(STORE_COMPACT);
}

Test(store, get_in_by_namespace_and_name)
{
    store *s = new_store(STORE_SHARED);
    char long_ns[300];
    memset(long_ns, 'n', sizeof long_ns - 1);
    long_ns[sizeof long_ns - 1] = '\0';
    add(s, claim("ns1", "a", "1", NULL, NULL, NULL));
    add(s, claim(NULL, "cluster-x", "1", NULL, NULL, NULL));
    add(s, claim(long_ns, "b", "1", NULL, NULL, NULL));
    json_object *o = NULL;
    cr_assert_eq(store_get_in(s, "ns1", "a", &o), KC_OK);
    cr_expect_str_eq(field(o, "metadata", "name"), "a");
    store_obj_put(o);
    cr_assert_eq(store_get_in(s, NULL, "cluster-x", &o), KC_OK, "no namespace: the name alone");
    store_obj_put(o);
    cr_assert_eq(store_get_in(s, "", "cluster-x", &o), KC_OK, "an empty namespace: the name alone");
    store_obj_put(o);
    cr_assert_eq(store_get_in(s, long_ns, "b", &o), KC_OK, "a key longer than the stack buffer");
    cr_expect_str_eq(field(o, "metadata", "name"), "b");
    store_obj_put(o);
    cr_expect_eq(store_get_in(s, "ns2", "a", &o), KC_ERR_NOT_FOUND);
    cr_expect_null(o);
    cr_expect_eq(store_get_in(s, "ns1", NULL, &o), KC_ERR_INVALID_ARG);
    store_free(s);
}
