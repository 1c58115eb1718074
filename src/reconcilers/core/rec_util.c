/*
 * rec_util - conditions, finalizers, owner references and change-only writes
 * shared by the reconcilers.
 *
 * Conditions follow apimachinery's meta.SetStatusCondition: a condition's
 * lastTransitionTime records when its *status* last flipped, so setting the
 * same status again with a new reason or message keeps the old time (a person
 * reading `kubectl describe` sees how long it has been False, not how long
 * since the last reconcile). Times are whole seconds in UTC with 'Z', the form
 * metav1.Time marshals to, so a status written here compares equal to the
 * same status read back from the server and rec_update_status can skip it.
 *
 * Writes never go out unless something changed: rec_update_status compares
 * the would-be status with the cached one (after filling observedGeneration)
 * and rec_ensure_finalizer looks at the cached finalizers first. Both carry
 * the cached resourceVersion, so a decision made on a stale cache fails with
 * a Conflict instead of overwriting a newer object; the caller requeues and
 * decides again from the fresher cache. The API server is the only lock.
 *
 * Lookups (everything taking an object that "may be a store object") only use
 * the read operations store.h allows on shared json-c trees: no references
 * taken, no serialisation, json_object_get_string on strings only.
 */
#include "rec_util.h"
#include "pv_json.h"
#include "pv_strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers -------------------------------------------------------- */

/* The member of obj named by key[0..len), without allocating; NULL if none. */
static json_object *member_n(json_object *obj, const char *key, size_t len)
{
    if (!obj || !json_object_is_type(obj, json_type_object))
        return NULL;
    json_object_object_foreach(obj, k, v)
    {
        if (strlen(k) == len && memcmp(k, key, len) == 0)
            return v;
    }
    return NULL;
}

json_object *rec_obj_at(json_object *obj, const char *dotted_path)
{
    if (!obj || !dotted_path)
        return NULL;
    const char *p = dotted_path;
    json_object *cur = obj;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        cur = member_n(cur, p, len);
        if (!cur || !dot)
            return cur;
        p = dot + 1;
    }
}

