/*
 * e2e - helpers of the end-to-end tier (see e2e.h).
 *
 * Everything that sets up or inspects the cluster independently of the code
 * under test goes through kubectl (a subprocess with captured stdout and
 * stderr), so a broken client cannot make its own test pass: namespaces,
 * ServiceAccounts, tokens, RBAC checks and the CRDs are kubectl's job here.
 *
 * Subprocesses are started with posix_spawnp (safe in a process with
 * threads), their three pipes served by one poll loop so a child that writes
 * a lot to stderr while we feed its stdin cannot deadlock either side, and
 * killed after a deadline. Only the pid we started is ever signalled.
 *
 * Names: every namespace and cluster-scoped object of a test carries a
 * suffix of pid, counter and randomness, so reruns against a long-lived
 * control plane and leftovers of a crashed run never collide.
 */
#include "e2e.h"
#include "pv_clock.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_RUN_TIMEOUT_S 120.0
#define MAX_KUBECTL_ARGS 64

/* ---- environment ---------------------------------------------------------- */

const char *e2e_source_dir(void)
{
    const char *s = getenv("PROVISIO_SOURCE_DIR");
    return (s && *s) ? s : PROVISIO_SOURCE_DIR;
}

const char *e2e_kube_dir(void)
{
    const char *s = getenv("PROVISIO_KUBE_DIR");
    return (s && *s) ? s : NULL;
}

/* ---- time ----------------------------------------------------------------- */

double e2e_now(void)
{
    return pv_clock_monotonic();
}

