/*
 * kc_client_verbs - the typed verbs of the REST client (get, list, create,
 * update, patch, apply, delete, list-all, subresources) over the request
 * engine of kc_client.c.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_client.h"
#include "kc_client_internal.h"
#include "pv_json.h"
#include "pv_strbuf.h"

#define LIST_ALL_DEFAULT_LIMIT 500

static const char *meta_string(json_object *obj, const char *key)
{
    json_object *meta, *v;
    if (!obj || !json_object_object_get_ex(obj, "metadata", &meta) ||
        !json_object_object_get_ex(meta, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    return (s && *s) ? s : NULL;
}

/* Serialize a borrowed body (json-c caches the text inside the object). */
static int body_text(json_object *body, const char **text, size_t *len, kc_error *err)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (!s)
        return kc_error_set(err, KC_ERR_NOMEM, "cannot serialize the request body");
    *text = s;
    *len = n;
    return KC_OK;
}

static int object_path(const kc_ref *ref, char **path, kc_error *err)
{
    return kc_path(ref, NULL, false, path, err);
}

/* Append the write options to *path (fieldManager, dryRun, force). */
static int add_write_params(char **path, const kc_write_opts *wo, bool apply, kc_error *err)
{
    if (!wo)
        return KC_OK;
    /* Adopt *path and hand it back even on oom (partial then): the caller frees it. */
    pv_strbuf b = {.p = *path, .len = strlen(*path), .cap = strlen(*path) + 1};
    if (wo->dry_run)
        kc_client_query_param(&b, "dryRun", "All");
    if (wo->field_manager && *wo->field_manager)
        kc_client_query_param(&b, "fieldManager", wo->field_manager);
    if (apply && wo->force)
        kc_client_query_param(&b, "force", "true");
    *path = b.p;
    if (b.oom)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    return KC_OK;
}

int kc_get(kc_client *c, const kc_ref *ref, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref || !ref->name)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_get: client and a named ref required");
    char *path = NULL;
    int rc = object_path(ref, &path, err);
    if (rc != KC_OK)
        return rc;
    kc_call r = {"GET", path, NULL, NULL, 0, NULL};
    rc = kc_client_json_call(c, &r, out, err);
    free(path);
    return rc;
}

int kc_list(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
            kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_list: client and ref required");
    char *path = NULL;
    int rc = kc_path(ref, opts, false, &path, err);
    if (rc != KC_OK)
        return rc;
    kc_call r = {"GET", path, NULL, NULL, 0, opts ? opts->cancel : NULL};
    rc = kc_client_json_call(c, &r, out, err);
    free(path);
    return rc;
}

int kc_list_each(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, kc_item_fn fn,
                 void *user, json_object **list, size_t *items, kc_error *err)
{
    if (list)
        *list = NULL;
    if (items)
        *items = 0;
    if (!c || !ref || !fn)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_list_each: client, ref and fn required");
    char *path = NULL;
    int rc = kc_path(ref, opts, false, &path, err);
    if (rc != KC_OK)
        return rc;
    kc_call r = {"GET", path, NULL, NULL, 0, opts ? opts->cancel : NULL};
    pv_strbuf resp = {.max = kc_client_max_body(c)};
    rc = kc_client_request(c, &r, &resp, err);
    if (rc == KC_OK)
        rc = kc_list_body_decode(resp.p, resp.len, fn, user, list, items, err);
    free(resp.p);
    free(path);
    return rc;
}

/* The items array of a List, created empty when the server sent none or null. */
static json_object *list_items(json_object *list)
{
    json_object *items;
    if (json_object_object_get_ex(list, "items", &items) &&
        json_object_is_type(items, json_type_array))
        return items;
    items = json_object_new_array();
    if (!items || json_object_object_add(list, "items", items) != 0) {
        json_object_put(items);
        return NULL;
    }
    return items;
}

/*
 * One pass over every page. *gone_mid_list tells a 410 on a continue page
 * (the token expired) from one on the first page.
 */
