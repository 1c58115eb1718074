/*
 * kc_config - kubeconfig / in-cluster loading and the credential cache.
 *
 * Loading (see kc_config.h for the order of sources) follows client-go's
 * clientcmd: every file of the list is parsed into its own YAML document and
 * kept while the config is built; a named cluster, user or context is looked
 * up file by file and the first file that defines it wins (the whole entry,
 * not field by field; inside one file a later duplicate replaces an earlier
 * one, as clientcmd's list-to-map conversion does). The first non-empty
 * current-context wins. Relative paths (certificate-authority,
 * client-certificate, client-key, tokenFile, and an exec command containing
 * a '/') are resolved against the absolute directory of the file that
 * defined the entry. Missing files of KUBECONFIG are skipped; an explicit
 * path must exist. Certificate and key files are read once, at load.
 *
 * What is deliberately not supported: auth-provider (removed from kubectl;
 * rejected with a message pointing at exec plugins), impersonation (as,
 * as-groups, ...: rejected rather than silently ignored, since ignoring it
 * would change who we act as), username/password (basic auth was removed
 * from the API server in 1.19; ignored), preferences and extensions other
 * than the exec-plugin cluster config (ignored). When both a file and its
 * -data form are given, -data wins. Precedence of user credentials, as in
 * client-go: tokenFile, then token, then exec (a plugin is not run when the
 * kubeconfig already holds a token).
 *
 * Credential cache (the only mutable state, guarded by cfg->mu):
 *  - a token file (tokenFile, or the in-cluster service-account token) is
 *    stat()ed on every call and read again when its inode, size or mtime
 *    changed, or after kc_config_invalidate_credentials. When a re-read fails
 *    the last good token is kept (as client-go's cached file token source).
 *  - an exec plugin runs when nothing is cached, when the cached credential
 *    is within EXPIRY_SKEW_SEC of its expirationTimestamp, or after
 *    invalidation. It runs while cfg->mu is held, so two threads never run
 *    it at once and the second one gets the first one's result.
 * Secrets (tokens, keys) are wiped before their memory is freed and are
 * never part of an error message.
 *
 * Exec plugins are started with posix_spawn (safe in a threaded process,
 * unlike fork + malloc), stdin from /dev/null, the parent's environment plus
 * the exec env entries plus KUBERNETES_EXEC_INFO, SIGPIPE reset to default.
 * stdout is read up to EXEC_STDOUT_MAX; stderr is copied to our stderr (the
 * plugin's own diagnostics, as kubectl shows them) and its first part is kept
 * for the error message. The caller must not set SIGCHLD to SIG_IGN (the
 * exit status would be lost).
 */
#include "kc_config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "kc_yaml.h"
#include "pv_clock.h"
#include "pv_json.h"

extern char **environ;

#define CONFIG_FILE_MAX ((size_t)64 << 20) /* kubeconfig, CA bundle, cert, key */
#define TOKEN_FILE_MAX ((size_t)1 << 20)
#define EXEC_STDOUT_MAX ((size_t)1 << 20)
#define EXEC_STDERR_KEPT ((size_t)400)
#define EXEC_TIMEOUT_SEC 120
#define EXPIRY_SKEW_SEC 10
#define EXEC_INFO_ENV "KUBERNETES_EXEC_INFO"
#define EXEC_CLUSTER_EXTENSION "client.authentication.k8s.io/exec"

/* A file holding a bearer token that may be rotated under us. */
typedef struct token_file {
    char *path;
    const char *what; /* "tokenFile" or "service-account token", for messages */
    char *token;      /* last good token (trimmed), or NULL */
    bool known;       /* the identity below is the file the token came from */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    bool stale; /* invalidated: read again even if unchanged */
} token_file;

typedef struct exec_plugin {
    char *command; /* as configured; made absolute when it contained a '/' */
    char **argv;   /* NULL-terminated; argv[0] is command */
    size_t argc;
    char **env; /* NULL-terminated "NAME=value": exec.env, then KUBERNETES_EXEC_INFO */
    size_t nenv;
    char *api_version;
    char *install_hint;
    /* cache, under kc_config.mu */
    bool have;
    char *token;
    char *cert;
    char *key;
    bool expires;
    time_t expiry;
} exec_plugin;

struct kc_config {
    char *server;
    char *namespace_;
    char *context;
    char *proxy_url;
    char *tls_server_name;
    bool in_cluster;
    bool insecure;
    unsigned char *ca;
    size_t ca_len;
    unsigned char *cert;
    size_t cert_len;
    unsigned char *key;
    size_t key_len;
    char *token;           /* static token from the kubeconfig, or NULL */
    token_file *tokenfile; /* tokenFile / in-cluster token, or NULL */
    exec_plugin *exec;     /* exec plugin, or NULL */
    pthread_mutex_t mu;
};

/* ---- small helpers ------------------------------------------------------- */

static void wipe_free(void *p, size_t n)
{
    if (!p)
        return;
    explicit_bzero(p, n);
    free(p);
}

static void wipe_str(char *s)
{
    if (s)
        wipe_free(s, strlen(s));
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Trim leading and trailing whitespace in place (strings.TrimSpace). */
static void trim_space(char *s)
{
    size_t len = strlen(s), start = 0;
    while (len > 0 && is_space((unsigned char)s[len - 1]))
        len--;
    while (start < len && is_space((unsigned char)s[start]))
        start++;
    memmove(s, s + start, len - start);
    s[len - start] = '\0';
}

/*
 * Read a whole file (at most max bytes) into a new NUL-terminated buffer.
 * Returns 0, or an errno value (EFBIG when larger than max). The buffer is
 * grown by copy-and-wipe, so no partial copy of a secret is left in freed
 * memory.
 */
static int read_file(const char *path, size_t max, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return EISDIR;
    }
    size_t cap = 4096;
    if (S_ISREG(st.st_mode) && st.st_size > 0 && (uintmax_t)st.st_size < max)
        cap = (size_t)st.st_size + 1;
    unsigned char *buf = malloc(cap + 1);
    size_t n = 0;
    int rc = buf ? 0 : ENOMEM;
    while (!rc) {
        if (n == cap) {
            if (cap > max) {
                rc = EFBIG;
                break;
            }
            size_t ncap = cap * 2;
            unsigned char *nb = malloc(ncap + 1);
            if (!nb) {
                rc = ENOMEM;
                break;
            }
            memcpy(nb, buf, n);
            wipe_free(buf, cap + 1);
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = errno;
        } else if (r == 0) {
            break;
        } else {
            n += (size_t)r;
        }
    }
    close(fd);
    if (!rc && n > max)
        rc = EFBIG;
    if (rc) {
        wipe_free(buf, buf ? cap + 1 : 0);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static const char *errno_text(int e)
{
    return e == EFBIG ? "file too large" : strerror(e);
}

static char *path_join(const char *dir, const char *p)
{
    char *r = NULL;
    if (p[0] == '/')
        return strdup(p);
    if (asprintf(&r, "%s/%s", dir, p) < 0)
        return NULL;
    return r;
}

/* Absolute directory of path (relative paths are taken from the cwd). */
static char *abs_dir_of(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir || dir[0] == '/')
        return dir;
    char *cwd = getcwd(NULL, 0);
    if (!cwd) {
        free(dir);
        return NULL;
    }
    char *abs = NULL;
    if (!strcmp(dir, "."))
        abs = strdup(cwd);
    else if (asprintf(&abs, "%s/%s", cwd, dir) < 0)
        abs = NULL;
    free(cwd);
    free(dir);
    return abs;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Standard base64 (RFC 4648) with whitespace (line breaks of PEM-like
 * wrapping) ignored anywhere and '=' padding optional but, when present,
 * correct. Returns 0, 1 for invalid input, KC_ERR_NOMEM.
 */
static int b64_decode(const char *in, size_t len, unsigned char **out, size_t *outlen)
{
    unsigned char *buf = malloc(len / 4 * 3 + 3);
    if (!buf)
        return KC_ERR_NOMEM;
    size_t n = 0, chars = 0, pad = 0;
    unsigned int acc = 0, bits = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad > 0) {
            wipe_free(buf, len / 4 * 3 + 3);
            return 1;
        }
        chars++;
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (chars % 4 == 1 || pad > 2 || (pad > 0 && (chars + pad) % 4 != 0)) {
        wipe_free(buf, len / 4 * 3 + 3);
        return 1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* "a, b, c" of the names of a string list; for messages. */
static char *join_names(const char *const *names, size_t n)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(names[i]) + 2;
    char *s = malloc(total);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, ", ");
        strcat(s, names[i]);
    }
    return s;
}

