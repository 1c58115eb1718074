/*
 * kc_config_exec - exec credential plugins and the credentials handed to
 * requests (part of kc_config; see kc_config.c for the object and the
 * credential cache's rules, kc_config_kubeconfig.c for how the exec entry of
 * a kubeconfig is parsed).
 *
 * Exec plugins are started with posix_spawn (safe in a threaded process,
 * unlike fork + malloc), stdin from /dev/null, the parent's environment plus
 * the exec env entries plus KUBERNETES_EXEC_INFO, SIGPIPE reset to default.
 * stdout is read up to EXEC_STDOUT_MAX; stderr is copied to our stderr (the
 * plugin's own diagnostics, as kubectl shows them) and its first part is kept
 * for the error message. The caller must not set SIGCHLD to SIG_IGN (the
 * exit status would be lost).
 */
#include "kc_config_internal.h"

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

#include "pv_clock.h"

extern char **environ;

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
        kc_config_wipe_free(b->p, b->cap);
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
    kc_config_trim_space(s);
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
        kc_config_wipe_str(t);
        kc_config_wipe_str(c);
        kc_config_wipe_str(k);
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        goto done;
    }
    kc_config_exec_clear_cache(ex);
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
    kc_config_wipe_free(out.p, out.cap);
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
        rc = kc_config_token_file_current(cfg->tokenfile, err);
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
            kc_config_wipe_str(*cert_pem);
            kc_config_wipe_str(*key_pem);
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
        kc_config_exec_clear_cache(cfg->exec);
        refreshable = true;
    }
    pthread_mutex_unlock(&cfg->mu);
    return refreshable;
}