static int list_pages(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
                      bool *gone_mid_list, kc_error *err)
{
    kc_list_opts o = {0};
    if (opts)
        o = *opts;
    if (o.limit <= 0)
        o.limit = LIST_ALL_DEFAULT_LIMIT;
    json_object *result = NULL, *items = NULL;
    char *cont = NULL;
    int rc = KC_OK;
    *gone_mid_list = false;
    for (;;) {
        json_object *page = NULL;
        if (result) {
            /* resourceVersion may not be sent with continue: the token pins it. */
            o.continue_token = cont;
            o.resource_version = NULL;
            o.resource_version_match = NULL;
        }
        rc = kc_list(c, ref, &o, &page, err);
        if (rc != KC_OK) {
            *gone_mid_list = result && rc == KC_ERR_GONE;
            break;
        }
        json_object *page_items = list_items(page);
        if (!page_items) {
            json_object_put(page);
            rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
            break;
        }
        if (!result) {
            result = page;
            items = page_items;
        } else {
            size_t n = json_object_array_length(page_items);
            for (size_t i = 0; i < n; i++) {
                json_object *it = json_object_array_get_idx(page_items, i);
                if (json_object_array_add(items, json_object_get(it)) != 0) {
                    json_object_put(it);
                    rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
                    break;
                }
            }
        }
        const char *next = meta_string(page, "continue");
        bool has_next = next != NULL;
        char *next_copy = has_next ? strdup(next) : NULL;
        if (page != result)
            json_object_put(page);
        free(cont);
        cont = next_copy;
        if (rc != KC_OK)
            break;
        if (has_next && !next_copy) {
            rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
            break;
        }
        if (!cont)
            break;
    }
    free(cont);
    if (rc != KC_OK) {
        json_object_put(result);
        return rc;
    }
    json_object *meta;
    if (json_object_object_get_ex(result, "metadata", &meta) &&
        json_object_is_type(meta, json_type_object)) {
        json_object_object_del(meta, "continue");
        json_object_object_del(meta, "remainingItemCount");
    }
    if (out)
        *out = result;
    else
        json_object_put(result);
    return KC_OK;
}

int kc_list_all(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
                kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_list_all: client and ref required");
    bool gone_mid_list = false;
    int rc = list_pages(c, ref, opts, out, &gone_mid_list, err);
    if (rc == KC_ERR_GONE && gone_mid_list) {
        /* The continue token expired (compaction): one fresh pass, as client-go's pager. */
        kc_list_opts o = {0};
        if (opts)
            o = *opts;
        o.continue_token = NULL;
        rc = list_pages(c, ref, &o, out, &gone_mid_list, err);
    }
    return rc;
}

/*
 * The ref a write goes to: namespace and name from the body when the ref has
 * none. *copy is set when the body had to be completed with ref's name.
 */
static int write_target(const kc_ref *ref, json_object *body, bool name_in_path, kc_ref *target,
                        json_object **copy, kc_error *err)
{
    *target = *ref;
    *copy = NULL;
    if (!target->namespace_)
        target->namespace_ = meta_string(body, "namespace");
    const char *body_name = meta_string(body, "name");
    if (ref->name && body_name && strcmp(ref->name, body_name) != 0)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "the ref names \"%s\" but the body's metadata.name is \"%s\"",
                            ref->name, body_name);
    if (ref->name && !body_name && !ref->subresource &&
        json_object_is_type(body, json_type_object)) {
        /* Complete a copy: the caller's object is borrowed and stays as it was. */
        json_object *dup = NULL, *meta = NULL;
        if (json_object_deep_copy(body, &dup, NULL) != 0)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        if (!json_object_object_get_ex(dup, "metadata", &meta) ||
            !json_object_is_type(meta, json_type_object)) {
            meta = json_object_new_object();
            if (!meta || json_object_object_add(dup, "metadata", meta) != 0) {
                json_object_put(meta);
                json_object_put(dup);
                return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
            }
        }
        json_object *name = json_object_new_string(ref->name);
        if (!name || json_object_object_add(meta, "name", name) != 0) {
            json_object_put(name);
            json_object_put(dup);
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
        *copy = dup;
    }
    if (!target->name)
        target->name = body_name;
    if (!name_in_path)
        target->name = (ref->subresource && *ref->subresource) ? target->name : NULL;
    return KC_OK;
}

static int write_call(kc_client *c, const char *verb, const char *method, const kc_ref *ref,
                      json_object *body, const kc_write_opts *wo, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref || !body)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "%s: client, ref and body required", verb);
    bool is_create = !strcmp(method, "POST");
    kc_ref target;
    json_object *copy = NULL;
    int rc = write_target(ref, body, !is_create, &target, &copy, err);
    if (rc != KC_OK)
        return rc;
    if (!is_create && !target.name) {
        json_object_put(copy);
        return kc_error_set(err, KC_ERR_INVALID_ARG, "%s: no name in the ref or the body", verb);
    }
    char *path = NULL;
    const char *text = NULL;
    size_t len = 0;
    if ((rc = object_path(&target, &path, err)) == KC_OK &&
        (rc = add_write_params(&path, wo, false, err)) == KC_OK &&
        (rc = body_text(copy ? copy : body, &text, &len, err)) == KC_OK) {
        kc_call r = {method, path, "application/json", text, len, NULL};
        rc = kc_client_json_call(c, &r, out, err);
    }
    free(path);
    json_object_put(copy);
    return rc;
}