/* ---- config object ------------------------------------------------------- */

static kc_config *config_new(void)
{
    kc_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    if (pthread_mutex_init(&cfg->mu, NULL) != 0) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

static void token_file_free(token_file *tf)
{
    if (!tf)
        return;
    free(tf->path);
    wipe_str(tf->token);
    free(tf);
}

static void exec_clear_cache(exec_plugin *ex)
{
    wipe_str(ex->token);
    wipe_str(ex->cert);
    wipe_str(ex->key);
    ex->token = ex->cert = ex->key = NULL;
    ex->have = false;
    ex->expires = false;
    ex->expiry = 0;
}

static void exec_free(exec_plugin *ex)
{
    if (!ex)
        return;
    exec_clear_cache(ex);
    free(ex->command);
    if (ex->argv) {
        for (size_t i = 0; i < ex->argc; i++)
            free(ex->argv[i]);
        free(ex->argv);
    }
    if (ex->env) {
        /* exec env values may hold secrets (API keys for the plugin). */
        for (size_t i = 0; i < ex->nenv; i++)
            wipe_str(ex->env[i]);
        free(ex->env);
    }
    free(ex->api_version);
    free(ex->install_hint);
    free(ex);
}

void kc_config_free(kc_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->server);
    free(cfg->namespace_);
    free(cfg->context);
    free(cfg->proxy_url);
    free(cfg->tls_server_name);
    free(cfg->ca);
    free(cfg->cert);
    wipe_free(cfg->key, cfg->key_len);
    wipe_str(cfg->token);
    token_file_free(cfg->tokenfile);
    exec_free(cfg->exec);
    pthread_mutex_destroy(&cfg->mu);
    free(cfg);
}

/* ---- token files --------------------------------------------------------- */

static bool same_file(const token_file *tf, const struct stat *st)
{
    return tf->known && tf->dev == st->st_dev && tf->ino == st->st_ino && tf->size == st->st_size &&
           tf->mtime.tv_sec == st->st_mtim.tv_sec && tf->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/*
 * Make tf->token current: read the file again when it changed or was
 * invalidated. On a failed re-read the last good token stays (and the next
 * call tries again). Caller holds cfg->mu (or owns tf exclusively).
 */
static int token_file_current(token_file *tf, kc_error *err)
{
    struct stat st;
    int e = 0;
    if (stat(tf->path, &st) != 0)
        e = errno;
    if (!e && tf->token && !tf->stale && same_file(tf, &st))
        return KC_OK;
    unsigned char *buf = NULL;
    size_t len = 0;
    if (!e)
        e = read_file(tf->path, TOKEN_FILE_MAX, &buf, &len);
    if (!e && strlen((char *)buf) != len)
        e = EINVAL;
    if (!e) {
        trim_space((char *)buf);
        if (!buf[0])
            e = ENODATA;
    }
    if (e) {
        wipe_free(buf, len);
        if (e == ENOMEM)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory reading %s", tf->path);
        if (tf->token)
            return KC_OK;
        return kc_error_set(err, KC_ERR_IO, "%s %s: %s", tf->what, tf->path,
                            e == ENODATA  ? "file is empty"
                            : e == EINVAL ? "file contains a NUL byte"
                                          : errno_text(e));
    }
    wipe_str(tf->token);
    tf->token = (char *)buf;
    tf->known = true;
    tf->dev = st.st_dev;
    tf->ino = st.st_ino;
    tf->size = st.st_size;
    tf->mtime = st.st_mtim;
    tf->stale = false;
    return KC_OK;
}

/* Put prefix in front of err's message (best effort: on failure the message stays). */
static void prefix_message(kc_error *err, const char *prefix)
{
    char *m = NULL;
    if (!err || !err->message || !prefix || asprintf(&m, "%s%s", prefix, err->message) < 0)
        return;
    free(err->message);
    err->message = m;
}

/* A token file read once at load: failure to read it is a config error. */
static int token_file_new(const char *path, const char *what, token_file **out, kc_error *err)
{
    *out = NULL;
    token_file *tf = calloc(1, sizeof(*tf));
    if (!tf || !(tf->path = strdup(path))) {
        free(tf);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    tf->what = what;
    int rc = token_file_current(tf, err);
    if (rc) {
        token_file_free(tf);
        if (rc == KC_ERR_IO && err)
            err->code = KC_ERR_CONFIG;
        return rc == KC_ERR_IO ? KC_ERR_CONFIG : rc;
    }
    *out = tf;
    return KC_OK;
}

/* ---- kubeconfig sources -------------------------------------------------- */

typedef struct source {
    char *name; /* the path as given, or "(in memory)" */
    char *dir;  /* absolute directory for relative paths */
    kc_yaml *doc;
} source;

typedef struct sources {
    source *v;
    size_t n;
    size_t cap;
} sources;

static void sources_free(sources *ss)
{
    for (size_t i = 0; i < ss->n; i++) {
        free(ss->v[i].name);
        free(ss->v[i].dir);
        kc_yaml_free(ss->v[i].doc);
    }
    free(ss->v);
    memset(ss, 0, sizeof(*ss));
}

/* Which lists a kubeconfig has; each item is {name: ..., <item>: {...}}. */
static const struct {
    const char *list;
    const char *item;
} kinds[] = {{"clusters", "cluster"}, {"users", "user"}, {"contexts", "context"}};

/* Reject structurally wrong documents once, so lookups can trust the shape. */
static int validate_source(const source *s, kc_error *err)
{
    const kc_yaml *y = s->doc;
    int root = kc_yaml_root(y);
    kc_yaml_kind rk = kc_yaml_kind_of(y, root);
    if (rk == KC_YAML_NONE)
        return KC_OK;
    if (rk != KC_YAML_MAP)
        return kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: the top level is not a mapping",
                            s->name);
    int cc = kc_yaml_get(y, root, "current-context");
    if (cc && !kc_yaml_str(y, cc, NULL))
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: current-context (line %zu) is not a string", s->name,
                            kc_yaml_line(y, cc));
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        int l = kc_yaml_get(y, root, kinds[k].list);
        if (!l)
            continue;
        if (kc_yaml_kind_of(y, l) != KC_YAML_SEQ)
            return kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: %s (line %zu) is not a list",
                                s->name, kinds[k].list, kc_yaml_line(y, l));
        for (size_t i = 0; i < kc_yaml_seq_len(y, l); i++) {
            int it = kc_yaml_seq_at(y, l, i);
            if (kc_yaml_kind_of(y, it) != KC_YAML_MAP)
                return kc_error_set(err, KC_ERR_CONFIG,
                                    "kubeconfig %s: %s[%zu] (line %zu) is not a mapping", s->name,
                                    kinds[k].list, i, kc_yaml_line(y, it));
            int nm = kc_yaml_get(y, it, "name");
            size_t len;
            const char *str = kc_yaml_str(y, nm, &len);
            if (nm && (!str || strlen(str) != len))
                return kc_error_set(err, KC_ERR_CONFIG,
                                    "kubeconfig %s: %s[%zu].name (line %zu) is not a string",
                                    s->name, kinds[k].list, i, kc_yaml_line(y, nm));
            int body = kc_yaml_get(y, it, kinds[k].item);
            if (body && kc_yaml_kind_of(y, body) != KC_YAML_MAP)
                return kc_error_set(
                    err, KC_ERR_CONFIG, "kubeconfig %s: %s[%zu].%s (line %zu) is not a mapping",
                    s->name, kinds[k].list, i, kinds[k].item, kc_yaml_line(y, body));
        }
    }
    return KC_OK;
}

