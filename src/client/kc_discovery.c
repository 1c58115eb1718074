/*
 * kc_discovery - the catalogue of resource types and kubectl-style name
 * resolution over it.
 *
 * The catalogue is a list of groups in priority order: the core group ("")
 * always first, then groups in the order the server's APIGroupList gives them
 * (the API server sorts built-in groups by priority, CRD groups after). Each
 * group has its versions in server order and its preferred version; each
 * version holds the resource types of its APIResourceList once loaded, with
 * subresources ("pods/status") left out. All strings are copied out of the
 * json-c documents, so nothing here refers to a document after it is added.
 *
 * Invariants:
 *  - groups[0] is the core group with version "v1".
 *  - kc_discovery_resource.group/.version point at the owning group's name and
 *    version strings, which never move (only the arrays holding them grow).
 *  - Group and version names are DNS-like ([A-Za-z0-9.-]) because they become
 *    URL paths in kc_discovery_load; anything else is refused on input.
 *
 * Resolution ranks a match by what matched (plural, then singular, then short
 * name, then kind), and within a group tries the preferred version first. The
 * core group beats all others; a tie between other groups is an error rather
 * than a guess, because acting on the wrong resource type is worse than asking
 * the person to type the group.
 */
#include "kc_discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

typedef struct dres {
    kc_discovery_resource pub;
    char *resource; /* owned strings behind pub */
    char *kind;
    char *singular; /* singularName, or the lower-cased kind when the server sent none */
    char **short_names;
    size_t n_short;
} dres;

typedef struct dversion {
    char *version;
    bool loaded;
    bool failed; /* its resource list could not be fetched or decoded */
    dres *res;
    size_t n_res;
} dversion;

typedef struct dgroup {
    char *name;
    char *preferred; /* NULL: the first version */
    dversion *versions;
    size_t n_versions;
} dgroup;

struct kc_discovery {
    dgroup *groups;
    size_t n_groups;
};

/* Match classes, best first. */
enum { M_PLURAL, M_SINGULAR, M_SHORT, M_KIND, M_CLASSES };

/* ---- construction ---------------------------------------------------------- */

static void free_resources(dversion *v)
{
    for (size_t i = 0; i < v->n_res; i++) {
        dres *r = &v->res[i];
        free(r->resource);
        free(r->kind);
        free(r->singular);
        for (size_t k = 0; k < r->n_short; k++)
            free(r->short_names[k]);
        free(r->short_names);
    }
    free(v->res);
    v->res = NULL;
    v->n_res = 0;
}

void kc_discovery_free(kc_discovery *d)
{
    if (!d)
        return;
    for (size_t g = 0; g < d->n_groups; g++) {
        dgroup *grp = &d->groups[g];
        for (size_t v = 0; v < grp->n_versions; v++) {
            free_resources(&grp->versions[v]);
            free(grp->versions[v].version);
        }
        free(grp->versions);
        free(grp->name);
        free(grp->preferred);
    }
    free(d->groups);
    free(d);
}

static bool dns_like(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return n <= 253 && strcmp(s, ".") && strcmp(s, "..");
}

static dgroup *find_group(const kc_discovery *d, const char *name)
{
    for (size_t g = 0; g < d->n_groups; g++)
        if (!strcasecmp(d->groups[g].name, name))
            return &d->groups[g];
    return NULL;
}

static dversion *find_version(const dgroup *grp, const char *version)
{
    for (size_t v = 0; v < grp->n_versions; v++)
        if (!strcasecmp(grp->versions[v].version, version))
            return &grp->versions[v];
    return NULL;
}

static dgroup *add_group(kc_discovery *d, const char *name)
{
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    dgroup *ng = realloc(d->groups, (d->n_groups + 1) * sizeof(*ng));
    if (!ng) {
        free(copy);
        return NULL;
    }
    d->groups = ng;
    dgroup *grp = &d->groups[d->n_groups++];
    memset(grp, 0, sizeof(*grp));
    grp->name = copy;
    return grp;
}

static dversion *add_version(dgroup *grp, const char *version)
{
    dversion *have = find_version(grp, version);
    if (have)
        return have;
    char *copy = strdup(version);
    if (!copy)
        return NULL;
    dversion *nv = realloc(grp->versions, (grp->n_versions + 1) * sizeof(*nv));
    if (!nv) {
        free(copy);
        return NULL;
    }
    grp->versions = nv;
    dversion *v = &grp->versions[grp->n_versions++];
    memset(v, 0, sizeof(*v));
    v->version = copy;
    return v;
}