void e2e_sleep(double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

bool e2e_wait_until(double timeout_s, double interval_s, e2e_cond_fn cond, void *arg)
{
    double deadline = e2e_now() + timeout_s;
    for (;;) {
        if (cond(arg))
            return true;
        double left = deadline - e2e_now();
        if (left <= 0)
            return false;
        e2e_sleep(interval_s < left ? interval_s : left);
    }
}

/* ---- subprocesses --------------------------------------------------------- */

typedef struct growbuf {
    char *p;
    size_t len, cap;
    bool oom;
} growbuf;

static void gb_add(growbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* A NUL-terminated copy of what was captured (empty string when nothing was). */
static char *gb_take(growbuf *b)
{
    if (b->oom || !b->p) {
        free(b->p);
        b->p = NULL;
        return strdup("");
    }
    char *p = b->p;
    b->p = NULL;
    return p;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void ignore_sigpipe_once(void)
{
    static atomic_bool done;
    if (!atomic_exchange(&done, true)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL); /* a child that exits early must not kill us */
    }
}

int e2e_run(e2e_proc *p, const char *input, double timeout_s, const char *const argv[])
{
    memset(p, 0, sizeof(*p));
    p->status = -1;
    ignore_sigpipe_once();
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    growbuf ob = {0}, eb = {0};
    if (timeout_s <= 0)
        timeout_s = DEFAULT_RUN_TIMEOUT_S;
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
        (input && pipe2(in, O_CLOEXEC) != 0)) {
        gb_add(&eb, "e2e_run: pipe failed\n", 21);
        goto done;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    if (input)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    sigset_t def, empty;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    int se = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    if (se != 0) {
        char msg[256];
        int n = snprintf(msg, sizeof(msg), "e2e_run: cannot start %s: %s\n", argv[0], strerror(se));
        gb_add(&eb, msg, n > 0 ? (size_t)n : 0);
        goto done;
    }

    size_t in_len = input ? strlen(input) : 0, in_off = 0;
    if (input && in_len == 0)
        close_fd(&in[1]);
    double deadline = e2e_now() + timeout_s;
    bool killed = false;
    while (out[0] >= 0 || err[0] >= 0) {
        struct pollfd fds[3];
        int nfds = 0, io = -1, oo = -1, eo = -1;
        if (in[1] >= 0) {
            io = nfds;
            fds[nfds++] = (struct pollfd){.fd = in[1], .events = POLLOUT};
        }
        if (out[0] >= 0) {
            oo = nfds;
            fds[nfds++] = (struct pollfd){.fd = out[0], .events = POLLIN};
        }
        if (err[0] >= 0) {
            eo = nfds;
            fds[nfds++] = (struct pollfd){.fd = err[0], .events = POLLIN};
        }
        double left = deadline - e2e_now();
        if (left <= 0) {
            kill(pid, SIGKILL); /* our own child, by pid */
            killed = true;
            break;
        }
        int pr = poll(fds, (nfds_t)nfds, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        if (io >= 0 && fds[io].revents) {
            ssize_t w =
                (fds[io].revents & POLLOUT) ? write(in[1], input + in_off, in_len - in_off) : -1;
            if (w > 0)
                in_off += (size_t)w;
            if (w < 0 && errno == EINTR)
                w = 0;
            if (w < 0 || in_off >= in_len)
                close_fd(&in[1]); /* done, or the child stopped reading */
        }
        char buf[8192];
        if (oo >= 0 && fds[oo].revents) {
            ssize_t r = read(out[0], buf, sizeof(buf));
            if (r > 0)
                gb_add(&ob, buf, (size_t)r);
            else if (r == 0 || errno != EINTR)
                close_fd(&out[0]);
        }
        if (eo >= 0 && fds[eo].revents) {
            ssize_t r = read(err[0], buf, sizeof(buf));
            if (r > 0)
                gb_add(&eb, buf, (size_t)r);
            else if (r == 0 || errno != EINTR)
                close_fd(&err[0]);
        }
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st))
        p->status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        p->status = 128 + WTERMSIG(st);
    if (killed) {
        char msg[128];
        int n =
            snprintf(msg, sizeof(msg), "\ne2e_run: %s killed after %.0f s\n", argv[0], timeout_s);
        gb_add(&eb, msg, n > 0 ? (size_t)n : 0);
    }
done:
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&out[1]);
    close_fd(&err[0]);
    close_fd(&err[1]);
    p->out = gb_take(&ob);
    p->err = gb_take(&eb);
    return p->status;
}

void e2e_proc_free(e2e_proc *p)
{
    if (!p)
        return;
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

static const char *kubectl_path(void)
{
    const char *k = getenv("KUBECTL");
    return (k && *k) ? k : "kubectl";
}

static int kubectl_v(e2e_proc *p, const char *input, va_list ap)
{
    const char *argv[MAX_KUBECTL_ARGS + 2];
    int n = 0;
    argv[n++] = kubectl_path();
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        if (n > MAX_KUBECTL_ARGS) {
            memset(p, 0, sizeof(*p));
            p->status = -1;
            p->out = strdup("");
            p->err = strdup("e2e_kubectl: too many arguments");
            return -1;
        }
        argv[n++] = a;
    }
    argv[n] = NULL;
    return e2e_run(p, input, 0, argv);
}

int e2e_kubectl(e2e_proc *p, const char *input, ...)
{
    va_list ap;
    va_start(ap, input);
    int rc = kubectl_v(p, input, ap);
    va_end(ap);
    return rc;
}

char *e2e_kubectl_ok(const char *input, ...)
{
    e2e_proc p;
    va_list ap;
    va_start(ap, input);
    int rc = kubectl_v(&p, input, ap);
    va_end(ap);
    cr_assert_eq(rc, 0, "kubectl exited %d: %s%s", rc, p.err ? p.err : "", p.out ? p.out : "");
    free(p.err);
    return p.out;
}

char *e2e_kube_local(const char *command)
{
    const char *dir = e2e_kube_dir();
    cr_assert_not_null(dir, "PROVISIO_KUBE_DIR must name the control-plane directory");
    char *script = NULL;
    cr_assert_geq(asprintf(&script, "%s/hack/kube-local", e2e_source_dir()), 0);
    const char *argv[] = {script, command, dir, NULL};
    e2e_proc p;
    int rc = e2e_run(&p, NULL, 300, argv);
    free(script);
    cr_assert_eq(rc, 0, "hack/kube-local %s exited %d: %s", command, rc, p.err);
    fprintf(stderr, "%s", p.err); /* its progress lines, for the test log */
    free(p.err);
    return p.out;
}

/* ---- clients -------------------------------------------------------------- */

kc_config *e2e_config_load(void)
{
    const char *kc = getenv("KUBECONFIG");
    cr_assert(kc && *kc, "KUBECONFIG must name the kube-local admin kubeconfig");
    kc_config_opts o = {.no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_load(&o, &cfg, &err);
    cr_assert_eq(rc, KC_OK, "loading %s: %s", kc, err.message ? err.message : "");
    kc_error_clear(&err);
    return cfg;
}

kc_client *e2e_client_new(kc_config *cfg)
{
    kc_client *c = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_client_new(cfg, NULL, &c, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message ? err.message : "");
    kc_error_clear(&err);
    return c;
}

static char *base64(const unsigned char *data, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

char *e2e_kubeconfig_for_token(kc_config *admin, const char *token, const char *ns)
{
    kc_tls tls;
    kc_config_tls(admin, &tls);
    cr_assert_gt(tls.ca.len, 0, "the admin kubeconfig names no CA");
    char *ca = base64(tls.ca.data, tls.ca.len);
    cr_assert_not_null(ca);
    char *server_name = NULL;
    if (tls.server_name && *tls.server_name)
        cr_assert_geq(asprintf(&server_name, "    tls-server-name: %s\n", tls.server_name), 0);
    char *namespace_ = NULL;
    if (ns && *ns)
        cr_assert_geq(asprintf(&namespace_, "    namespace: %s\n", ns), 0);
    char *yaml = NULL;
    int n = asprintf(&yaml,
                     "apiVersion: v1\n"
                     "kind: Config\n"
                     "clusters:\n"
                     "- name: e2e\n"
                     "  cluster:\n"
                     "    server: %s\n"
                     "    certificate-authority-data: %s\n"
                     "%s"
                     "users:\n"
                     "- name: e2e\n"
                     "  user:\n"
                     "    token: %s\n"
                     "contexts:\n"
                     "- name: e2e\n"
                     "  context:\n"
                     "    cluster: e2e\n"
                     "    user: e2e\n"
                     "%s"
                     "current-context: e2e\n",
                     kc_config_server(admin), ca, server_name ? server_name : "", token,
                     namespace_ ? namespace_ : "");
    free(ca);
    free(server_name);
    free(namespace_);
    cr_assert_geq(n, 0);
    return yaml;
}

/* ---- names and namespaces ------------------------------------------------- */

char *e2e_unique_name(const char *prefix)
{
    static atomic_uint counter;
    unsigned int n = atomic_fetch_add(&counter, 1);
    unsigned int r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (unsigned int)time(NULL) ^ (unsigned int)getpid();
    char *name = NULL;
    if (asprintf(&name, "%s-%ld-%u-%04x", prefix, (long)getpid(), n, r & 0xffff) < 0)
        return NULL;
    return name;
}

void e2e_setup(e2e_ctx *t, const char *prefix)
{
    memset(t, 0, sizeof(*t));
    cr_assert(strlen(prefix) <= 40, "namespace prefix \"%s\" too long", prefix);
    t->cfg = e2e_config_load();
    t->client = e2e_client_new(t->cfg);
    t->ns = e2e_unique_name(prefix);
    cr_assert_not_null(t->ns);
    free(e2e_kubectl_ok(NULL, "create", "namespace", t->ns, NULL));
    char *label = NULL;
    cr_assert_geq(asprintf(&label, "%s=%s", E2E_LABEL_KEY, t->ns), 0);
    free(e2e_kubectl_ok(NULL, "label", "namespace", t->ns, label, NULL));
    free(label);
}

void e2e_cleanup_cluster_scoped(e2e_ctx *t, const char *resource)
{
    for (int i = 0; i < t->ncluster_kinds; i++) {
        if (!strcmp(t->cluster_kinds[i], resource))
            return;
    }
    if (t->ncluster_kinds < E2E_MAX_CLUSTER_KINDS)
        t->cluster_kinds[t->ncluster_kinds++] = resource;
}

void e2e_teardown(e2e_ctx *t)
{
    if (!t)
        return;
    if (t->ns) {
        char *sel = NULL;
        if (asprintf(&sel, "%s=%s", E2E_LABEL_KEY, t->ns) >= 0) {
            for (int i = 0; i < t->ncluster_kinds; i++) {
                e2e_proc p;
                e2e_kubectl(&p, NULL, "delete", t->cluster_kinds[i], "-l", sel,
                            "--ignore-not-found", "--wait=false", NULL);
                e2e_proc_free(&p);
            }
            free(sel);
        }
        e2e_proc p;
        e2e_kubectl(&p, NULL, "delete", "namespace", t->ns, "--ignore-not-found", "--wait=false",
                    NULL);
        e2e_proc_free(&p);
    }
    kc_client_free(t->client);
    kc_config_free(t->cfg);
    free(t->ns);
    memset(t, 0, sizeof(*t));
}

/* ---- CRDs ----------------------------------------------------------------- */

void e2e_apply_crds(void)
{
    char *dir = NULL;
    cr_assert_geq(asprintf(&dir, "%s/crds", e2e_source_dir()), 0);
    free(e2e_kubectl_ok(NULL, "apply", "--server-side", "--force-conflicts", "-f", dir, NULL));
    free(e2e_kubectl_ok(NULL, "wait", "--for=condition=Established", "--timeout=60s", "-f", dir,
                        NULL));
    free(dir);
}

/* ---- RBAC and ServiceAccounts --------------------------------------------- */

typedef struct can_i_args {
    const char *user, *verb, *resource, *ns;
} can_i_args;

static bool can_i(void *arg)
{
    can_i_args *a = arg;
    e2e_proc p;
    int rc = e2e_kubectl(&p, NULL, "auth", "can-i", a->verb, a->resource, "-n", a->ns, "--as",
                         a->user, NULL);
    bool yes = rc == 0 && !strncmp(p.out, "yes", 3);
    e2e_proc_free(&p);
    return yes;
}

bool e2e_wait_can_i(const char *user, const char *verb, const char *resource, const char *ns,
                    double timeout_s)
{
    can_i_args a = {user, verb, resource, ns};
    return e2e_wait_until(timeout_s, 0.2, can_i, &a);
}

void e2e_sa_create(const char *ns, const char *name)
{
    free(e2e_kubectl_ok(NULL, "create", "serviceaccount", name, "-n", ns, NULL));
}

char *e2e_sa_token(const char *ns, const char *name)
{
    char *tok = e2e_kubectl_ok(NULL, "create", "token", name, "-n", ns, "--duration=1h", NULL);
    size_t n = strlen(tok);
    while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
        tok[--n] = '\0';
    cr_assert_gt(n, 0, "kubectl create token %s printed nothing", name);
    return tok;
}

char *e2e_sa_user(const char *ns, const char *name)
{
    char *u = NULL;
    if (asprintf(&u, "system:serviceaccount:%s:%s", ns, name) < 0)
        return NULL;
    return u;
}

/* ---- JSON ----------------------------------------------------------------- */

json_object *e2e_json(const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    enum json_tokener_error je = json_tokener_success;
    json_object *o = json_tokener_parse_verbose(text, &je);
    cr_assert_not_null(o, "bad JSON in a test (%s): %s", json_tokener_error_desc(je), text);
    free(text);
    return o;
}

json_object *e2e_get(json_object *o, const char *path)
{
    const char *p = path;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char *key = strndup(p, n);
        json_object *v = NULL;
        if (key && json_object_is_type(o, json_type_array) && n > 0 &&
            strspn(key, "0123456789") == n) {
            size_t idx = strtoul(key, NULL, 10);
            v = idx < json_object_array_length(o) ? json_object_array_get_idx(o, idx) : NULL;
        } else if (!key || !json_object_is_type(o, json_type_object) ||
                   !json_object_object_get_ex(o, key, &v)) {
            v = NULL;
        }
        free(key);
        o = v;
        p += n;
        if (*p == '.')
            p++;
    }
    return o;
}

const char *e2e_str(json_object *o, const char *path)
{
    json_object *v = e2e_get(o, path);
    return (v && json_object_is_type(v, json_type_string)) ? json_object_get_string(v) : NULL;
}

unsigned long long e2e_rv(json_object *o)
{
    const char *s = e2e_str(o, "metadata.resourceVersion");
    if (!s || !*s)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    return (errno || !end || *end) ? 0 : v;
}