/* Parse text as one more source (taking ownership of name and dir). */
static int sources_add(sources *ss, const char *text, size_t len, char *name, char *dir,
                       kc_error *err)
{
    if (!name || !dir) {
        free(name);
        free(dir);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    if (ss->n == ss->cap) {
        size_t ncap = ss->cap ? ss->cap * 2 : 4;
        source *nv = realloc(ss->v, ncap * sizeof(*nv));
        if (!nv) {
            free(name);
            free(dir);
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
        ss->v = nv;
        ss->cap = ncap;
    }
    source s = {name, dir, NULL};
    char *origin = NULL;
    if (asprintf(&origin, "kubeconfig %s", name) < 0) {
        free(name);
        free(dir);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    int rc = kc_yaml_parse(text, len, origin, &s.doc, err);
    free(origin);
    if (!rc)
        rc = validate_source(&s, err);
    if (rc) {
        kc_yaml_free(s.doc);
        free(name);
        free(dir);
        return rc;
    }
    ss->v[ss->n++] = s;
    return KC_OK;
}

/* Add the file at path; *missing is set (and nothing added) when it does not exist. */
static int sources_add_file(sources *ss, const char *path, bool *missing, kc_error *err)
{
    *missing = false;
    unsigned char *buf;
    size_t len;
    int e = read_file(path, CONFIG_FILE_MAX, &buf, &len);
    if (e == ENOENT) {
        *missing = true;
        return KC_OK;
    }
    if (e == ENOMEM)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory reading kubeconfig %s", path);
    if (e)
        return kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: %s", path, errno_text(e));
    /* The file may hold client keys and tokens. */
    int rc = sources_add(ss, (const char *)buf, len, strdup(path), abs_dir_of(path), err);
    wipe_free(buf, len);
    return rc;
}

static char *sources_names(const sources *ss)
{
    const char **names = calloc(ss->n ? ss->n : 1, sizeof(*names));
    if (!names)
        return NULL;
    for (size_t i = 0; i < ss->n; i++)
        names[i] = ss->v[i].name;
    char *s = join_names(names, ss->n);
    free(names);
    return s;
}

/*
 * The entry called name in list kinds[k]: first source that has it, last
 * duplicate inside that source. *body is its inner mapping (0 when empty).
 */
static bool find_named(const sources *ss, size_t k, const char *name, const source **src, int *body)
{
    for (size_t i = 0; i < ss->n; i++) {
        const kc_yaml *y = ss->v[i].doc;
        int l = kc_yaml_get(y, kc_yaml_root(y), kinds[k].list);
        int hit = 0;
        for (size_t j = 0; j < kc_yaml_seq_len(y, l); j++) {
            int it = kc_yaml_seq_at(y, l, j);
            const char *nm = kc_yaml_str(y, kc_yaml_get(y, it, "name"), NULL);
            if (nm && !strcmp(nm, name))
                hit = it;
        }
        if (hit) {
            *src = &ss->v[i];
            *body = kc_yaml_get(y, hit, kinds[k].item);
            return true;
        }
    }
    return false;
}

/* Where a field lives, for messages: kubeconfig <file>: <what> "<name>". */
typedef struct where {
    const source *src;
    const char *what;
    const char *name;
} where;

/* Borrowed string value of key (NULL when absent or null); error when not a string. */
static int get_str(const where *w, int map, const char *key, const char **out, kc_error *err)
{
    *out = NULL;
    int v = kc_yaml_get(w->src->doc, map, key);
    if (!v)
        return KC_OK;
    size_t len;
    const char *s = kc_yaml_str(w->src->doc, v, &len);
    if (!s)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: %s \"%s\": %s (line %zu) is not a string", w->src->name,
                            w->what, w->name, key, kc_yaml_line(w->src->doc, v));
    if (strlen(s) != len)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: %s \"%s\": %s (line %zu) contains a NUL byte",
                            w->src->name, w->what, w->name, key, kc_yaml_line(w->src->doc, v));
    *out = s;
    return KC_OK;
}

static int get_bool(const where *w, int map, const char *key, bool *out, kc_error *err)
{
    *out = false;
    int v = kc_yaml_get(w->src->doc, map, key);
    if (v && !kc_yaml_bool(w->src->doc, v, out))
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: %s \"%s\": %s (line %zu) is not true or false",
                            w->src->name, w->what, w->name, key, kc_yaml_line(w->src->doc, v));
    return KC_OK;
}

static int dup_str(const char *s, char **out, kc_error *err)
{
    *out = NULL;
    if (!s)
        return KC_OK;
    *out = strdup(s);
    return *out ? KC_OK : kc_error_set(err, KC_ERR_NOMEM, "out of memory");
}

/*
 * PEM (or other bytes) from key_data (base64) or, failing that, the file
 * named by key_file (relative to the source's directory).
 */
static int get_blob(const where *w, int map, const char *key_data, const char *key_file,
                    unsigned char **out, size_t *outlen, kc_error *err)
{
    *out = NULL;
    *outlen = 0;
    const char *data, *file;
    int rc = get_str(w, map, key_data, &data, err);
    if (!rc)
        rc = get_str(w, map, key_file, &file, err);
    if (rc)
        return rc;
    if (data && *data) {
        rc = b64_decode(data, strlen(data), out, outlen);
        if (rc == KC_ERR_NOMEM)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        if (rc)
            return kc_error_set(err, KC_ERR_CONFIG,
                                "kubeconfig %s: %s \"%s\": %s is not valid base64", w->src->name,
                                w->what, w->name, key_data);
        return KC_OK;
    }
    if (!file || !*file)
        return KC_OK;
    char *path = path_join(w->src->dir, file);
    if (!path)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    int e = read_file(path, CONFIG_FILE_MAX, out, outlen);
    if (e == ENOMEM)
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory reading %s", path);
    else if (e)
        rc = kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: %s \"%s\": %s %s: %s", w->src->name,
                          w->what, w->name, key_file, path, errno_text(e));
    free(path);
    return rc;
}

/*
 * True when s is http:// or https:// (any case, as URL schemes are) and
 * something after it. Anything else is refused when loading: client-go fails
 * on it at the first request, and curl (limited to http,https) would too.
 */
static bool http_url(const char *s)
{
    size_t n = !strncasecmp(s, "https://", 8) ? 8 : !strncasecmp(s, "http://", 7) ? 7 : 0;
    return n > 0 && s[n] != '\0';
}

/* "https://host:port[/path]" without trailing '/'; a bare host:port gets https://. */
static int normalize_server(const char *server, char **out)
{
    char *s = NULL;
    if (strstr(server, "://"))
        s = strdup(server);
    else if (asprintf(&s, "https://%s", server) < 0)
        s = NULL;
    if (!s)
        return KC_ERR_NOMEM;
    size_t len = strlen(s);
    while (len > 0 && s[len - 1] == '/')
        s[--len] = '\0';
    *out = s;
    return KC_OK;
}

