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
 * the API server refuses such names too. The output is grown on the heap; its
 * length is bounded only by the inputs.
 *
 * Empty strings: namespace_ "" means no namespace (all namespaces, as
 * client-go's NamespaceAll); subresource "" means none; list options "" or 0
 * are not sent. An empty name is a caller bug and is refused.
 *
 * Pure and thread-safe: no state.
 */
#include "kc_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
    bool has_query;
} sbuf;

static bool sb_reserve(sbuf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 128;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->oom = true;
        return false;
    }
    b->p = np;
    b->cap = cap;
    return true;
}

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Append s percent-escaped (everything but unreserved characters). */
static void sb_add_escaped(sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    if (n > (SIZE_MAX - 1) / 3 || !sb_reserve(b, 3 * n))
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

static void sb_segment(sbuf *b, const char *s)
{
    sb_add(b, "/");
    sb_add_escaped(b, s);
}

static void sb_param(sbuf *b, const char *key, const char *value)
{
    sb_add(b, b->has_query ? "&" : "?");
    b->has_query = true;
    sb_add(b, key);
    sb_add(b, "=");
    sb_add_escaped(b, value);
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

    sbuf b = {0};
    if (set(ref->group)) {
        sb_add(&b, "/apis");
        sb_segment(&b, ref->group);
    } else {
        sb_add(&b, "/api");
    }
    sb_segment(&b, ref->version);
    if (set(ref->namespace_)) {
        sb_add(&b, "/namespaces");
        sb_segment(&b, ref->namespace_);
    }
    sb_segment(&b, ref->resource);
    if (ref->name)
        sb_segment(&b, ref->name);
    if (set(ref->subresource))
        sb_segment(&b, ref->subresource);

    if (watch)
        sb_param(&b, "watch", "1");
    if (opts) {
        char num[24]; /* a long in decimal: at most 20 characters */
        if (set(opts->label_selector))
            sb_param(&b, "labelSelector", opts->label_selector);
        if (set(opts->field_selector))
            sb_param(&b, "fieldSelector", opts->field_selector);
        if (opts->limit > 0) {
            snprintf(num, sizeof(num), "%ld", opts->limit);
            sb_param(&b, "limit", num);
        }
        if (set(opts->continue_token))
            sb_param(&b, "continue", opts->continue_token);
        if (set(opts->resource_version))
            sb_param(&b, "resourceVersion", opts->resource_version);
        if (set(opts->resource_version_match))
            sb_param(&b, "resourceVersionMatch", opts->resource_version_match);
        if (opts->timeout_seconds > 0) {
            snprintf(num, sizeof(num), "%ld", opts->timeout_seconds);
            sb_param(&b, "timeoutSeconds", num);
        }
        if (opts->allow_watch_bookmarks)
            sb_param(&b, "allowWatchBookmarks", "true");
    }

    if (b.oom || !b.p) {
        free(b.p);
        return kc_error_set(err, KC_ERR_NOMEM, "kc_path: out of memory");
    }
    *out = b.p;
    return KC_OK;
}