kc_discovery *kc_discovery_new(void)
{
    kc_discovery *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    dgroup *core = add_group(d, "");
    if (!core || !add_version(core, "v1") || !(core->preferred = strdup("v1"))) {
        kc_discovery_free(d);
        return NULL;
    }
    return d;
}

static json_object *parse_doc(const char *json, size_t len, const char *what, kc_error *err)
{
    if (!json || len == 0 || len > (size_t)1 << 30) {
        kc_error_set(err, KC_ERR_DECODE, "%s: empty or oversized document", what);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    json_object *doc = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (!doc || !json_object_is_type(doc, json_type_object)) {
        kc_error_set(err, KC_ERR_DECODE, "%s is not a JSON object%s%s", what, doc ? "" : ": ",
                     doc ? "" : json_tokener_error_desc(jerr));
        json_object_put(doc);
        return NULL;
    }
    return doc;
}

static const char *get_string(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static json_object *get_typed(json_object *o, const char *key, json_type type)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
        return NULL;
    return v;
}

int kc_discovery_add_group_list(kc_discovery *d, const char *json, size_t len, kc_error *err)
{
    if (!d)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_discovery_add_group_list: no catalogue");
    json_object *doc = parse_doc(json, len, "APIGroupList", err);
    if (!doc)
        return err ? err->code : KC_ERR_DECODE;
    json_object *groups = get_typed(doc, "groups", json_type_array);
    int rc = KC_OK;
    if (!groups) {
        rc = kc_error_set(err, KC_ERR_DECODE, "APIGroupList has no \"groups\" array");
        goto out;
    }
    size_t n = json_object_array_length(groups);
    for (size_t i = 0; i < n; i++) {
        json_object *g = json_object_array_get_idx(groups, i);
        const char *name = json_object_is_type(g, json_type_object) ? get_string(g, "name") : NULL;
        json_object *versions = name ? get_typed(g, "versions", json_type_array) : NULL;
        if (!name || !*name || !dns_like(name) || !versions) {
            rc = kc_error_set(err, KC_ERR_DECODE, "APIGroupList: group %zu is malformed", i);
            goto out;
        }
        dgroup *grp = find_group(d, name);
        if (!grp && !(grp = add_group(d, name)))
            goto nomem;
        size_t nv = json_object_array_length(versions);
        for (size_t k = 0; k < nv; k++) {
            json_object *v = json_object_array_get_idx(versions, k);
            const char *ver =
                json_object_is_type(v, json_type_object) ? get_string(v, "version") : NULL;
            if (!ver || !*ver || !dns_like(ver)) {
                rc = kc_error_set(err, KC_ERR_DECODE,
                                  "APIGroupList: group %s has a malformed version", name);
                goto out;
            }
            if (!add_version(grp, ver))
                goto nomem;
        }
        json_object *pv = get_typed(g, "preferredVersion", json_type_object);
        const char *pref = pv ? get_string(pv, "version") : NULL;
        if (pref && find_version(grp, pref)) {
            char *copy = strdup(pref);
            if (!copy)
                goto nomem;
            free(grp->preferred);
            grp->preferred = copy;
        }
    }
    goto out;
nomem:
    rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
out:
    json_object_put(doc);
    return rc;
}

/*
 * Fill r from one APIResourceList entry: 0 = ok, 1 = skipped (a subresource, or
 * an entry without a name or kind, which nobody could ask for), KC_ERR_NOMEM.
 */
static int fill_resource(dres *r, json_object *e)
{
    const char *name = json_object_is_type(e, json_type_object) ? get_string(e, "name") : NULL;
    const char *kind = name ? get_string(e, "kind") : NULL;
    if (!name || !*name || !kind || !*kind || strchr(name, '/'))
        return 1;
    const char *singular = get_string(e, "singularName");
    json_object *ns = get_typed(e, "namespaced", json_type_boolean);
    json_object *shorts = get_typed(e, "shortNames", json_type_array);

    r->resource = strdup(name);
    r->kind = strdup(kind);
    r->singular = strdup(singular && *singular ? singular : kind);
    if (!r->resource || !r->kind || !r->singular)
        return KC_ERR_NOMEM;
    if (!(singular && *singular))
        for (char *p = r->singular; *p; p++)
            *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    size_t ns_count = shorts ? json_object_array_length(shorts) : 0;
    if (ns_count) {
        r->short_names = calloc(ns_count, sizeof(char *));
        if (!r->short_names)
            return KC_ERR_NOMEM;
        for (size_t k = 0; k < ns_count; k++) {
            json_object *s = json_object_array_get_idx(shorts, k);
            if (!json_object_is_type(s, json_type_string) || !*json_object_get_string(s))
                continue;
            if (!(r->short_names[r->n_short] = strdup(json_object_get_string(s))))
                return KC_ERR_NOMEM;
            r->n_short++;
        }
    }
    r->pub.resource = r->resource;
    r->pub.kind = r->kind;
    r->pub.namespaced = ns && json_object_get_boolean(ns);
    return KC_OK;
}

/*
 * Add an APIResourceList. When want_group/want_version are set (loading) the
 * document must be about that group version.
 */
static int add_resource_list(kc_discovery *d, const char *json, size_t len, const char *want_group,
                             const char *want_version, kc_error *err)
{
    if (!d)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "kc_discovery_add_resource_list: no catalogue");
    json_object *doc = parse_doc(json, len, "APIResourceList", err);
    if (!doc)
        return err ? err->code : KC_ERR_DECODE;
    int rc = KC_OK;
    char *gv_copy = NULL;
    dversion tmp = {0};
    const char *gv = get_string(doc, "groupVersion");
    json_object *list = get_typed(doc, "resources", json_type_array);
    if (!gv || !*gv || !list) {
        rc = kc_error_set(err, KC_ERR_DECODE,
                          "APIResourceList has no \"groupVersion\" or \"resources\"");
        goto out;
    }
    if (!(gv_copy = strdup(gv)))
        goto nomem;
    /* "v1" is the core group; "apps/v1" is group apps, version v1. */
    char *slash = strchr(gv_copy, '/');
    const char *group = slash ? gv_copy : "";
    const char *version = slash ? slash + 1 : gv_copy;
    if (slash)
        *slash = '\0';
    if ((slash && !*group) || !*version || !dns_like(group) || !dns_like(version) ||
        strchr(version, '/')) {
        rc = kc_error_set(err, KC_ERR_DECODE, "APIResourceList: malformed groupVersion \"%s\"", gv);
        goto out;
    }
    if (want_version &&
        (strcasecmp(group, want_group) != 0 || strcasecmp(version, want_version) != 0)) {
        rc = kc_error_set(err, KC_ERR_DECODE, "APIResourceList for %s/%s says it is about \"%s\"",
                          want_group, want_version, gv);
        goto out;
    }

    size_t n = json_object_array_length(list);
    if (n) {
        tmp.res = calloc(n, sizeof(dres));
        if (!tmp.res)
            goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        dres *r = &tmp.res[tmp.n_res];
        int frc = fill_resource(r, json_object_array_get_idx(list, i));
        if (frc == 1)
            continue;
        tmp.n_res++; /* counted even when half filled, so free_resources sees it */
        if (frc != KC_OK)
            goto nomem;
    }

    dgroup *grp = find_group(d, group);
    if (!grp && !(grp = add_group(d, group)))
        goto nomem;
    dversion *ver = add_version(grp, version);
    if (!ver)
        goto nomem;
    free_resources(ver);
    ver->res = tmp.res;
    ver->n_res = tmp.n_res;
    ver->loaded = true;
    ver->failed = false;
    tmp.res = NULL;
    tmp.n_res = 0;
    for (size_t i = 0; i < ver->n_res; i++) {
        ver->res[i].pub.group = grp->name;
        ver->res[i].pub.version = ver->version;
    }
    goto out;
nomem:
    rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
out:
    free_resources(&tmp);
    free(gv_copy);
    json_object_put(doc);
    return rc;
}