static int parse_cluster(kc_config *cfg, const where *w, int body, kc_error *err)
{
    const char *server, *tsn, *proxy;
    int rc = get_str(w, body, "server", &server, err);
    if (!rc)
        rc = get_str(w, body, "tls-server-name", &tsn, err);
    if (!rc)
        rc = get_str(w, body, "proxy-url", &proxy, err);
    if (!rc)
        rc = get_bool(w, body, "insecure-skip-tls-verify", &cfg->insecure, err);
    if (rc)
        return rc;
    if (!server || !*server)
        return kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: cluster \"%s\" has no server",
                            w->src->name, w->name);
    if (normalize_server(server, &cfg->server))
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if (!http_url(cfg->server))
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: cluster \"%s\": unusable server \"%.200s\" (not an "
                            "http or https URL)",
                            w->src->name, w->name, server);
    if (tsn && *tsn && (rc = dup_str(tsn, &cfg->tls_server_name, err)))
        return rc;
    if (proxy && *proxy && (rc = dup_str(proxy, &cfg->proxy_url, err)))
        return rc;
    rc = get_blob(w, body, "certificate-authority-data", "certificate-authority", &cfg->ca,
                  &cfg->ca_len, err);
    if (rc)
        return rc;
    /* client-go refuses this combination too (transport.TLSConfigFor). */
    if (cfg->insecure && cfg->ca_len)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: cluster \"%s\": insecure-skip-tls-verify and a "
                            "certificate-authority cannot both be set",
                            w->src->name, w->name);
    return KC_OK;
}

/* The cluster config an exec plugin may ask for (extensions[client.authentication.k8s.io/exec]). */
static int cluster_exec_extension(const where *cw, int cluster_body, json_object **out,
                                  kc_error *err)
{
    *out = NULL;
    const kc_yaml *y = cw->src->doc;
    int exts = kc_yaml_get(y, cluster_body, "extensions");
    for (size_t i = 0; i < kc_yaml_seq_len(y, exts); i++) {
        int it = kc_yaml_seq_at(y, exts, i);
        const char *nm = kc_yaml_str(y, kc_yaml_get(y, it, "name"), NULL);
        if (nm && !strcmp(nm, EXEC_CLUSTER_EXTENSION)) {
            json_object_put(*out);
            *out = NULL;
            int rc = kc_yaml_to_json(y, kc_yaml_get(y, it, "extension"), out, err);
            if (rc)
                return rc;
        }
    }
    return KC_OK;
}

static json_object *json_b64(const unsigned char *data, size_t len)
{
    if (len > (size_t)INT_MAX / 2)
        return NULL;
    unsigned char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (!b64)
        return NULL;
    int n = EVP_EncodeBlock(b64, data, (int)len);
    json_object *v = n >= 0 ? json_object_new_string_len((char *)b64, n) : NULL;
    free(b64);
    return v;
}

/*
 * "KUBERNETES_EXEC_INFO=<ExecCredential JSON>" for the plugin's environment:
 * {"apiVersion":...,"kind":"ExecCredential","spec":{"interactive":false,
 *  "cluster":{"server":...,...}}} with spec.cluster only when the kubeconfig
 * sets provideClusterInfo (field names as in client.authentication.k8s.io/v1).
 */
static int exec_info_env(const kc_config *cfg, const char *api_version, bool provide_cluster,
                         json_object *cluster_ext, char **out, kc_error *err)
{
    *out = NULL;
    json_object *root = json_object_new_object();
    json_object *spec = json_object_new_object();
    bool ok = pv_json_add(root, "apiVersion", json_object_new_string(api_version)) &&
              pv_json_add(root, "kind", json_object_new_string("ExecCredential")) &&
              pv_json_add(spec, "interactive", json_object_new_boolean(0));
    if (ok && provide_cluster) {
        json_object *cl = json_object_new_object();
        ok = pv_json_add(cl, "server", json_object_new_string(cfg->server)) &&
             (!cfg->tls_server_name ||
              pv_json_add(cl, "tls-server-name", json_object_new_string(cfg->tls_server_name))) &&
             (!cfg->insecure ||
              pv_json_add(cl, "insecure-skip-tls-verify", json_object_new_boolean(1))) &&
             (!cfg->ca_len ||
              pv_json_add(cl, "certificate-authority-data", json_b64(cfg->ca, cfg->ca_len))) &&
             (!cfg->proxy_url ||
              pv_json_add(cl, "proxy-url", json_object_new_string(cfg->proxy_url))) &&
             (!cluster_ext || pv_json_add(cl, "config", json_object_get(cluster_ext)));
        if (ok)
            ok = pv_json_add(spec, "cluster", cl);
        else
            json_object_put(cl);
    }
    if (ok) {
        ok = pv_json_add(root, "spec", spec);
        spec = NULL;
    }
    if (ok) {
        const char *js = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!js || asprintf(out, "%s=%s", EXEC_INFO_ENV, js) < 0) {
            *out = NULL;
            ok = false;
        }
    }
    json_object_put(spec);
    json_object_put(root);
    return ok ? KC_OK : kc_error_set(err, KC_ERR_NOMEM, "out of memory");
}

static int parse_exec(kc_config *cfg, const where *w, int exec, const where *cw, int cluster_body,
                      kc_error *err)
{
    const kc_yaml *y = w->src->doc;
    const char *api, *command, *hint;
    bool provide = false;
    int rc = get_str(w, exec, "apiVersion", &api, err);
    if (!rc)
        rc = get_str(w, exec, "command", &command, err);
    if (!rc)
        rc = get_str(w, exec, "installHint", &hint, err);
    if (!rc)
        rc = get_bool(w, exec, "provideClusterInfo", &provide, err);
    if (rc)
        return rc;
    /* interactiveMode is ignored: we never have a terminal, and say so (interactive false). */
    if (!api || !*api)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: user \"%s\": exec has no apiVersion", w->src->name,
                            w->name);
    if (strcmp(api, "client.authentication.k8s.io/v1") &&
        strcmp(api, "client.authentication.k8s.io/v1beta1"))
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: user \"%s\": exec apiVersion \"%s\" is not supported "
                            "(use client.authentication.k8s.io/v1 or v1beta1)",
                            w->src->name, w->name, api);
    if (!command || !*command)
        return kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: user \"%s\": exec has no command",
                            w->src->name, w->name);

    exec_plugin *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    cfg->exec = ex;
    /* As client-go: a command with a '/' is a path, relative to the kubeconfig's directory. */
    ex->command = strchr(command, '/') ? path_join(w->src->dir, command) : strdup(command);
    ex->api_version = strdup(api);
    if (!ex->command || !ex->api_version || (hint && !(ex->install_hint = strdup(hint))))
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");

    int args = kc_yaml_get(y, exec, "args");
    if (args && kc_yaml_kind_of(y, args) != KC_YAML_SEQ)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: user \"%s\": exec args (line %zu) is not a list",
                            w->src->name, w->name, kc_yaml_line(y, args));
    size_t nargs = kc_yaml_seq_len(y, args);
    ex->argv = calloc(nargs + 2, sizeof(*ex->argv));
    if (!ex->argv || !(ex->argv[0] = strdup(ex->command)))
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    ex->argc = 1;
    for (size_t i = 0; i < nargs; i++) {
        int a = kc_yaml_seq_at(y, args, i);
        size_t len = 0;
        const char *s = kc_yaml_str(y, a, &len);
        if (!s && kc_yaml_kind_of(y, a) == KC_YAML_NONE)
            s = ""; /* an empty (null) argument */
        if (!s || strlen(s) != len)
            return kc_error_set(err, KC_ERR_CONFIG,
                                "kubeconfig %s: user \"%s\": exec args[%zu] (line %zu) is not a "
                                "string",
                                w->src->name, w->name, i, kc_yaml_line(y, a));
        if (!(ex->argv[ex->argc] = strdup(s)))
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        ex->argc++;
    }

    int env = kc_yaml_get(y, exec, "env");
    if (env && kc_yaml_kind_of(y, env) != KC_YAML_SEQ)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: user \"%s\": exec env (line %zu) is not a list",
                            w->src->name, w->name, kc_yaml_line(y, env));
    size_t nenv = kc_yaml_seq_len(y, env);
    ex->env = calloc(nenv + 2, sizeof(*ex->env));
    if (!ex->env)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nenv; i++) {
        int e = kc_yaml_seq_at(y, env, i);
        where ew = {w->src, "user", w->name};
        const char *name = NULL, *value = NULL;
        if (kc_yaml_kind_of(y, e) != KC_YAML_MAP)
            return kc_error_set(err, KC_ERR_CONFIG,
                                "kubeconfig %s: user \"%s\": exec env[%zu] (line %zu) is not a "
                                "mapping",
                                w->src->name, w->name, i, kc_yaml_line(y, e));
        rc = get_str(&ew, e, "name", &name, err);
        if (!rc)
            rc = get_str(&ew, e, "value", &value, err);
        if (rc)
            return rc;
        if (!name || !*name || strchr(name, '='))
            return kc_error_set(err, KC_ERR_CONFIG,
                                "kubeconfig %s: user \"%s\": exec env[%zu] (line %zu) has no valid "
                                "name",
                                w->src->name, w->name, i, kc_yaml_line(y, e));
        if (asprintf(&ex->env[ex->nenv], "%s=%s", name, value ? value : "") < 0) {
            ex->env[ex->nenv] = NULL;
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
        ex->nenv++;
    }

    json_object *ext = NULL;
    if (provide && (rc = cluster_exec_extension(cw, cluster_body, &ext, err)))
        return rc;
    rc = exec_info_env(cfg, api, provide, ext, &ex->env[ex->nenv], err);
    json_object_put(ext);
    if (rc)
        return rc;
    ex->nenv++;
    return KC_OK;
}

