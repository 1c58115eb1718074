/*
 * dev_scan - one pool's device files, checked on the node: the declared
 * devices' paths and the matches of spec.discover.paths, each opened once
 * and closed at once. Every path is looked up under the host root; what the
 * report says is the path on the node, without it.
 *
 * The report goes to the API server as JSON, so a match the server would
 * store differently from how it was sent (bytes that are not UTF-8: Go's
 * decoder turns them into U+FFFD) or refuse (longer than the CRD allows) is
 * left out: it would make every rescan look like a change, or fail every
 * write.
 */
#include "dev_agent_internal.h"
#include "kc_error.h"
#include "rec_util.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void dev_report_free(dev_report *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].id);
        free(r->v[i].path);
        free(r->v[i].message);
    }
    free(r->v);
    *r = (dev_report){0};
}

/* ---- ids ------------------------------------------------------------------- */

int dev_scan_id(const char *name, char **out)
{
    size_t n = strlen(name);
    char *id = malloc(n + 1);
    if (id == NULL)
        return KC_ERR_NOMEM;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        bool keep = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
        if (!keep)
            ch = '-';
        if (ch == '-' && len == 0)
            continue; /* leading '-' */
        id[len++] = ch;
    }
    if (len > DEV_ID_MAX)
        len = DEV_ID_MAX;
    while (len > 0 && id[len - 1] == '-')
        len--;
    id[len] = '\0';
    *out = id;
    return KC_OK;
}

/* ---- one file -------------------------------------------------------------- */

/* The host root without its trailing '/' ("/" is the empty prefix). */
static size_t root_len(const char *host_root)
{
    size_t n = host_root != NULL ? strlen(host_root) : 0;
    while (n > 0 && host_root[n - 1] == '/')
        n--;
    return n;
}

static int set_message(int err, char **message)
{
    char buf[128];
    /* GNU strerror_r (_GNU_SOURCE): returns the text, maybe not in buf. */
    const char *text = strerror_r(err, buf, sizeof buf);
    *message = strdup(text != NULL ? text : "unknown error");
    return *message != NULL ? KC_OK : KC_ERR_NOMEM;
}

/* Check the file at full (the host root included). */
static int check_path(const char *full, bool *present, char **message)
{
    *present = false;
    *message = NULL;
    /* O_NOCTTY: the agent must never acquire a terminal that it checks. */
    int fd = open(full, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        /* A driver that allows one opener at a time answers EBUSY while a
         * pod holds the device: it is there and in use, not broken (calling
         * it unhealthy would have the operator replace it under the pod). */
        *present = err == EBUSY;
        if (err == EACCES || err == EPERM) {
            /* An agent without the right to open the file (a DaemonSet as
             * a non-root user) can still see that it is there: present,
             * saying that only presence was checked. */
            struct stat st;
            if (stat(full, &st) == 0 && !S_ISDIR(st.st_mode)) {
                *present = true;
                *message = strdup("present; not opened (permission denied): only its presence "
                                  "is checked");
                return *message != NULL ? KC_OK : KC_ERR_NOMEM;
            }
        }
        return set_message(err, message);
    }
    struct stat st;
    int rc = fstat(fd, &st);
    int err = errno;
    close(fd);
    if (rc != 0)
        return set_message(err, message);
    if (S_ISDIR(st.st_mode))
        return set_message(EISDIR, message); /* directories are not devices */
    *present = true;
    return KC_OK;
}

/* Check root[0..rlen) + path (path starts with '/'). */
static int check_full(const char *root, size_t rlen, const char *path, bool *present,
                      char **message)
{
    *present = false;
    *message = NULL;
    char *full = NULL;
    if (asprintf(&full, "%.*s%s", (int)rlen, root != NULL ? root : "", path) < 0)
        return KC_ERR_NOMEM;
    int rc = check_path(full, present, message);
    free(full);
    return rc;
}