int kc_discovery_add_resource_list(kc_discovery *d, const char *json, size_t len, kc_error *err)
{
    return add_resource_list(d, json, len, NULL, NULL, err);
}

/* ---- loading --------------------------------------------------------------- */

/* Errors that mean the whole load cannot go on, as opposed to one group version failing. */
static bool fatal_for_load(int code)
{
    return code != KC_ERR_DECODE && code != KC_ERR_TOO_LARGE && code > -400;
}

static int get_doc(kc_discovery_get_fn get, void *user, const char *path, char **body, size_t *len,
                   kc_error *err)
{
    *body = NULL;
    *len = 0;
    int rc = get(user, path, body, len, err);
    if (rc != KC_OK) {
        free(*body);
        *body = NULL;
        return rc;
    }
    if (!*body)
        return kc_error_set(err, KC_ERR_DECODE, "GET %s: empty answer", path);
    return KC_OK;
}

int kc_discovery_load(kc_discovery *d, kc_discovery_get_fn get, void *user, kc_error *err)
{
    if (!d || !get)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_discovery_load: no catalogue or getter");
    char *body;
    size_t len;
    int rc = get_doc(get, user, "/api/v1", &body, &len, err);
    if (rc == KC_OK) {
        rc = add_resource_list(d, body, len, "", "v1", err);
        free(body);
    }
    if (rc != KC_OK)
        return rc;
    rc = get_doc(get, user, "/apis", &body, &len, err);
    if (rc == KC_OK) {
        rc = kc_discovery_add_group_list(d, body, len, err);
        free(body);
    }
    if (rc != KC_OK)
        return rc;

    /* groups[0] is core, loaded above. Names were checked DNS-like on input. */
    for (size_t g = 1; g < d->n_groups; g++) {
        for (size_t v = 0; v < d->groups[g].n_versions; v++) {
            dgroup *grp = &d->groups[g];
            dversion *ver = &grp->versions[v];
            char *path = NULL;
            if (asprintf(&path, "/apis/%s/%s", grp->name, ver->version) < 0)
                return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
            rc = get_doc(get, user, path, &body, &len, err);
            if (rc == KC_OK) {
                /* Re-read: the arrays do not move here, but stay honest. */
                rc = add_resource_list(d, body, len, d->groups[g].name,
                                       d->groups[g].versions[v].version, err);
                free(body);
            }
            free(path);
            if (rc == KC_OK)
                continue;
            if (fatal_for_load(rc))
                return rc;
            d->groups[g].versions[v].failed = true;
        }
    }
    if (err)
        kc_error_clear(err); /* per-version failures are remembered, not reported */
    return KC_OK;
}