static int parse_user(kc_config *cfg, const where *w, int body, const where *cw, int cluster_body,
                      kc_error *err)
{
    const kc_yaml *y = w->src->doc;
    int ap = kc_yaml_get(y, body, "auth-provider");
    if (ap) {
        const char *apn = kc_yaml_str(y, kc_yaml_get(y, ap, "name"), NULL);
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: user \"%s\": auth-provider \"%s\" is not supported; "
                            "use an exec credential plugin (client.authentication.k8s.io) instead",
                            w->src->name, w->name, apn ? apn : "");
    }
    static const char *const impersonation[] = {"as", "as-uid", "as-groups", "as-user-extra"};
    for (size_t i = 0; i < sizeof(impersonation) / sizeof(impersonation[0]); i++) {
        if (kc_yaml_get(y, body, impersonation[i]))
            return kc_error_set(err, KC_ERR_CONFIG,
                                "kubeconfig %s: user \"%s\": impersonation (%s) is not supported",
                                w->src->name, w->name, impersonation[i]);
    }
    /* username/password are ignored: basic auth was removed from kube-apiserver in 1.19. */
    int rc = get_blob(w, body, "client-certificate-data", "client-certificate", &cfg->cert,
                      &cfg->cert_len, err);
    if (!rc)
        rc = get_blob(w, body, "client-key-data", "client-key", &cfg->key, &cfg->key_len, err);
    if (rc)
        return rc;
    if (!cfg->cert_len != !cfg->key_len)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "kubeconfig %s: user \"%s\": a client certificate needs a client key "
                            "and the other way round",
                            w->src->name, w->name);
    const char *token, *tokenfile;
    rc = get_str(w, body, "token", &token, err);
    if (!rc)
        rc = get_str(w, body, "tokenFile", &tokenfile, err);
    if (rc)
        return rc;
    if (tokenfile && *tokenfile) {
        char *path = path_join(w->src->dir, tokenfile);
        if (!path)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        rc = token_file_new(path, "tokenFile", &cfg->tokenfile, err);
        free(path);
        if (rc == KC_ERR_CONFIG && err) {
            char *prefix = NULL;
            if (asprintf(&prefix, "kubeconfig %s: user \"%s\": ", w->src->name, w->name) >= 0)
                prefix_message(err, prefix);
            free(prefix);
        }
        if (rc)
            return rc;
    } else if (token && *token) {
        if (!(cfg->token = strdup(token)))
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    int exec = kc_yaml_get(y, body, "exec");
    if (exec) {
        if (kc_yaml_kind_of(y, exec) != KC_YAML_MAP)
            return kc_error_set(err, KC_ERR_CONFIG,
                                "kubeconfig %s: user \"%s\": exec (line %zu) is not a mapping",
                                w->src->name, w->name, kc_yaml_line(y, exec));
        rc = parse_exec(cfg, w, exec, cw, cluster_body, err);
        if (rc)
            return rc;
    }
    return KC_OK;
}

static int build_from_sources(const sources *ss, const char *context, kc_config **out,
                              kc_error *err)
{
    *out = NULL;
    const char *ctx_name = context && *context ? context : NULL;
    for (size_t i = 0; !ctx_name && i < ss->n; i++) {
        const kc_yaml *y = ss->v[i].doc;
        const char *cc = kc_yaml_str(y, kc_yaml_get(y, kc_yaml_root(y), "current-context"), NULL);
        if (cc && *cc)
            ctx_name = cc;
    }
    char *names = sources_names(ss);
    if (!names)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    int rc = KC_OK;
    const source *csrc = NULL, *clsrc = NULL, *usrc = NULL;
    int cbody = 0, clbody = 0, ubody = 0;
    if (!ctx_name) {
        rc = kc_error_set(err, KC_ERR_CONFIG,
                          "kubeconfig %s: current-context is not set and no context was given",
                          names);
    } else if (!find_named(ss, 2, ctx_name, &csrc, &cbody)) {
        rc = kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: context \"%s\" not found", names,
                          ctx_name);
    }
    if (rc) {
        free(names);
        return rc;
    }
    where cw = {csrc, "context", ctx_name};
    const char *cluster_name, *user_name, *ns;
    rc = get_str(&cw, cbody, "cluster", &cluster_name, err);
    if (!rc)
        rc = get_str(&cw, cbody, "user", &user_name, err);
    if (!rc)
        rc = get_str(&cw, cbody, "namespace", &ns, err);
    if (!rc && (!cluster_name || !*cluster_name))
        rc = kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: context \"%s\" names no cluster",
                          csrc->name, ctx_name);
    if (!rc && !find_named(ss, 0, cluster_name, &clsrc, &clbody))
        rc = kc_error_set(err, KC_ERR_CONFIG,
                          "kubeconfig %s: cluster \"%s\" (of context \"%s\") not found", names,
                          cluster_name, ctx_name);
    if (!rc && user_name && *user_name && !find_named(ss, 1, user_name, &usrc, &ubody))
        rc = kc_error_set(err, KC_ERR_CONFIG,
                          "kubeconfig %s: user \"%s\" (of context \"%s\") not found", names,
                          user_name, ctx_name);
    free(names);
    if (rc)
        return rc;

    kc_config *cfg = config_new();
    if (!cfg)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    where clw = {clsrc, "cluster", cluster_name};
    rc = parse_cluster(cfg, &clw, clbody, err);
    if (!rc && usrc) {
        where uw = {usrc, "user", user_name};
        rc = parse_user(cfg, &uw, ubody, &clw, clbody, err);
    }
    if (!rc)
        rc = dup_str(ctx_name, &cfg->context, err);
    if (!rc)
        rc = dup_str(ns && *ns ? ns : "default", &cfg->namespace_, err);
    if (rc) {
        kc_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return KC_OK;
}