int dev_scan_check(const char *host_root, const char *path, bool *present, char **message)
{
    return check_full(host_root, root_len(host_root), path, present, message);
}

/* ---- the report ------------------------------------------------------------ */

/* Scan order of each entry, for a stable sort (qsort is not). */
typedef struct scan_entry {
    dev_entry e;
    size_t order;
} scan_entry;

typedef struct scan {
    scan_entry *v;
    size_t n, cap;
} scan;

static void scan_free(scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].e.id);
        free(s->v[i].e.path);
        free(s->v[i].e.message);
    }
    free(s->v);
    *s = (scan){0};
}

/* Take over id, path and message (freed on failure). */
static int scan_add(scan *s, char *id, char *path, bool discovered, bool present, char *message)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        scan_entry *v = realloc(s->v, cap * sizeof *v);
        if (v == NULL) {
            free(id);
            free(path);
            free(message);
            return KC_ERR_NOMEM;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = (scan_entry){
        .e = {.id = id,
              .path = path,
              .discovered = discovered,
              .present = present,
              .message = message},
        .order = s->n,
    };
    s->n++;
    return KC_OK;
}

/* A string member of a (possibly shared) object, NULL unless a string. */
static const char *str_member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static int scan_declared(json_object *pool, const char *root, size_t rlen, scan *s)
{
    json_object *devices = rec_obj_at(pool, "spec.devices");
    if (devices == NULL || !json_object_is_type(devices, json_type_array))
        return KC_OK;
    size_t n = json_object_array_length(devices);
    for (size_t i = 0; i < n && s->n < DEV_REPORT_MAX; i++) {
        json_object *d = json_object_array_get_idx(devices, i);
        const char *id = str_member(d, "id");
        const char *path = str_member(d, "path");
        if (id == NULL || id[0] == '\0' || path == NULL || path[0] != '/')
            continue; /* no file to check (the schema keeps paths absolute) */
        bool present;
        char *message;
        int rc = check_full(root, rlen, path, &present, &message);
        char *id_copy = strdup(id);
        char *path_copy = strdup(path);
        if (rc != KC_OK || id_copy == NULL || path_copy == NULL) {
            free(id_copy);
            free(path_copy);
            free(message);
            return KC_ERR_NOMEM;
        }
        if ((rc = scan_add(s, id_copy, path_copy, false, present, message)) != KC_OK)
            return rc;
    }
    return KC_OK;
}

static bool valid_utf8(const unsigned char *p)
{
    while (*p != '\0') {
        size_t extra;
        unsigned int cp;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xE0) == 0xC0) {
            extra = 1;
            cp = *p & 0x1F;
        } else if ((*p & 0xF0) == 0xE0) {
            extra = 2;
            cp = *p & 0x0F;
        } else if ((*p & 0xF8) == 0xF0) {
            extra = 3;
            cp = *p & 0x07;
        } else {
            return false;
        }
        p++;
        for (size_t i = 0; i < extra; i++, p++) {
            if ((*p & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (*p & 0x3F);
        }
        static const unsigned int min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false; /* overlong, out of range, or a surrogate */
    }
    return true;
}

/* root[0..rlen) with the glob metacharacters escaped, so only the pattern globs. */
static char *escape_root(const char *root, size_t rlen)
{
    char *out = malloc(rlen * 2 + 1);
    if (out == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < rlen; i++) {
        if (strchr("*?[]\\", root[i]) != NULL)
            out[j++] = '\\';
        out[j++] = root[i];
    }
    out[j] = '\0';
    return out;
}