static int get_via_client(void *user, const char *path, char **body, size_t *len, kc_error *err)
{
    return kc_request_raw(user, "GET", path, NULL, NULL, 0, body, len, err);
}

int kc_discovery_fetch(kc_discovery *d, kc_client *c, kc_error *err)
{
    if (!c)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_discovery_fetch: no client");
    return kc_discovery_load(d, get_via_client, c, err);
}

/* ---- resolution ------------------------------------------------------------ */

static bool matches(const dres *r, int cls, const char *name)
{
    switch (cls) {
    case M_PLURAL:
        return !strcasecmp(r->resource, name);
    case M_SINGULAR:
        return !strcasecmp(r->singular, name);
    case M_SHORT:
        for (size_t k = 0; k < r->n_short; k++)
            if (!strcasecmp(r->short_names[k], name))
                return true;
        return false;
    case M_KIND:
        return !strcasecmp(r->kind, name);
    }
    return false;
}

static const dres *match_in_version(const dversion *v, int cls, const char *name)
{
    for (size_t i = 0; i < v->n_res; i++)
        if (matches(&v->res[i], cls, name))
            return &v->res[i];
    return NULL;
}

/* Preferred version first, then the others in server order. */
static const dres *match_in_group(const dgroup *grp, int cls, const char *name)
{
    const dversion *pref = grp->preferred ? find_version(grp, grp->preferred) : NULL;
    const dres *r;
    if (pref && (r = match_in_version(pref, cls, name)))
        return r;
    for (size_t v = 0; v < grp->n_versions; v++)
        if (&grp->versions[v] != pref && (r = match_in_version(&grp->versions[v], cls, name)))
            return r;
    return NULL;
}

/* The failed group versions as ", a/v1, b/v2"-style text for messages; "" if none. */
static char *failed_note(const kc_discovery *d)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
    bool any = false;
    for (size_t g = 0; g < d->n_groups; g++) {
        for (size_t v = 0; v < d->groups[g].n_versions; v++) {
            if (!d->groups[g].versions[v].failed)
                continue;
            fprintf(f, "%s%s%s%s", any ? ", " : " (discovery failed for ", d->groups[g].name,
                    *d->groups[g].name ? "/" : "", d->groups[g].versions[v].version);
            any = true;
        }
    }
    if (any)
        fputs(")", f);
    fclose(f);
    return buf;
}

static int not_found(const kc_discovery *d, const char *name, kc_error *err)
{
    char *note = failed_note(d);
    int rc = kc_error_set(err, KC_ERR_NOT_FOUND, "the server doesn't have a resource type \"%s\"%s",
                          name, note ? note : "");
    free(note);
    return rc;
}

/* Look name up in one group (qualified forms): every class, best first. */
static const dres *resolve_in_group(const dgroup *grp, const char *res)
{
    for (int cls = 0; cls < M_CLASSES; cls++) {
        const dres *r = match_in_group(grp, cls, res);
        if (r)
            return r;
    }
    return NULL;
}

static const dres *resolve_in_version(const dversion *v, const char *res)
{
    for (int cls = 0; cls < M_CLASSES; cls++) {
        const dres *r = match_in_version(v, cls, res);
        if (r)
            return r;
    }
    return NULL;
}