const char *rec_obj_str(json_object *obj, const char *dotted_path)
{
    json_object *v = rec_obj_at(obj, dotted_path);
    if (!v || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

int64_t rec_obj_generation(json_object *obj)
{
    json_object *v = rec_obj_at(obj, "metadata.generation");
    if (!v || !json_object_is_type(v, json_type_int))
        return 0;
    return json_object_get_int64(v);
}

bool rec_obj_is_deleting(json_object *obj)
{
    return rec_obj_str(obj, "metadata.deletionTimestamp") != NULL;
}

/* String member of a private-or-shared object, NULL unless a string. */
static const char *str_member(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!obj || !json_object_object_get_ex(obj, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Add a new string member (replacing). false on allocation failure. */
static bool set_str(json_object *obj, const char *key, const char *value)
{
    return pv_json_add_str(obj, key, value ? value : "");
}

/* The member key of a private obj as an object, created when missing; NULL if not an object. */
static json_object *ensure_object(json_object *obj, const char *key, int *rc)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(obj, key, &v)) {
        if (json_object_is_type(v, json_type_object))
            return v;
        *rc = KC_ERR_INVALID_ARG;
        return NULL;
    }
    v = json_object_new_object();
    if (!v || json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        *rc = KC_ERR_NOMEM;
        return NULL;
    }
    return v;
}

const char *rec_format_time(time_t t, char buf[REC_TIME_STRLEN])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return NULL;
    if (strftime(buf, REC_TIME_STRLEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return NULL;
    return buf;
}

bool rec_parse_time(const char *s, time_t *out)
{
    if (s == NULL)
        return false;
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return false;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    long offset = 0;
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        long h = strtol(p + 1, NULL, 10), m = strtol(p + 4, NULL, 10);
        offset = (h * 3600 + m * 60) * (*p == '-' ? -1 : 1);
    } else if (!((*p == 'Z' || *p == 'z') && p[1] == '\0')) {
        return false;
    }
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = t - offset;
    return true;
}

/* ---- conditions ----------------------------------------------------------- */

static bool is_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* A DNS-1123 subdomain prefix ("example.com"), as in qualified names. */
static bool valid_dns_subdomain(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool lower_alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (lower_alnum)
            continue;
        if (ch != '-' && ch != '.')
            return false;
        /* '-' and '.' never start or end a label. */
        if (i == 0 || i + 1 == len || s[i - 1] == '.' || s[i + 1] == '.')
            return false;
    }
    return true;
}

/* Condition type: (dns-subdomain '/')? name, name = [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?. */
static bool valid_condition_type(const char *t)
{
    size_t len = strlen(t);
    if (len == 0 || len > 316)
        return false;
    const char *slash = strchr(t, '/');
    const char *name = t;
    if (slash) {
        if (!valid_dns_subdomain(t, (size_t)(slash - t)))
            return false;
        name = slash + 1;
    }
    size_t n = strlen(name);
    if (n == 0 || n > 63 || !is_alnum(name[0]) || !is_alnum(name[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!is_alnum(ch) && ch != '-' && ch != '_' && ch != '.')
            return false;
    }
    return true;
}

/* ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$, at most 1024. */
static bool valid_reason(const char *r)
{
    size_t len = strlen(r);
    if (len == 0 || len > 1024)
        return false;
    if (!((r[0] >= 'a' && r[0] <= 'z') || (r[0] >= 'A' && r[0] <= 'Z')))
        return false;
    for (size_t i = 1; i < len; i++) {
        char ch = r[i];
        if (!is_alnum(ch) && ch != '_' && ch != ',' && ch != ':')
            return false;
    }
    char last = r[len - 1];
    return is_alnum(last) || last == '_';
}

static bool valid_cond_status(const char *s)
{
    return str_eq(s, REC_COND_TRUE) || str_eq(s, REC_COND_FALSE) || str_eq(s, REC_COND_UNKNOWN);
}

json_object *rec_get_condition(json_object *status, const char *type)
{
    json_object *conds = NULL;
    if (!status || !type || !json_object_is_type(status, json_type_object) ||
        !json_object_object_get_ex(status, "conditions", &conds) ||
        !json_object_is_type(conds, json_type_array))
        return NULL;
    size_t n = json_object_array_length(conds);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(conds, i);
        if (c && json_object_is_type(c, json_type_object) && str_eq(str_member(c, "type"), type))
            return c;
    }
    return NULL;
}

bool rec_condition_is_true(json_object *status, const char *type)
{
    return str_eq(str_member(rec_get_condition(status, type), "status"), REC_COND_TRUE);
}

/* A fresh condition object; NULL on allocation failure. */
static json_object *new_condition(const char *type, const char *cond_status, const char *reason,
                                  const char *message, int64_t generation, const char *ts)
{
    json_object *c = json_object_new_object();
    if (!c)
        return NULL;
    if (!set_str(c, "type", type) || !set_str(c, "status", cond_status) ||
        !pv_json_add_i64(c, "observedGeneration", generation) ||
        !set_str(c, "lastTransitionTime", ts) || !set_str(c, "reason", reason) ||
        !set_str(c, "message", message)) {
        json_object_put(c);
        return NULL;
    }
    return c;
}

int rec_set_condition(json_object *status, const char *type, const char *cond_status,
                      const char *reason, const char *message, int64_t generation, time_t now,
                      bool *changed)
{
    if (changed)
        *changed = false;
    if (!message)
        message = "";
    if (!status || !json_object_is_type(status, json_type_object) || !type ||
        !valid_condition_type(type) || !cond_status || !valid_cond_status(cond_status) || !reason ||
        !valid_reason(reason) || strlen(message) > 32768 || generation < 0)
        return KC_ERR_INVALID_ARG;
    char ts[REC_TIME_STRLEN];
    if (!rec_format_time(now, ts))
        return KC_ERR_INVALID_ARG;

    json_object *conds = NULL;
    if (json_object_object_get_ex(status, "conditions", &conds)) {
        if (!json_object_is_type(conds, json_type_array))
            return KC_ERR_INVALID_ARG;
    } else {
        conds = json_object_new_array();
        if (!conds || json_object_object_add(status, "conditions", conds) != 0) {
            json_object_put(conds);
            return KC_ERR_NOMEM;
        }
    }

    json_object *c = rec_get_condition(status, type);
    if (!c) {
        c = new_condition(type, cond_status, reason, message, generation, ts);
        if (!c || json_object_array_add(conds, c) != 0) {
            json_object_put(c);
            return KC_ERR_NOMEM;
        }
        if (changed)
            *changed = true;
        return KC_OK;
    }

    bool flipped = !str_eq(str_member(c, "status"), cond_status);
    json_object *og = NULL;
    bool same_gen = json_object_object_get_ex(c, "observedGeneration", &og) &&
                    json_object_is_type(og, json_type_int) &&
                    json_object_get_int64(og) == generation;
    bool has_time = str_member(c, "lastTransitionTime") != NULL;
    bool diff = flipped || !has_time || !same_gen || !str_eq(str_member(c, "reason"), reason) ||
                !str_eq(str_member(c, "message"), message);
    if (!diff)
        return KC_OK;
    if (!set_str(c, "status", cond_status) ||
        !pv_json_add_i64(c, "observedGeneration", generation) ||
        ((flipped || !has_time) && !set_str(c, "lastTransitionTime", ts)) ||
        !set_str(c, "reason", reason) || !set_str(c, "message", message))
        return KC_ERR_NOMEM;
    if (changed)
        *changed = true;
    return KC_OK;
}

int rec_remove_condition(json_object *status, const char *type, bool *changed)
{
    if (changed)
        *changed = false;
    if (!status || !type)
        return KC_ERR_INVALID_ARG;
    json_object *conds = NULL;
    if (!json_object_object_get_ex(status, "conditions", &conds) ||
        !json_object_is_type(conds, json_type_array))
        return KC_OK;
    size_t n = json_object_array_length(conds);
    for (size_t i = n; i-- > 0;) {
        json_object *c = json_object_array_get_idx(conds, i);
        if (c && str_eq(str_member(c, "type"), type)) {
            if (json_object_array_del_idx(conds, i, 1) != 0)
                return KC_ERR_NOMEM;
            if (changed)
                *changed = true;
        }
    }
    return KC_OK;
}

/* ---- finalizers ----------------------------------------------------------- */

bool rec_has_finalizer(json_object *obj, const char *name)
{
    json_object *fins = rec_obj_at(obj, "metadata.finalizers");
    if (!name || !fins || !json_object_is_type(fins, json_type_array))
        return false;
    size_t n = json_object_array_length(fins);
    for (size_t i = 0; i < n; i++) {
        json_object *f = json_object_array_get_idx(fins, i);
        if (f && json_object_is_type(f, json_type_string) &&
            strcmp(json_object_get_string(f), name) == 0)
            return true;
    }
    return false;
}

int rec_add_finalizer(json_object *obj, const char *name, bool *changed)
{
    if (changed)
        *changed = false;
    if (!obj || !name || !*name || !json_object_is_type(obj, json_type_object))
        return KC_ERR_INVALID_ARG;
    if (rec_has_finalizer(obj, name))
        return KC_OK;
    int rc = KC_OK;
    json_object *meta = ensure_object(obj, "metadata", &rc);
    if (!meta)
        return rc;
    json_object *fins = NULL;
    if (json_object_object_get_ex(meta, "finalizers", &fins) &&
        !json_object_is_type(fins, json_type_array))
        return KC_ERR_INVALID_ARG;
    if (!fins) {
        fins = json_object_new_array();
        if (!fins || json_object_object_add(meta, "finalizers", fins) != 0) {
            json_object_put(fins);
            return KC_ERR_NOMEM;
        }
    }
    json_object *s = json_object_new_string(name);
    if (!s || json_object_array_add(fins, s) != 0) {
        json_object_put(s);
        return KC_ERR_NOMEM;
    }
    if (changed)
        *changed = true;
    return KC_OK;
}

int rec_remove_finalizer(json_object *obj, const char *name, bool *changed)
{
    if (changed)
        *changed = false;
    if (!obj || !name)
        return KC_ERR_INVALID_ARG;
    json_object *meta = NULL, *fins = NULL;
    if (!json_object_object_get_ex(obj, "metadata", &meta) ||
        !json_object_object_get_ex(meta, "finalizers", &fins) ||
        !json_object_is_type(fins, json_type_array))
        return KC_OK;
    for (size_t i = json_object_array_length(fins); i-- > 0;) {
        json_object *f = json_object_array_get_idx(fins, i);
        if (f && json_object_is_type(f, json_type_string) &&
            strcmp(json_object_get_string(f), name) == 0) {
            if (json_object_array_del_idx(fins, i, 1) != 0)
                return KC_ERR_NOMEM;
            if (changed)
                *changed = true;
        }
    }
    if (json_object_array_length(fins) == 0)
        json_object_object_del(meta, "finalizers");
    return KC_OK;
}

/*
 * The finalizer list of cached (may be shared) with name added or removed, as
 * a new array; NULL in *out when the result is empty.
 */
static int finalizer_list(json_object *cached, const char *name, bool present, json_object **out)
{
    *out = NULL;
    json_object *list = json_object_new_array();
    if (!list)
        return KC_ERR_NOMEM;
    json_object *fins = rec_obj_at(cached, "metadata.finalizers");
    size_t n =
        fins && json_object_is_type(fins, json_type_array) ? json_object_array_length(fins) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *f = json_object_array_get_idx(fins, i);
        if (!f || !json_object_is_type(f, json_type_string))
            continue;
        const char *s = json_object_get_string(f);
        if (strcmp(s, name) == 0)
            continue; /* re-added at the end when wanted */
        json_object *copy = json_object_new_string(s);
        if (!copy || json_object_array_add(list, copy) != 0) {
            json_object_put(copy);
            json_object_put(list);
            return KC_ERR_NOMEM;
        }
    }
    if (present) {
        json_object *s = json_object_new_string(name);
        if (!s || json_object_array_add(list, s) != 0) {
            json_object_put(s);
            json_object_put(list);
            return KC_ERR_NOMEM;
        }
    }
    if (json_object_array_length(list) == 0) {
        json_object_put(list);
        return KC_OK;
    }
    *out = list;
    return KC_OK;
}

