/*
 * kc_config - kubeconfig / in-cluster loading and the credential cache.
 *
 * This file holds the config object, the small helpers the loader shares
 * (file reading, paths, base64, wiping secrets), token files, the public
 * loading entry points (kc_config_load, kc_config_in_cluster,
 * kc_config_from_yaml) and the accessors. Parsing and merging kubeconfig
 * files is in kc_config_kubeconfig.c; running exec plugins and handing out
 * credentials is in kc_config_exec.c; what they share is in
 * kc_config_internal.h.
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
 */
#include "kc_config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------- */

void kc_config_wipe_free(void *p, size_t n)
{
    if (!p)
        return;
    explicit_bzero(p, n);
    free(p);
}

void kc_config_wipe_str(char *s)
{
    if (s)
        kc_config_wipe_free(s, strlen(s));
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Trim leading and trailing whitespace in place (strings.TrimSpace). */
void kc_config_trim_space(char *s)
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
int kc_config_read_file(const char *path, size_t max, unsigned char **out, size_t *len)
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
            kc_config_wipe_free(buf, cap + 1);
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
        kc_config_wipe_free(buf, buf ? cap + 1 : 0);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

const char *kc_config_errno_text(int e)
{
    return e == EFBIG ? "file too large" : strerror(e);
}

char *kc_config_path_join(const char *dir, const char *p)
{
    char *r = NULL;
    if (p[0] == '/')
        return strdup(p);
    if (asprintf(&r, "%s/%s", dir, p) < 0)
        return NULL;
    return r;
}

/* Absolute directory of path (relative paths are taken from the cwd). */
char *kc_config_abs_dir_of(const char *path)
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
int kc_config_b64_decode(const char *in, size_t len, unsigned char **out, size_t *outlen)
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
            kc_config_wipe_free(buf, len / 4 * 3 + 3);
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
        kc_config_wipe_free(buf, len / 4 * 3 + 3);
        return 1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* "a, b, c" of the names of a string list; for messages. */
char *kc_config_join_names(const char *const *names, size_t n)
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

kc_config *kc_config_new(void)
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
    kc_config_wipe_str(tf->token);
    free(tf);
}

void kc_config_exec_clear_cache(exec_plugin *ex)
{
    kc_config_wipe_str(ex->token);
    kc_config_wipe_str(ex->cert);
    kc_config_wipe_str(ex->key);
    ex->token = ex->cert = ex->key = NULL;
    ex->have = false;
    ex->expires = false;
    ex->expiry = 0;
}