static int resolve_unqualified(const kc_discovery *d, const char *name,
                               const kc_discovery_resource **out, kc_error *err)
{
    for (int cls = 0; cls < M_CLASSES; cls++) {
        const dres *first = NULL;
        size_t count = 0;
        const dres *core = match_in_group(&d->groups[0], cls, name);
        if (core) {
            *out = &core->pub;
            return KC_OK;
        }
        for (size_t g = 1; g < d->n_groups; g++) {
            const dres *r = match_in_group(&d->groups[g], cls, name);
            if (r) {
                if (!first)
                    first = r;
                count++;
            }
        }
        if (count == 1) {
            *out = &first->pub;
            return KC_OK;
        }
        if (count > 1) {
            char *list = NULL;
            size_t size = 0;
            FILE *f = open_memstream(&list, &size);
            if (f) {
                bool any = false;
                for (size_t g = 1; g < d->n_groups; g++) {
                    const dres *r = match_in_group(&d->groups[g], cls, name);
                    if (r) {
                        fprintf(f, "%s%s.%s", any ? ", " : "", r->resource, d->groups[g].name);
                        any = true;
                    }
                }
                fclose(f);
            }
            int rc = kc_error_set(err, KC_ERR_INVALID_ARG,
                                  "resource type \"%s\" is ambiguous: it matches %s; qualify it "
                                  "with its group (resource.group)",
                                  name, list ? list : "several groups");
            free(list);
            return rc;
        }
    }
    return not_found(d, name, err);
}

int kc_discovery_resolve(const kc_discovery *d, const char *name, const kc_discovery_resource **out,
                         kc_error *err)
{
    if (out)
        *out = NULL;
    if (!d || !out || !name)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_discovery_resolve: missing argument");
    if (!*name)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "empty resource type");

    char *copy = strdup(name);
    if (!copy)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    int rc;
    const dres *r = NULL;

    if (strchr(copy, '/')) {
        /* group/version/resource, version/resource (core), /version/resource (core) */
        char *parts[3] = {copy, NULL, NULL};
        size_t n = 1;
        for (char *p = copy; (p = strchr(p, '/')) != NULL; n++) {
            *p++ = '\0';
            if (n < 3)
                parts[n] = p;
        }
        const char *group = n == 3 ? parts[0] : "";
        const char *version = n == 3 ? parts[1] : parts[0];
        const char *res = n == 3 ? parts[2] : parts[1];
        if (n > 3 || !*version || !*res) {
            rc = kc_error_set(err, KC_ERR_INVALID_ARG,
                              "malformed resource type \"%s\": want resource, resource.group, "
                              "group/version/resource or version/resource",
                              name);
            goto out;
        }
        const dgroup *grp = find_group(d, group);
        const dversion *ver = grp ? find_version(grp, version) : NULL;
        if (ver)
            r = resolve_in_version(ver, res);
    } else if (strchr(copy, '.')) {
        /* resource.version.group first (kubectl's fully specified form), then resource.group */
        char *dot = strchr(copy, '.');
        *dot = '\0';
        const char *res = copy, *rest = dot + 1;
        if (!*res || !*rest) {
            rc = kc_error_set(err, KC_ERR_INVALID_ARG, "malformed resource type \"%s\"", name);
            goto out;
        }
        const char *dot2 = strchr(rest, '.');
        if (dot2) {
            char *version = strndup(rest, (size_t)(dot2 - rest));
            if (!version) {
                rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
                goto out;
            }
            const dgroup *grp = find_group(d, dot2 + 1);
            const dversion *ver = grp ? find_version(grp, version) : NULL;
            free(version);
            if (ver)
                r = resolve_in_version(ver, res);
        }
        if (!r) {
            const dgroup *grp = find_group(d, rest);
            if (grp)
                r = resolve_in_group(grp, res);
        }
    } else {
        rc = resolve_unqualified(d, copy, out, err);
        goto out;
    }

    if (r) {
        *out = &r->pub;
        rc = KC_OK;
    } else {
        rc = not_found(d, name, err);
    }
out:
    free(copy);
    return rc;
}

void kc_discovery_ref(const kc_discovery_resource *res, const char *namespace_, const char *name,
                      kc_ref *ref)
{
    if (!ref)
        return;
    memset(ref, 0, sizeof(*ref));
    if (!res)
        return;
    ref->group = res->group;
    ref->version = res->version;
    ref->resource = res->resource;
    ref->namespace_ = res->namespaced ? namespace_ : NULL;
    ref->name = name;
}