int rec_ensure_finalizer(kc_client *c, const kc_ref *ref, json_object *cached, const char *name,
                         bool present, json_object **out, bool *sent, kc_error *err)
{
    if (out)
        *out = NULL;
    if (sent)
        *sent = false;
    if (!c || !ref || !cached || !name || !*name)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_ensure_finalizer: client, ref, object and name required");
    if (rec_has_finalizer(cached, name) == present) {
        kc_error_clear(err);
        return KC_OK;
    }
    const char *rv = rec_obj_str(cached, "metadata.resourceVersion");
    if (!rv || !*rv)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_ensure_finalizer: the object has no resourceVersion");

    json_object *list = NULL;
    int rc = finalizer_list(cached, name, present, &list);
    json_object *patch = rc == KC_OK ? json_object_new_object() : NULL;
    json_object *meta = patch ? json_object_new_object() : NULL;
    bool ok = meta && json_object_object_add(patch, "metadata", meta) == 0;
    if (!ok)
        json_object_put(meta);
    /* null deletes the key in a merge patch: the emptied list goes away. */
    ok = ok && set_str(meta, "resourceVersion", rv) &&
         json_object_object_add(meta, "finalizers", list) == 0;
    if (!ok) {
        json_object_put(list);
        json_object_put(patch);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    kc_ref target = *ref;
    target.subresource = NULL;
    rc = kc_patch(c, &target, KC_PATCH_MERGE, patch, NULL, out, err);
    json_object_put(patch);
    if (sent)
        *sent = true;
    return rc;
}

/* ---- owner references ----------------------------------------------------- */

int rec_owner_ref_new(const char *api_version, const char *kind, const char *name, const char *uid,
                      json_object **out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    if (!api_version || !*api_version || !kind || !*kind || !name || !*name || !uid || !*uid)
        return KC_ERR_INVALID_ARG;
    json_object *o = json_object_new_object();
    json_object *t = o ? json_object_new_boolean(1) : NULL;
    json_object *b = t ? json_object_new_boolean(1) : NULL;
    bool ok = b && set_str(o, "apiVersion", api_version) && set_str(o, "kind", kind) &&
              set_str(o, "name", name) && set_str(o, "uid", uid);
    if (ok && json_object_object_add(o, "controller", t) == 0) {
        t = NULL;
        if (json_object_object_add(o, "blockOwnerDeletion", b) == 0) {
            *out = o;
            return KC_OK;
        }
    }
    json_object_put(t);
    json_object_put(b);
    json_object_put(o);
    return KC_ERR_NOMEM;
}

int rec_owner_ref_of(json_object *owner, const char *api_version, const char *kind,
                     json_object **out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    const char *av = str_member(owner, "apiVersion");
    const char *k = str_member(owner, "kind");
    return rec_owner_ref_new(av && *av ? av : api_version, k && *k ? k : kind,
                             rec_obj_str(owner, "metadata.name"),
                             rec_obj_str(owner, "metadata.uid"), out);
}

static bool is_controller_ref(json_object *r)
{
    json_object *v = NULL;
    return json_object_object_get_ex(r, "controller", &v) &&
           json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

int rec_set_owner_ref(json_object *obj, json_object *owner_ref)
{
    if (!obj || !owner_ref || !json_object_is_type(obj, json_type_object))
        return KC_ERR_INVALID_ARG;
    const char *uid = str_member(owner_ref, "uid");
    if (!uid || !*uid)
        return KC_ERR_INVALID_ARG;
    int rc = KC_OK;
    json_object *meta = ensure_object(obj, "metadata", &rc);
    if (!meta)
        return rc;
    json_object *refs = NULL;
    if (json_object_object_get_ex(meta, "ownerReferences", &refs) &&
        !json_object_is_type(refs, json_type_array))
        return KC_ERR_INVALID_ARG;
    long same = -1;
    size_t n = refs ? json_object_array_length(refs) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(refs, i);
        if (str_eq(str_member(r, "uid"), uid))
            same = (long)i;
        else if (is_controller_ref(r) && is_controller_ref(owner_ref))
            return KC_ERR_CONFLICT;
    }
    json_object *copy = NULL;
    if (json_object_deep_copy(owner_ref, &copy, NULL) != 0)
        return KC_ERR_NOMEM;
    if (!refs) {
        refs = json_object_new_array();
        if (!refs || json_object_object_add(meta, "ownerReferences", refs) != 0) {
            json_object_put(refs);
            json_object_put(copy);
            return KC_ERR_NOMEM;
        }
    }
    if ((same >= 0 ? json_object_array_put_idx(refs, (size_t)same, copy)
                   : json_object_array_add(refs, copy)) != 0) {
        json_object_put(copy);
        return KC_ERR_NOMEM;
    }
    return KC_OK;
}

bool rec_is_owned_by(json_object *obj, const char *uid)
{
    json_object *refs = rec_obj_at(obj, "metadata.ownerReferences");
    if (!uid || !refs || !json_object_is_type(refs, json_type_array))
        return false;
    size_t n = json_object_array_length(refs);
    for (size_t i = 0; i < n; i++) {
        if (str_eq(str_member(json_object_array_get_idx(refs, i), "uid"), uid))
            return true;
    }
    return false;
}

/* ---- status --------------------------------------------------------------- */

/* Put val under key of o: a deep copy, or (lend) another reference to it. */
static bool put_member(json_object *o, const char *key, json_object *val, bool lend)
{
    if (!val)
        return json_object_object_add(o, key, NULL) == 0;
    if (!lend)
        return rec_put_copy(o, key, val);
    if (json_object_object_add(o, key, json_object_get(val)) != 0) {
        json_object_put(val);
        return false;
    }
    return true;
}

static int update_status(kc_client *c, const kc_ref *ref, json_object *cached,
                         json_object *new_status, bool lend, json_object **out, bool *written,
                         kc_error *err)
{
    if (out)
        *out = NULL;
    if (written)
        *written = false;
    if (!c || !ref || !cached || !new_status || !json_object_is_type(new_status, json_type_object))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_update_status: client, ref, object and status object required");
    const char *rv = rec_obj_str(cached, "metadata.resourceVersion");
    if (!rv || !*rv)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_update_status: the cached object has no resourceVersion");

    json_object *status = NULL;
    if (lend)
        status = json_object_get(new_status);
    else if (json_object_deep_copy(new_status, &status, NULL) != 0)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    json_object *gen = rec_obj_at(cached, "metadata.generation");
    if (gen && json_object_is_type(gen, json_type_int) &&
        !pv_json_add_i64(status, "observedGeneration", json_object_get_int64(gen))) {
        json_object_put(status);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }

    json_object *old = NULL;
    bool same = json_object_object_get_ex(cached, "status", &old) && old
                    ? json_object_equal(old, status) != 0
                    : json_object_object_length(status) == 0;
    if (same) {
        json_object_put(status);
        kc_error_clear(err);
        return KC_OK;
    }

    /* The cached object (it carries metadata.resourceVersion) with the new
     * status: every member but the old status copied, or lent (a pool's old
     * status can be as large as the new one, and would be thrown away). */
    json_object *body = json_object_new_object();
    if (!body) {
        json_object_put(status);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    json_object_object_foreach(cached, key, val)
    {
        if (!strcmp(key, "status"))
            continue;
        if (!put_member(body, key, val, lend)) {
            json_object_put(status);
            json_object_put(body);
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
    }
    if (json_object_object_add(body, "status", status) != 0) {
        json_object_put(status);
        json_object_put(body);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    kc_ref target = *ref;
    target.subresource = "status";
    int rc = kc_update(c, &target, body, NULL, out, err);
    json_object_put(body);
    if (written)
        *written = true;
    return rc;
}

int rec_update_status(kc_client *c, const kc_ref *ref, json_object *cached, json_object *new_status,
                      json_object **out, bool *written, kc_error *err)
{
    return update_status(c, ref, cached, new_status, false, out, written, err);
}

int rec_update_status_lent(kc_client *c, const kc_ref *ref, json_object *cached,
                           json_object *new_status, json_object **out, bool *written, kc_error *err)
{
    return update_status(c, ref, cached, new_status, true, out, written, err);
}

/* ---- status -------------------------------------------------------------- */

bool rec_put_copy(json_object *o, const char *key, json_object *src)
{
    json_object *copy = NULL;
    if (json_object_deep_copy(src, &copy, NULL) != 0)
        return false;
    if (json_object_object_add(o, key, copy) != 0) {
        json_object_put(copy);
        return false;
    }
    return true;
}

static bool skipped(const char *key, const char *const *skip, size_t n_skip)
{
    for (size_t i = 0; i < n_skip; i++)
        if (!strcmp(key, skip[i]))
            return true;
    return false;
}

/* Every key of a but those skipped is in b with an equal value. */
static bool covers(json_object *a, json_object *b, const char *const *skip, size_t n_skip)
{
    json_object_object_foreach(a, key, va)
    {
        json_object *vb = NULL;
        if (skipped(key, skip, n_skip))
            continue;
        if (!json_object_object_get_ex(b, key, &vb) || !json_object_equal(va, vb))
            return false;
    }
    return true;
}

bool rec_json_equal_except(json_object *a, json_object *b, const char *const *skip, size_t n_skip)
{
    if (!json_object_is_type(a, json_type_object) || !json_object_is_type(b, json_type_object))
        return json_object_equal(a, b);
    return covers(a, b, skip, n_skip) && covers(b, a, skip, n_skip);
}

int rec_status_base(json_object *cached_status, json_object **out)
{
    *out = NULL;
    json_object *st = json_object_new_object();
    if (!st)
        return KC_ERR_NOMEM;
    json_object *conds = NULL;
    if (cached_status && json_object_object_get_ex(cached_status, "conditions", &conds) &&
        json_object_is_type(conds, json_type_array) && !rec_put_copy(st, "conditions", conds)) {
        json_object_put(st);
        return KC_ERR_NOMEM;
    }
    *out = st;
    return KC_OK;
}

int rec_status_not_ready(json_object *cached_status, const char *reason, const char *message,
                         int64_t generation, time_t now, json_object **out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    json_object *st = NULL;
    int rc = rec_status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;
    rc = rec_set_condition(st, REC_COND_READY, REC_COND_FALSE, reason, message, generation, now,
                           NULL);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}

int rec_msg(char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = pv_vasprintf(out, fmt, ap);
    va_end(ap);
    if (n < 0) {
        *out = NULL;
        return KC_ERR_NOMEM;
    }
    return KC_OK;
}

static const char *map_str(json_object *map, const char *key)
{
    json_object *v = NULL;
    if (!json_object_is_type(map, json_type_object) || !json_object_object_get_ex(map, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

const char *rec_obj_label(json_object *obj, const char *key)
{
    return map_str(rec_obj_at(obj, "metadata.labels"), key);
}

const char *rec_obj_annotation(json_object *obj, const char *key)
{
    return map_str(rec_obj_at(obj, "metadata.annotations"), key);
}