/* ---- public loading ------------------------------------------------------ */

int kc_config_from_yaml(const char *yaml, size_t len, const char *context, kc_config **out,
                        kc_error *err)
{
    if (!out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_from_yaml: out is NULL");
    *out = NULL;
    if (!yaml && len)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_from_yaml: yaml is NULL");
    sources ss = {0};
    /* Relative paths in an in-memory document are taken from the current directory. */
    int rc = sources_add(&ss, yaml, len, strdup("(in memory)"), abs_dir_of("x"), err);
    if (!rc)
        rc = build_from_sources(&ss, context, out, err);
    sources_free(&ss);
    return rc;
}

static char *host_port(const char *host, const char *port)
{
    char *s = NULL;
    bool v6 = strchr(host, ':') && host[0] != '[';
    if (asprintf(&s, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0)
        return NULL;
    return s;
}

int kc_config_in_cluster(const char *sa_dir, kc_config **out, kc_error *err)
{
    if (!out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_in_cluster: out is NULL");
    *out = NULL;
    /* The environment lets a process outside a pod (tests, a local run) act
     * as a service account without a mount at the fixed path. */
    if (!sa_dir || !*sa_dir)
        sa_dir = getenv(KC_SA_DIR_ENV);
    if (!sa_dir || !*sa_dir)
        sa_dir = KC_DEFAULT_SA_DIR;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        return kc_error_set(
            err, KC_ERR_CONFIG,
            "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
            "must both be set");
    kc_config *cfg = config_new();
    if (!cfg)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    cfg->in_cluster = true;
    int rc = KC_OK;
    char *token_path = path_join(sa_dir, "token");
    char *ca_path = path_join(sa_dir, "ca.crt");
    char *ns_path = path_join(sa_dir, "namespace");
    cfg->server = host_port(host, port);
    cfg->context = strdup("");
    if (!token_path || !ca_path || !ns_path || !cfg->server || !cfg->context)
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if (!rc) {
        rc = token_file_new(token_path, "service-account token", &cfg->tokenfile, err);
        if (rc == KC_ERR_CONFIG)
            prefix_message(err, "in-cluster config: ");
    }
    if (!rc) {
        /* A missing ca.crt leaves the system trust store, as client-go does. */
        int e = read_file(ca_path, CONFIG_FILE_MAX, &cfg->ca, &cfg->ca_len);
        if (e && e != ENOENT)
            rc = kc_error_set(err, e == ENOMEM ? KC_ERR_NOMEM : KC_ERR_CONFIG,
                              "in-cluster config: %s: %s", ca_path, errno_text(e));
    }
    if (!rc) {
        unsigned char *ns = NULL;
        size_t len = 0;
        int e = read_file(ns_path, 4096, &ns, &len);
        if (!e) {
            bool clean = strlen((char *)ns) == len;
            trim_space((char *)ns);
            if (clean && ns[0])
                cfg->namespace_ = (char *)ns;
            else
                free(ns);
        } else if (e != ENOENT) {
            rc = kc_error_set(err, e == ENOMEM ? KC_ERR_NOMEM : KC_ERR_CONFIG,
                              "in-cluster config: %s: %s", ns_path, errno_text(e));
        }
        if (!rc && !cfg->namespace_)
            rc = dup_str("default", &cfg->namespace_, err);
    }
    free(token_path);
    free(ca_path);
    free(ns_path);
    if (rc) {
        kc_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return KC_OK;
}

/* Split KUBECONFIG on ':' dropping empty and repeated entries. */
static int split_kubeconfig(const char *env, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t max = 1;
    for (const char *p = env; *p; p++)
        max += *p == ':';
    char **v = calloc(max, sizeof(*v));
    if (!v)
        return KC_ERR_NOMEM;
    const char *p = env;
    while (1) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) {
            char *s = strndup(p, len);
            if (!s) {
                for (size_t i = 0; i < *n; i++)
                    free(v[i]);
                free(v);
                *n = 0;
                return KC_ERR_NOMEM;
            }
            bool dup = false;
            for (size_t i = 0; i < *n && !dup; i++)
                dup = !strcmp(v[i], s);
            if (dup)
                free(s);
            else
                v[(*n)++] = s;
        }
        if (!end)
            break;
        p = end + 1;
    }
    *out = v;
    return KC_OK;
}

static bool in_cluster_possible(const kc_config_opts *opts)
{
    const char *h = getenv("KUBERNETES_SERVICE_HOST");
    return !opts->no_in_cluster && h && *h;
}

static int load_inner(const kc_config_opts *opts, kc_config **out, kc_error *err)
{
    sources ss = {0};
    bool missing;
    int rc;
    if (opts->kubeconfig && *opts->kubeconfig) {
        rc = sources_add_file(&ss, opts->kubeconfig, &missing, err);
        if (!rc && missing)
            rc = kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: %s", opts->kubeconfig,
                              strerror(ENOENT));
        if (!rc)
            rc = build_from_sources(&ss, opts->context, out, err);
        sources_free(&ss);
        return rc;
    }
    const char *env = getenv("KUBECONFIG");
    char **files = NULL;
    size_t nfiles = 0;
    if (env && *env && split_kubeconfig(env, &files, &nfiles))
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if (nfiles) {
        rc = KC_OK;
        for (size_t i = 0; !rc && i < nfiles; i++)
            rc = sources_add_file(&ss, files[i], &missing, err);
        if (!rc && ss.n)
            rc = build_from_sources(&ss, opts->context, out, err);
        else if (!rc && in_cluster_possible(opts))
            rc = kc_config_in_cluster(opts->sa_dir, out, err);
        else if (!rc) {
            char *names = join_names((const char *const *)files, nfiles);
            rc = kc_error_set(err, names ? KC_ERR_CONFIG : KC_ERR_NOMEM,
                              "no configuration: none of the KUBECONFIG files exist (%s)",
                              names ? names : "");
            free(names);
        }
        for (size_t i = 0; i < nfiles; i++)
            free(files[i]);
        free(files);
        sources_free(&ss);
        return rc;
    }
    free(files);
    if (in_cluster_possible(opts))
        return kc_config_in_cluster(opts->sa_dir, out, err);
    const char *home = getenv("HOME");
    if (!home || !*home)
        return kc_error_set(err, KC_ERR_CONFIG,
                            "no configuration: no kubeconfig given, KUBECONFIG is unset, not in a "
                            "cluster (KUBERNETES_SERVICE_HOST unset) and HOME is unset");
    char *path = NULL;
    if (asprintf(&path, "%s/.kube/config", home) < 0)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    rc = sources_add_file(&ss, path, &missing, err);
    if (!rc && missing)
        rc = kc_error_set(err, KC_ERR_CONFIG,
                          "no configuration: no kubeconfig given, KUBECONFIG is unset, not in a "
                          "cluster (KUBERNETES_SERVICE_HOST unset) and %s does not exist",
                          path);
    if (!rc)
        rc = build_from_sources(&ss, opts->context, out, err);
    free(path);
    sources_free(&ss);
    return rc;
}

int kc_config_load(const kc_config_opts *opts, kc_config **out, kc_error *err)
{
    static const kc_config_opts none = {0};
    if (!out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_load: out is NULL");
    *out = NULL;
    if (!opts)
        opts = &none;
    kc_config *cfg = NULL;
    int rc = load_inner(opts, &cfg, err);
    if (rc)
        return rc;
    if (opts->namespace_ && *opts->namespace_) {
        char *ns = strdup(opts->namespace_);
        if (!ns) {
            kc_config_free(cfg);
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
        free(cfg->namespace_);
        cfg->namespace_ = ns;
    }
    *out = cfg;
    return KC_OK;
}

/* ---- accessors ----------------------------------------------------------- */

const char *kc_config_server(const kc_config *cfg)
{
    return cfg ? cfg->server : NULL;
}

const char *kc_config_namespace(const kc_config *cfg)
{
    return cfg ? cfg->namespace_ : NULL;
}

const char *kc_config_context(const kc_config *cfg)
{
    return cfg ? cfg->context : NULL;
}

const char *kc_config_proxy_url(const kc_config *cfg)
{
    return cfg ? cfg->proxy_url : NULL;
}

bool kc_config_is_in_cluster(const kc_config *cfg)
{
    return cfg && cfg->in_cluster;
}

void kc_config_tls(const kc_config *cfg, kc_tls *out)
{
    memset(out, 0, sizeof(*out));
    if (!cfg)
        return;
    out->ca = (kc_blob){cfg->ca, cfg->ca_len};
    out->client_cert = (kc_blob){cfg->cert, cfg->cert_len};
    out->client_key = (kc_blob){cfg->key, cfg->key_len};
    out->insecure = cfg->insecure;
    out->server_name = cfg->tls_server_name;
}

/* ---- exec plugin --------------------------------------------------------- */

/* RFC 3339 ("2006-01-02T15:04:05.999Z", "...+02:00") to a time_t. */
static bool parse_rfc3339(const char *s, time_t *out)
{
    int v[6] = {0};
    static const int widths[6] = {4, 2, 2, 2, 2, 2};
    static const char seps[6] = {'-', '-', 'T', ':', ':', '\0'};
    const char *p = s;
    for (int i = 0; i < 6; i++) {
        for (int d = 0; d < widths[i]; d++, p++) {
            if (*p < '0' || *p > '9')
                return false;
            v[i] = v[i] * 10 + (*p - '0');
        }
        if (i < 5) {
            if (*p != seps[i] && !(i == 2 && (*p == 't' || *p == ' ')))
                return false;
            p++;
        }
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] != ':' || p[3] < '0' ||
            p[3] > '9' || p[4] < '0' || p[4] > '9')
            return false;
        int oh = (p[0] - '0') * 10 + (p[1] - '0'), om = (p[3] - '0') * 10 + (p[4] - '0');
        if (oh > 23 || om > 59)
            return false;
        offset = sign * (oh * 3600L + om * 60L);
        p += 5;
    } else {
        return false;
    }
    if (*p)
        return false;
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
        return false;
    struct tm tm = {0};
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    time_t t = timegm(&tm);
    if (t == (time_t)-1 && v[0] != 1969)
        return false;
    *out = t - offset;
    return true;
}

/* Absolute path of the program to run; a bare name is looked up in PATH. */
static int resolve_command(const exec_plugin *ex, char **out, kc_error *err)
{
    *out = NULL;
    if (strchr(ex->command, '/')) {
        *out = strdup(ex->command);
        return *out ? KC_OK : kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    while (1) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *cand = NULL;
        if (asprintf(&cand, "%.*s/%s", (int)(len ? len : 1), len ? p : ".", ex->command) < 0)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
            *out = cand;
            return KC_OK;
        }
        free(cand);
        if (!end)
            break;
        p = end + 1;
    }
    return kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                        "exec plugin \"%s\": executable not found in PATH%s%s", ex->command,
                        ex->install_hint ? ". " : "", ex->install_hint ? ex->install_hint : "");
}