/* One match of a discover glob (full: with the root). */
static int scan_match(const char *full, size_t rlen, scan *s, size_t limit, dev_report *r)
{
    const char *path = full + rlen;
    if (path[0] != '/')
        return KC_OK; /* not under the root: cannot happen with an escaped root */
    if (strlen(path) > DEV_PATH_MAX || !valid_utf8((const unsigned char *)path)) {
        r->skipped++;
        return KC_OK;
    }
    const char *base = strrchr(path, '/') + 1;
    char *id = NULL;
    if (dev_scan_id(base, &id) != KC_OK)
        return KC_ERR_NOMEM;
    if (id[0] == '\0') {
        free(id);
        return KC_OK;
    }
    if (s->n >= limit) {
        free(id);
        r->dropped++;
        return KC_OK;
    }
    bool present;
    char *message;
    int rc = check_path(full, &present, &message);
    char *path_copy = strdup(path);
    if (rc != KC_OK || path_copy == NULL) {
        free(id);
        free(path_copy);
        free(message);
        return KC_ERR_NOMEM;
    }
    return scan_add(s, id, path_copy, true, present, message);
}

static int scan_discovered(json_object *pool, const char *root, size_t rlen, scan *s, dev_report *r)
{
    json_object *paths = rec_obj_at(pool, "spec.discover.paths");
    if (paths == NULL || !json_object_is_type(paths, json_type_array))
        return KC_OK;
    char *eroot = escape_root(root != NULL ? root : "", rlen);
    if (eroot == NULL)
        return KC_ERR_NOMEM;
    int rc = KC_OK;
    size_t n = json_object_array_length(paths);
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        json_object *p = json_object_array_get_idx(paths, i);
        if (p == NULL || !json_object_is_type(p, json_type_string))
            continue;
        const char *pat = json_object_get_string(p);
        if (pat[0] != '/')
            continue;
        char *full = NULL;
        if (asprintf(&full, "%s%s", eroot, pat) < 0) {
            rc = KC_ERR_NOMEM;
            break;
        }
        glob_t g = {0};
        int grc = glob(full, 0, NULL, &g);
        free(full);
        if (grc == GLOB_NOSPACE)
            rc = KC_ERR_NOMEM;
        for (size_t j = 0; grc == 0 && j < g.gl_pathc && rc == KC_OK; j++)
            rc = scan_match(g.gl_pathv[j], rlen, s, DEV_REPORT_MAX, r);
        globfree(&g);
    }
    free(eroot);
    return rc;
}

/* By id, declared before discovered, then in scan order. */
static int entry_cmp(const void *a, const void *b)
{
    const scan_entry *x = a, *y = b;
    int c = strcmp(x->e.id, y->e.id);
    if (c != 0)
        return c;
    if (x->e.discovered != y->e.discovered)
        return x->e.discovered ? 1 : -1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Sort s, keep the first entry of each id, and move the entries into r. */
static int scan_finish(scan *s, dev_report *r)
{
    if (s->n > 0)
        qsort(s->v, s->n, sizeof *s->v, entry_cmp);
    r->v = s->n > 0 ? malloc(s->n * sizeof *r->v) : NULL;
    if (s->n > 0 && r->v == NULL)
        return KC_ERR_NOMEM;
    r->cap = s->n;
    for (size_t i = 0; i < s->n; i++) {
        dev_entry *e = &s->v[i].e;
        if (r->n > 0 && strcmp(r->v[r->n - 1].id, e->id) == 0) {
            free(e->id);
            free(e->path);
            free(e->message);
        } else {
            r->v[r->n++] = *e;
        }
        *e = (dev_entry){0};
    }
    s->n = 0;
    return KC_OK;
}

int dev_scan(json_object *pool, const char *host_root, dev_report *out)
{
    dev_report_free(out);
    out->observed_generation = rec_obj_generation(pool);
    size_t rlen = root_len(host_root);
    scan s = {0};
    int rc = scan_declared(pool, host_root, rlen, &s);
    if (rc == KC_OK)
        rc = scan_discovered(pool, host_root, rlen, &s, out);
    if (rc == KC_OK)
        rc = scan_finish(&s, out);
    scan_free(&s);
    if (rc != KC_OK)
        dev_report_free(out);
    return rc;
}