static void exec_free(exec_plugin *ex)
{
    if (!ex)
        return;
    kc_config_exec_clear_cache(ex);
    free(ex->command);
    if (ex->argv) {
        for (size_t i = 0; i < ex->argc; i++)
            free(ex->argv[i]);
        free(ex->argv);
    }
    if (ex->env) {
        /* exec env values may hold secrets (API keys for the plugin). */
        for (size_t i = 0; i < ex->nenv; i++)
            kc_config_wipe_str(ex->env[i]);
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
    kc_config_wipe_free(cfg->key, cfg->key_len);
    kc_config_wipe_str(cfg->token);
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
int kc_config_token_file_current(token_file *tf, kc_error *err)
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
        e = kc_config_read_file(tf->path, TOKEN_FILE_MAX, &buf, &len);
    if (!e && strlen((char *)buf) != len)
        e = EINVAL;
    if (!e) {
        kc_config_trim_space((char *)buf);
        if (!buf[0])
            e = ENODATA;
    }
    if (e) {
        kc_config_wipe_free(buf, len);
        if (e == ENOMEM)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory reading %s", tf->path);
        if (tf->token)
            return KC_OK;
        return kc_error_set(err, KC_ERR_IO, "%s %s: %s", tf->what, tf->path,
                            e == ENODATA  ? "file is empty"
                            : e == EINVAL ? "file contains a NUL byte"
                                          : kc_config_errno_text(e));
    }
    kc_config_wipe_str(tf->token);
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
void kc_config_prefix_message(kc_error *err, const char *prefix)
{
    char *m = NULL;
    if (!err || !err->message || !prefix || asprintf(&m, "%s%s", prefix, err->message) < 0)
        return;
    free(err->message);
    err->message = m;
}

/* A token file read once at load: failure to read it is a config error. */
int kc_config_token_file_new(const char *path, const char *what, token_file **out, kc_error *err)
{
    *out = NULL;
    token_file *tf = calloc(1, sizeof(*tf));
    if (!tf || !(tf->path = strdup(path))) {
        free(tf);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    tf->what = what;
    int rc = kc_config_token_file_current(tf, err);
    if (rc) {
        token_file_free(tf);
        if (rc == KC_ERR_IO && err)
            err->code = KC_ERR_CONFIG;
        return rc == KC_ERR_IO ? KC_ERR_CONFIG : rc;
    }
    *out = tf;
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
    int rc = kc_config_sources_add(&ss, yaml, len, strdup("(in memory)"), kc_config_abs_dir_of("x"),
                                   err);
    if (!rc)
        rc = kc_config_build_from_sources(&ss, context, out, err);
    kc_config_sources_free(&ss);
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
    kc_config *cfg = kc_config_new();
    if (!cfg)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    cfg->in_cluster = true;
    int rc = KC_OK;
    char *token_path = kc_config_path_join(sa_dir, "token");
    char *ca_path = kc_config_path_join(sa_dir, "ca.crt");
    char *ns_path = kc_config_path_join(sa_dir, "namespace");
    cfg->server = host_port(host, port);
    cfg->context = strdup("");
    if (!token_path || !ca_path || !ns_path || !cfg->server || !cfg->context)
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if (!rc) {
        rc = kc_config_token_file_new(token_path, "service-account token", &cfg->tokenfile, err);
        if (rc == KC_ERR_CONFIG)
            kc_config_prefix_message(err, "in-cluster config: ");
    }
    if (!rc) {
        /* A missing ca.crt leaves the system trust store, as client-go does. */
        int e = kc_config_read_file(ca_path, CONFIG_FILE_MAX, &cfg->ca, &cfg->ca_len);
        if (e && e != ENOENT)
            rc = kc_error_set(err, e == ENOMEM ? KC_ERR_NOMEM : KC_ERR_CONFIG,
                              "in-cluster config: %s: %s", ca_path, kc_config_errno_text(e));
    }
    if (!rc) {
        unsigned char *ns = NULL;
        size_t len = 0;
        int e = kc_config_read_file(ns_path, 4096, &ns, &len);
        if (!e) {
            bool clean = strlen((char *)ns) == len;
            kc_config_trim_space((char *)ns);
            if (clean && ns[0])
                cfg->namespace_ = (char *)ns;
            else
                free(ns);
        } else if (e != ENOENT) {
            rc = kc_error_set(err, e == ENOMEM ? KC_ERR_NOMEM : KC_ERR_CONFIG,
                              "in-cluster config: %s: %s", ns_path, kc_config_errno_text(e));
        }
        if (!rc && !cfg->namespace_)
            rc = kc_config_dup_str("default", &cfg->namespace_, err);
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
        rc = kc_config_sources_add_file(&ss, opts->kubeconfig, &missing, err);
        if (!rc && missing)
            rc = kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: %s", opts->kubeconfig,
                              strerror(ENOENT));
        if (!rc)
            rc = kc_config_build_from_sources(&ss, opts->context, out, err);
        kc_config_sources_free(&ss);
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
            rc = kc_config_sources_add_file(&ss, files[i], &missing, err);
        if (!rc && ss.n)
            rc = kc_config_build_from_sources(&ss, opts->context, out, err);
        else if (!rc && in_cluster_possible(opts))
            rc = kc_config_in_cluster(opts->sa_dir, out, err);
        else if (!rc) {
            char *names = kc_config_join_names((const char *const *)files, nfiles);
            rc = kc_error_set(err, names ? KC_ERR_CONFIG : KC_ERR_NOMEM,
                              "no configuration: none of the KUBECONFIG files exist (%s)",
                              names ? names : "");
            free(names);
        }
        for (size_t i = 0; i < nfiles; i++)
            free(files[i]);
        free(files);
        kc_config_sources_free(&ss);
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
    rc = kc_config_sources_add_file(&ss, path, &missing, err);
    if (!rc && missing)
        rc = kc_error_set(err, KC_ERR_CONFIG,
                          "no configuration: no kubeconfig given, KUBECONFIG is unset, not in a "
                          "cluster (KUBERNETES_SERVICE_HOST unset) and %s does not exist",
                          path);
    if (!rc)
        rc = kc_config_build_from_sources(&ss, opts->context, out, err);
    free(path);
    kc_config_sources_free(&ss);
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