/* Parent environment minus names the plugin config sets, then the plugin's entries. */
static char **build_env(const exec_plugin *ex)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **envp = calloc(n + ex->nenv + 1, sizeof(*envp));
    if (!envp)
        return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t nlen = eq ? (size_t)(eq - *e) : strlen(*e);
        bool overridden = false;
        for (size_t i = 0; i < ex->nenv && !overridden; i++)
            overridden = !strncmp(ex->env[i], *e, nlen) && ex->env[i][nlen] == '=';
        if (!overridden)
            envp[k++] = *e;
    }
    for (size_t i = 0; i < ex->nenv; i++)
        envp[k++] = ex->env[i];
    envp[k] = NULL;
    return envp;
}

typedef struct outbuf {
    char *p;
    size_t len;
    size_t cap;
} outbuf;

static bool outbuf_add(outbuf *b, const char *data, size_t n, size_t limit)
{
    if (b->len + n > limit)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = malloc(ncap);
        if (!np)
            return false;
        if (b->p)
            memcpy(np, b->p, b->len);
        wipe_free(b->p, b->cap);
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

enum { COLLECT_OK, COLLECT_TOO_LARGE, COLLECT_TIMEOUT, COLLECT_NOMEM, COLLECT_IO };

/*
 * Read the plugin's stdout (bounded) and stderr (copied to ours, the first
 * EXEC_STDERR_KEPT bytes kept) until both close or the deadline passes.
 */
static int collect_output(int out_fd, int err_fd, outbuf *out, outbuf *errkept)
{
    struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    double deadline = pv_clock_monotonic() + EXEC_TIMEOUT_SEC;
    char chunk[4096];
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        double left = deadline - pv_clock_monotonic();
        if (left <= 0)
            return COLLECT_TIMEOUT;
        int r = poll(fds, 2, (int)(left * 1000) + 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return COLLECT_IO;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(fds[i].fd, chunk, sizeof(chunk));
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n <= 0) {
                fds[i].fd = -1; /* closed by the caller */
                continue;
            }
            if (i == 0) {
                if (out->len + (size_t)n > EXEC_STDOUT_MAX) {
                    explicit_bzero(chunk, sizeof(chunk));
                    return COLLECT_TOO_LARGE;
                }
                if (!outbuf_add(out, chunk, (size_t)n, EXEC_STDOUT_MAX)) {
                    explicit_bzero(chunk, sizeof(chunk));
                    return COLLECT_NOMEM;
                }
            } else {
                for (ssize_t off = 0; off < n;) {
                    ssize_t w = write(STDERR_FILENO, chunk + off, (size_t)(n - off));
                    if (w < 0 && errno == EINTR)
                        continue;
                    if (w <= 0)
                        break;
                    off += w;
                }
                size_t room = EXEC_STDERR_KEPT - errkept->len;
                size_t keep = (size_t)n < room ? (size_t)n : room;
                if (keep && !outbuf_add(errkept, chunk, keep, EXEC_STDERR_KEPT))
                    return COLLECT_NOMEM;
            }
        }
    }
    explicit_bzero(chunk, sizeof(chunk));
    return COLLECT_OK;
}

