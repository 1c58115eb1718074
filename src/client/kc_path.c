/*
 * kc_path - the request path and query string of a kc_ref.
 *
 *   /api/v1[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]       core group
 *   /apis/<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<sub>]]
 *   ?watch=1&labelSelector=...&fieldSelector=...&limit=...&continue=...
 *    &resourceVersion=...&resourceVersionMatch=...&timeoutSeconds=...
 *    &allowWatchBookmarks=true
 *
 * Every path segment and query value is percent-escaped: only RFC 3986
 * unreserved characters (A-Z a-z 0-9 - . _ ~) pass through, so a '/' or '?'
 * inside a name can never change which URL is asked for. "." and ".." cannot
 * be escaped away (servers and proxies normalize them), so they are refused;
 * the API server refuses such names too. The output is grown in a pv_strbuf;
 * its length is bounded only by the inputs. kc_path_add_escaped is that
 * escaping on its own, for kc_client.c's write options (dryRun, fieldManager).
 *
 * Empty strings: namespace_ "" means no namespace (all namespaces, as
 * client-go's NamespaceAll); subresource "" means none; list options "" or 0
 * are not sent. An empty name is a caller bug and is refused.
 *
 * Pure and thread-safe: no state.
 */
#include "kc_client.h"
#include "kc_client_internal.h"
#include "pv_strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void kc_path_add_escaped(pv_strbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    if (n > (SIZE_MAX - 1) / 3) {
        b->oom = true;
        return;
    }
    /* Room for the worst case (every byte escaped), then write in place. */
    if (!pv_strbuf_reserve(b, 3 * n))
        return;
    char *o = b->p + b->len;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if (is_unreserved(*q)) {
            *o++ = (char)*q;
        } else {
            *o++ = '%';
            *o++ = hex[*q >> 4];
            *o++ = hex[*q & 15];
        }
    }
    *o = '\0';
    b->len = (size_t)(o - b->p);
}

static void add_segment(pv_strbuf *b, const char *s)
{
    pv_strbuf_add(b, "/");
    kc_path_add_escaped(b, s);
}

/* *has_query: whether b already carries a query ("?" sent); set here. */
static void add_param(pv_strbuf *b, bool *has_query, const char *key, const char *value)
{
    pv_strbuf_add(b, *has_query ? "&" : "?");
    *has_query = true;
    pv_strbuf_add(b, key);
    pv_strbuf_add(b, "=");
    kc_path_add_escaped(b, value);
}

static bool set(const char *s)
{
    return s && *s;
}

/* A segment is usable if non-empty and not a dot segment. */
static int check_segment(const char *what, const char *s, kc_error *err)
{
    if (!s || !*s)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_path: %s is empty", what);
    if (!strcmp(s, ".") || !strcmp(s, ".."))
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_path: %s may not be \"%s\"", what, s);
    return KC_OK;
}

int kc_path(const kc_ref *ref, const kc_list_opts *opts, bool watch, char **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!ref || !out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_path: ref and out are required");
    int rc;
    if (ref->group && *ref->group && (rc = check_segment("group", ref->group, err)) != KC_OK)
        return rc;
    if ((rc = check_segment("version", ref->version, err)) != KC_OK)
        return rc;
    if ((rc = check_segment("resource", ref->resource, err)) != KC_OK)
        return rc;
    if (set(ref->namespace_) && (rc = check_segment("namespace", ref->namespace_, err)) != KC_OK)
        return rc;
    if (ref->name && (rc = check_segment("name", ref->name, err)) != KC_OK)
        return rc;
    if (set(ref->subresource)) {
        if (!ref->name)
            return kc_error_set(err, KC_ERR_INVALID_ARG,
                                "kc_path: subresource \"%s\" needs an object name",
                                ref->subresource);
        if ((rc = check_segment("subresource", ref->subresource, err)) != KC_OK)
            return rc;
    }
    if (opts && opts->limit < 0)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_path: negative limit %ld", opts->limit);
    if (opts && opts->timeout_seconds < 0)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_path: negative timeoutSeconds %ld",
                            opts->timeout_seconds);

    /* 128 bytes hold most paths in one malloc; a failure is b.oom, refused below. */
    pv_strbuf b = {0};
    (void)pv_strbuf_reserve(&b, 127);
    bool has_query = false; /* a parameter was added: the next one starts with & */
    if (set(ref->group)) {
        pv_strbuf_add(&b, "/apis");
        add_segment(&b, ref->group);
    } else {
        pv_strbuf_add(&b, "/api");
    }
    add_segment(&b, ref->version);
    if (set(ref->namespace_)) {
        pv_strbuf_add(&b, "/namespaces");
        add_segment(&b, ref->namespace_);
    }
    add_segment(&b, ref->resource);
    if (ref->name)
        add_segment(&b, ref->name);
    if (set(ref->subresource))
        add_segment(&b, ref->subresource);

    if (watch)
        add_param(&b, &has_query, "watch", "1");
    if (opts) {
        char num[24]; /* a long in decimal: at most 20 characters */
        if (set(opts->label_selector))
            add_param(&b, &has_query, "labelSelector", opts->label_selector);
        if (set(opts->field_selector))
            add_param(&b, &has_query, "fieldSelector", opts->field_selector);
        if (opts->limit > 0) {
            snprintf(num, sizeof(num), "%ld", opts->limit);
            add_param(&b, &has_query, "limit", num);
        }
        if (set(opts->continue_token))
            add_param(&b, &has_query, "continue", opts->continue_token);
        if (set(opts->resource_version))
            add_param(&b, &has_query, "resourceVersion", opts->resource_version);
        if (set(opts->resource_version_match))
            add_param(&b, &has_query, "resourceVersionMatch", opts->resource_version_match);
        if (opts->timeout_seconds > 0) {
            snprintf(num, sizeof(num), "%ld", opts->timeout_seconds);
            add_param(&b, &has_query, "timeoutSeconds", num);
        }
        if (opts->allow_watch_bookmarks)
            add_param(&b, &has_query, "allowWatchBookmarks", "true");
    }

    char *path = pv_strbuf_take(&b, NULL);
    if (!path)
        return kc_error_set(err, KC_ERR_NOMEM, "kc_path: out of memory");
    *out = path;
    return KC_OK;
}