int kc_create(kc_client *c, const kc_ref *ref, json_object *body, const kc_write_opts *wo,
              json_object **out, kc_error *err)
{
    return write_call(c, "kc_create", "POST", ref, body, wo, out, err);
}

int kc_update(kc_client *c, const kc_ref *ref, json_object *body, const kc_write_opts *wo,
              json_object **out, kc_error *err)
{
    return write_call(c, "kc_update", "PUT", ref, body, wo, out, err);
}

static const char *patch_content_type(kc_patch_type t)
{
    switch (t) {
    case KC_PATCH_MERGE:
        return "application/merge-patch+json";
    case KC_PATCH_JSON:
        return "application/json-patch+json";
    case KC_PATCH_STRATEGIC:
        return "application/strategic-merge-patch+json";
    case KC_PATCH_APPLY:
        return "application/apply-patch+yaml";
    default:
        return NULL;
    }
}

int kc_patch(kc_client *c, const kc_ref *ref, kc_patch_type type, json_object *patch,
             const kc_write_opts *wo, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    const char *ctype = patch_content_type(type);
    if (!c || !ref || !ref->name || !patch || !ctype)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "kc_patch: client, a named ref, a known patch type and a patch "
                            "required");
    if (type == KC_PATCH_APPLY && (!wo || !wo->field_manager || !*wo->field_manager))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "kc_patch: server-side apply needs a field manager");
    char *path = NULL;
    const char *text = NULL;
    size_t len = 0;
    int rc;
    /* JSON is YAML: an apply body is sent as the JSON text under the YAML type. */
    if ((rc = object_path(ref, &path, err)) == KC_OK &&
        (rc = add_write_params(&path, wo, type == KC_PATCH_APPLY, err)) == KC_OK &&
        (rc = body_text(patch, &text, &len, err)) == KC_OK) {
        kc_call r = {"PATCH", path, ctype, text, len, NULL};
        rc = kc_client_json_call(c, &r, out, err);
    }
    free(path);
    return rc;
}

/* metav1.DeleteOptions for opts, or NULL in *out when nothing is asked. */
static int delete_options(const kc_delete_opts *opts, json_object **out, kc_error *err)
{
    *out = NULL;
    if (!opts)
        return KC_OK;
    bool pre = (opts->precondition_uid && *opts->precondition_uid) ||
               (opts->precondition_resource_version && *opts->precondition_resource_version);
    bool policy = opts->propagation_policy && *opts->propagation_policy;
    bool grace = opts->grace_period_set && opts->grace_period_seconds >= 0;
    if (!pre && !policy && !grace)
        return KC_OK;
    json_object *o = json_object_new_object();
    bool ok =
        o && pv_json_add_str(o, "kind", "DeleteOptions") && pv_json_add_str(o, "apiVersion", "v1");
    if (ok && policy)
        ok = pv_json_add_str(o, "propagationPolicy", opts->propagation_policy);
    if (ok && grace) {
        ok = pv_json_add_i64(o, "gracePeriodSeconds", opts->grace_period_seconds);
    }
    if (ok && pre) {
        json_object *p = pv_json_add_child(o, "preconditions");
        ok = p != NULL;
        if (ok && opts->precondition_uid && *opts->precondition_uid)
            ok = pv_json_add_str(p, "uid", opts->precondition_uid);
        if (ok && opts->precondition_resource_version && *opts->precondition_resource_version)
            ok = pv_json_add_str(p, "resourceVersion", opts->precondition_resource_version);
    }
    if (!ok) {
        json_object_put(o);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    *out = o;
    return KC_OK;
}

int kc_delete(kc_client *c, const kc_ref *ref, const kc_delete_opts *opts, json_object **out,
              kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_delete: client and ref required");
    json_object *dopts = NULL;
    char *path = NULL;
    int rc;
    if ((rc = delete_options(opts, &dopts, err)) == KC_OK &&
        (rc = object_path(ref, &path, err)) == KC_OK) {
        const char *text = NULL;
        size_t len = 0;
        if (dopts)
            rc = body_text(dopts, &text, &len, err);
        if (rc == KC_OK) {
            kc_call r = {"DELETE", path, dopts ? "application/json" : NULL, text, len, NULL};
            rc = kc_client_json_call(c, &r, out, err);
        }
    }
    free(path);
    json_object_put(dopts);
    return rc;
}