/* Printable one-line form of the plugin's stderr, for messages. */
static void squash_text(char *s)
{
    for (char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    trim_space(s);
}

static const char *json_str(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Parse an ExecCredential and store it in the cache. Never puts output text in a message. */
static int exec_store_output(exec_plugin *ex, const char *text, size_t len, kc_error *err)
{
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    json_object *root = json_tokener_parse_ex(tok, text, (int)len);
    bool ok = json_tokener_get_error(tok) == json_tokener_success;
    json_tokener_free(tok);
    int rc = KC_OK;
    if (!ok || !json_object_is_type(root, json_type_object)) {
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\": output is not a JSON ExecCredential", ex->command);
        goto done;
    }
    const char *kind = json_str(root, "kind"), *api = json_str(root, "apiVersion");
    if (!kind || strcmp(kind, "ExecCredential")) {
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\": output kind is not ExecCredential", ex->command);
        goto done;
    }
    if (!api || strcmp(api, ex->api_version)) {
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\" is configured to use API version %s, plugin returned "
                          "version %.80s",
                          ex->command, ex->api_version, api ? api : "(none)");
        goto done;
    }
    json_object *status;
    if (!json_object_object_get_ex(root, "status", &status) ||
        !json_object_is_type(status, json_type_object)) {
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN, "exec plugin \"%s\" did not return a status",
                          ex->command);
        goto done;
    }
    const char *token = json_str(status, "token");
    const char *cert = json_str(status, "clientCertificateData");
    const char *key = json_str(status, "clientKeyData");
    const char *exp = json_str(status, "expirationTimestamp");
    if (token && !*token)
        token = NULL;
    if (cert && !*cert)
        cert = NULL;
    if (key && !*key)
        key = NULL;
    if (!cert != !key) {
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\" returned only one of clientCertificateData and "
                          "clientKeyData",
                          ex->command);
        goto done;
    }
    if (!token && !cert) {
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\" returned neither a token nor a client certificate",
                          ex->command);
        goto done;
    }
    time_t expiry = 0;
    if (exp && *exp && !parse_rfc3339(exp, &expiry)) {
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\" returned an invalid expirationTimestamp \"%.64s\"",
                          ex->command, exp);
        goto done;
    }
    char *t = token ? strdup(token) : NULL;
    char *c = cert ? strdup(cert) : NULL;
    char *k = key ? strdup(key) : NULL;
    if ((token && !t) || (cert && !c) || (key && !k)) {
        wipe_str(t);
        wipe_str(c);
        wipe_str(k);
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        goto done;
    }
    exec_clear_cache(ex);
    ex->token = t;
    ex->cert = c;
    ex->key = k;
    ex->have = true;
    ex->expires = exp && *exp;
    ex->expiry = expiry;
done:
    json_object_put(root);
    return rc;
}

/* Run the plugin once and cache what it returns. Caller holds cfg->mu. */
static int exec_run(exec_plugin *ex, kc_error *err)
{
    char *path = NULL;
    int rc = resolve_command(ex, &path, err);
    if (rc)
        return rc;
    char **envp = build_env(ex);
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    if (!envp) {
        free(path);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (outp[i] >= 0)
                close(outp[i]);
        }
        free(envp);
        free(path);
        return kc_error_set(err, KC_ERR_AUTH_PLUGIN, "exec plugin \"%s\": pipe: %s", ex->command,
                            strerror(e));
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t mask, defaults;
    sigemptyset(&mask);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    int sr = posix_spawn_file_actions_init(&fa);
    if (!sr) {
        sr = posix_spawnattr_init(&attr);
        if (sr)
            posix_spawn_file_actions_destroy(&fa);
    }
    pid_t pid = -1;
    if (!sr) {
        if (!(sr = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) &&
            !(sr = posix_spawn_file_actions_adddup2(&fa, outp[1], STDOUT_FILENO)) &&
            !(sr = posix_spawn_file_actions_adddup2(&fa, errp[1], STDERR_FILENO)) &&
            !(sr = posix_spawnattr_setsigmask(&attr, &mask)) &&
            !(sr = posix_spawnattr_setsigdefault(&attr, &defaults)) &&
            !(sr = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)))
            sr = posix_spawn(&pid, path, &fa, &attr, ex->argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
    }
    close(outp[1]);
    close(errp[1]);
    free(envp);
    free(path);
    if (sr) {
        close(outp[0]);
        close(errp[0]);
        return kc_error_set(err, KC_ERR_AUTH_PLUGIN, "exec plugin \"%s\": cannot start: %s",
                            ex->command, strerror(sr));
    }

    outbuf out = {0}, errkept = {0};
    int how = collect_output(outp[0], errp[0], &out, &errkept);
    if (how != COLLECT_OK)
        kill(pid, SIGKILL);
    close(outp[0]);
    close(errp[0]);
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (errkept.p)
        squash_text(errkept.p);
    const char *errtext = errkept.p && *errkept.p ? errkept.p : "";
    bool cut = errkept.len >= EXEC_STDERR_KEPT;
    if (how == COLLECT_TOO_LARGE)
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\" wrote more than %zu bytes to stdout", ex->command,
                          EXEC_STDOUT_MAX);
    else if (how == COLLECT_TIMEOUT)
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN, "exec plugin \"%s\" did not finish within %d s",
                          ex->command, EXEC_TIMEOUT_SEC);
    else if (how == COLLECT_NOMEM)
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory reading exec plugin output");
    else if (how != COLLECT_OK)
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN, "exec plugin \"%s\": reading its output failed",
                          ex->command);
    else if (w < 0)
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN, "exec plugin \"%s\": waitpid: %s", ex->command,
                          strerror(errno));
    else if (WIFSIGNALED(status))
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN,
                          "exec plugin \"%s\" was killed by signal %d%s%s%s", ex->command,
                          WTERMSIG(status), *errtext ? ": " : "", errtext, cut ? "..." : "");
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = kc_error_set(err, KC_ERR_AUTH_PLUGIN, "exec plugin \"%s\" exited with status %d%s%s%s",
                          ex->command, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                          *errtext ? ": " : "", errtext, cut ? "..." : "");
    else
        rc = exec_store_output(ex, out.p ? out.p : "", out.len, err);
    wipe_free(out.p, out.cap);
    free(errkept.p);
    return rc;
}

static bool exec_fresh(const exec_plugin *ex)
{
    if (!ex->have)
        return false;
    return !ex->expires || time(NULL) < ex->expiry - EXPIRY_SKEW_SEC;
}

/* ---- credentials --------------------------------------------------------- */

int kc_config_bearer_token(kc_config *cfg, char **token, kc_error *err)
{
    if (!token)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_bearer_token: token is NULL");
    *token = NULL;
    if (!cfg)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_bearer_token: cfg is NULL");
    int rc = KC_OK;
    const char *src = NULL;
    pthread_mutex_lock(&cfg->mu);
    if (cfg->tokenfile) {
        rc = token_file_current(cfg->tokenfile, err);
        src = cfg->tokenfile->token;
    } else if (cfg->token) {
        src = cfg->token;
    } else if (cfg->exec) {
        if (!exec_fresh(cfg->exec))
            rc = exec_run(cfg->exec, err);
        src = cfg->exec->token;
    }
    if (!rc && src && !(*token = strdup(src)))
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    pthread_mutex_unlock(&cfg->mu);
    return rc;
}

int kc_config_exec_cert(kc_config *cfg, char **cert_pem, char **key_pem, kc_error *err)
{
    if (!cert_pem || !key_pem)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_exec_cert: NULL out parameter");
    *cert_pem = *key_pem = NULL;
    if (!cfg)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_config_exec_cert: cfg is NULL");
    /* The plugin is only used when the kubeconfig holds no token of its own. */
    if (!cfg->exec || cfg->tokenfile || cfg->token)
        return KC_OK;
    int rc = KC_OK;
    pthread_mutex_lock(&cfg->mu);
    if (!exec_fresh(cfg->exec))
        rc = exec_run(cfg->exec, err);
    if (!rc && cfg->exec->cert) {
        *cert_pem = strdup(cfg->exec->cert);
        *key_pem = strdup(cfg->exec->key);
        if (!*cert_pem || !*key_pem) {
            wipe_str(*cert_pem);
            wipe_str(*key_pem);
            *cert_pem = *key_pem = NULL;
            rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
    }
    pthread_mutex_unlock(&cfg->mu);
    return rc;
}

bool kc_config_invalidate_credentials(kc_config *cfg)
{
    if (!cfg)
        return false;
    bool refreshable = false;
    pthread_mutex_lock(&cfg->mu);
    if (cfg->tokenfile) {
        cfg->tokenfile->stale = true;
        refreshable = true;
    } else if (!cfg->token && cfg->exec) {
        exec_clear_cache(cfg->exec);
        refreshable = true;
    }
    pthread_mutex_unlock(&cfg->mu);
    return refreshable;
}
