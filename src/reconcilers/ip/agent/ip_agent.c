/*
 * ip_agent - the "cni-kubeconfig" controller of the node agent (ip_agent.h).
 *
 * One key, one worker at a time (the work queue never hands a key to two
 * workers), so the controller's state needs no lock. Each reconcile either
 * finds the file it wrote still in place with its token not yet due
 * (requeue at the next check) or fetches a new token and writes the file.
 * Errors (RBAC, the API server away, a read-only directory) are logged and
 * retried with the controller's rate limiter, as controller-runtime does;
 * a file written before stays until its token expires, so a short outage of
 * the API server does not take the plugin's credentials away.
 */
#include "ip_agent.h"

#include "kc_error.h"
#include "pv_json.h"
#include "rec_util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CNI_CONTROLLER "cni-kubeconfig"
#define CNI_KEY "kubeconfig"
#define CNI_MIN_REFRESH_S 30 /* never ask for tokens more often than this */

typedef struct cni_kc {
    rec_env env; /* a copy: env->log from the worker */
    kc_client *client;
    char *path;    /* <host-root><--cni-kubeconfig> */
    char *sa_ns;   /* the ServiceAccount whose token is written */
    char *sa_name; /* ... */
    char *server;  /* --cni-server, else the agent's own */
    kc_tls tls;    /* borrowed from env->config */
    /* The worker's alone (one key): */
    time_t refresh_at;   /* 0 until a file was written */
    struct stat written; /* the file as written */
} cni_kc;

static void cni_kc_free(void *arg)
{
    cni_kc *k = arg;
    if (k == NULL)
        return;
    free(k->path);
    free(k->sa_ns);
    free(k->sa_name);
    free(k->server);
    free(k);
}

/* ---- the document ------------------------------------------------------------ */

/* Standard base64 of len bytes, NUL-terminated; NULL when out of memory. */
static char *b64(const unsigned char *data, size_t len)
{
    if (len > (size_t)0x3fffffff)
        return NULL;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* {"name": name, key: <value>} appended to the array arr; value is consumed. */
static bool named_entry(json_object *arr, const char *name, const char *key, json_object *value)
{
    json_object *e = json_object_new_object();
    if (e == NULL) {
        json_object_put(value);
        return false;
    }
    if (!pv_json_add_str(e, "name", name) || !pv_json_add(e, key, value) ||
        json_object_array_add(arr, e) != 0) {
        json_object_put(e);
        return false;
    }
    return true;
}

char *ip_cni_kubeconfig_doc(const char *server, const kc_tls *tls, const char *token)
{
    if (server == NULL || tls == NULL || token == NULL)
        return NULL;
    json_object *doc = json_object_new_object();
    json_object *clusters = json_object_new_array();
    json_object *users = json_object_new_array();
    json_object *contexts = json_object_new_array();
    json_object *cluster = json_object_new_object();
    json_object *user = json_object_new_object();
    json_object *context = json_object_new_object();
    char *ca = tls->ca.len > 0 ? b64(tls->ca.data, tls->ca.len) : NULL;
    bool ok = doc != NULL && clusters != NULL && users != NULL && contexts != NULL &&
              cluster != NULL && user != NULL && context != NULL &&
              (tls->ca.len == 0 || ca != NULL);
    ok = ok && pv_json_add_str(cluster, "server", server);
    if (ok && ca != NULL)
        ok = pv_json_add_str(cluster, "certificate-authority-data", ca);
    if (ok && tls->insecure)
        ok = pv_json_add(cluster, "insecure-skip-tls-verify", json_object_new_boolean(1));
    if (ok && tls->server_name != NULL)
        ok = pv_json_add_str(cluster, "tls-server-name", tls->server_name);
    ok = ok && pv_json_add_str(user, "token", token);
    ok = ok && pv_json_add_str(context, "cluster", "provisio") &&
         pv_json_add_str(context, "user", "provisio-cni");
    free(ca);
    /* From here each object is consumed by what it is added to, even on failure. */
    if (!ok) {
        json_object_put(cluster);
        json_object_put(user);
        json_object_put(context);
    } else {
        ok = named_entry(clusters, "provisio", "cluster", cluster);
        ok = named_entry(users, "provisio-cni", "user", user) && ok;
        ok = named_entry(contexts, "provisio-cni", "context", context) && ok;
    }
    ok = ok && pv_json_add_str(doc, "apiVersion", "v1") && pv_json_add_str(doc, "kind", "Config");
    if (ok) {
        ok = pv_json_add(doc, "clusters", clusters);
        ok = pv_json_add(doc, "users", users) && ok;
        ok = pv_json_add(doc, "contexts", contexts) && ok;
        clusters = users = contexts = NULL;
    }
    ok = ok && pv_json_add_str(doc, "current-context", "provisio-cni");
    char *text = NULL;
    if (ok) {
        char *s = (char *)json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
                                                                  JSON_C_TO_STRING_SPACED |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        if (s != NULL) {
            size_t n = strlen(s);
            if ((text = malloc(n + 2)) != NULL)
                snprintf(text, n + 2, "%s\n", s);
            explicit_bzero(s, n); /* doc's own copy of the text holds the token too */
        }
    }
    json_object_put(clusters);
    json_object_put(users);
    json_object_put(contexts);
    json_object_put(doc);
    return text;
}

/* ---- the file ------------------------------------------------------------------ */

/* mkdir -p of path's directory (0755). 0 or an errno value. */
static int make_parent_dirs(const char *path)
{
    char *p = strdup(path);
    if (p == NULL)
        return ENOMEM;
    char *slash = strrchr(p, '/');
    int rc = 0;
    if (slash != NULL && slash != p) {
        *slash = '\0';
        for (char *s = p + 1; rc == 0; s++) {
            if (*s != '/' && *s != '\0')
                continue;
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                rc = errno;
            *s = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    return rc;
}

int ip_cni_write_file(const char *path, const char *text)
{
    if (path == NULL || text == NULL || path[0] != '/')
        return EINVAL;
    int rc = make_parent_dirs(path);
    if (rc != 0)
        return rc;
    const char *base = strrchr(path, '/') + 1;
    size_t dirlen = (size_t)(base - path);
    size_t tlen = dirlen + strlen(base) + sizeof(".XXXXXX") + 1;
    char *tmp = malloc(tlen);
    if (tmp == NULL)
        return ENOMEM;
    snprintf(tmp, tlen, "%.*s.%s.XXXXXX", (int)dirlen, path, base);
    int fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 */
    if (fd < 0) {
        rc = errno;
        free(tmp);
        return rc;
    }
    size_t len = strlen(text), off = 0;
    while (rc == 0 && off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno != EINTR)
            rc = errno;
        else if (n > 0)
            off += (size_t)n;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = errno;
    if (close(fd) != 0 && rc == 0)
        rc = errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = errno;
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* ---- the controller ---------------------------------------------------------- */

/* The file at k->path is the one this controller wrote last. */
static bool still_written(const cni_kc *k)
{
    struct stat st;
    if (stat(k->path, &st) != 0)
        return false;
    return st.st_dev == k->written.st_dev && st.st_ino == k->written.st_ino &&
           st.st_size == k->written.st_size && st.st_mtim.tv_sec == k->written.st_mtim.tv_sec &&
           st.st_mtim.tv_nsec == k->written.st_mtim.tv_nsec;
}

/* A new token of the ServiceAccount (TokenRequest): *token (malloc'd), *expires. */
static int request_token(cni_kc *k, char **token, time_t *expires, kc_error *err)
{
    json_object *body = json_object_new_object();
    json_object *spec = body != NULL ? pv_json_add_child(body, "spec") : NULL;
    if (spec == NULL || !pv_json_add_str(body, "apiVersion", "authentication.k8s.io/v1") ||
        !pv_json_add_str(body, "kind", "TokenRequest") ||
        !pv_json_add_i64(spec, "expirationSeconds", IP_CNI_TOKEN_SECONDS)) {
        json_object_put(body);
        return KC_ERR_NOMEM;
    }
    kc_ref ref = {.version = "v1",
                  .resource = "serviceaccounts",
                  .namespace_ = k->sa_ns,
                  .name = k->sa_name,
                  .subresource = "token"};
    json_object *out = NULL;
    int rc = kc_create(k->client, &ref, body, NULL, &out, err);
    json_object_put(body);
    if (rc != KC_OK)
        return rc;
    const char *t = rec_obj_str(out, "status.token");
    const char *exp = rec_obj_str(out, "status.expirationTimestamp");
    if (t == NULL || t[0] == '\0') {
        json_object_put(out);
        return KC_ERR_DECODE;
    }
    if (exp == NULL || !rec_parse_time(exp, expires))
        *expires = time(NULL) + 600; /* unknown lifetime: the API server's minimum */
    *token = strdup(t);
    explicit_bzero((char *)t, strlen(t));
    json_object_put(out);
    return *token != NULL ? KC_OK : KC_ERR_NOMEM;
}

/* Look again at the next check, or when the token is due if that is sooner. */
static ctl_result next_look(const cni_kc *k, time_t now)
{
    double left = (double)(k->refresh_at - now);
    return ctl_requeue_after(left < IP_CNI_CHECK_S ? left : IP_CNI_CHECK_S);
}

static ctl_result cni_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                void *user)
{
    (void)ctx;
    (void)namespace_;
    (void)name;
    cni_kc *k = user;
    time_t now = time(NULL);
    if (k->refresh_at != 0 && now < k->refresh_at && still_written(k))
        return next_look(k, now);
    bool rewrite = k->refresh_at != 0 && now < k->refresh_at;

    char *token = NULL;
    time_t expires = 0;
    kc_error err = KC_ERROR_INIT;
    int rc = request_token(k, &token, &expires, &err);
    if (rc != KC_OK) {
        ctl_result r = ctl_error(rc, "token of ServiceAccount %s/%s: %s", k->sa_ns, k->sa_name,
                                 err.message != NULL ? err.message : kc_strerror(rc));
        kc_error_clear(&err);
        return r;
    }
    char *doc = ip_cni_kubeconfig_doc(k->server, &k->tls, token);
    explicit_bzero(token, strlen(token));
    free(token);
    if (doc == NULL)
        return ctl_error(KC_ERR_NOMEM, "out of memory building %s", k->path);
    int e = ip_cni_write_file(k->path, doc);
    explicit_bzero(doc, strlen(doc));
    free(doc);
    if (e == 0 && stat(k->path, &k->written) != 0)
        e = errno;
    if (e != 0) {
        k->refresh_at = 0;
        return ctl_error(KC_ERR_IO, "writing %s: %s", k->path, strerror(e));
    }

    now = time(NULL);
    time_t life = expires > now ? expires - now : 0;
    time_t next = life * 4 / 5;
    k->refresh_at = now + (next > CNI_MIN_REFRESH_S ? next : CNI_MIN_REFRESH_S);
    char exp_s[REC_TIME_STRLEN];
    const char *exp_txt = rec_format_time(expires, exp_s);
    k->env.log(&k->env, REC_LOG_INFO, CNI_CONTROLLER,
               rewrite ? "CNI kubeconfig written again (the file was removed or changed)"
                       : "CNI kubeconfig written",
               REC_KV("path", k->path, "serviceAccount", k->sa_name, "namespace", k->sa_ns,
                      "server", k->server, "tokenExpires", exp_txt != NULL ? exp_txt : "?"));
    return next_look(k, now);
}

/* [NAMESPACE/]NAME into sa_ns/sa_name (NAMESPACE defaults to own_ns). */
static int split_service_account(const char *flag, const char *own_ns, cni_kc *k)
{
    const char *slash = strchr(flag, '/');
    if (slash == NULL) {
        k->sa_ns = strdup(own_ns);
        k->sa_name = strdup(flag);
    } else {
        if (slash == flag || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
            return KC_ERR_INVALID_ARG;
        k->sa_ns = strndup(flag, (size_t)(slash - flag));
        k->sa_name = strdup(slash + 1);
    }
    if (k->sa_ns == NULL || k->sa_name == NULL)
        return KC_ERR_NOMEM;
    return k->sa_name[0] != '\0' ? KC_OK : KC_ERR_INVALID_ARG;
}

int ip_agent_setup(const rec_env *env)
{
    if (env->cni_kubeconfig == NULL || env->cni_kubeconfig[0] == '\0')
        return KC_OK;
    if (env->cni_kubeconfig[0] != '/' || env->config == NULL || env->host_root == NULL)
        return KC_ERR_INVALID_ARG;
    cni_kc *k = calloc(1, sizeof *k);
    if (k == NULL)
        return KC_ERR_NOMEM;
    k->env = *env;
    k->client = env->client;
    kc_config_tls(env->config, &k->tls);
    const char *root = env->host_root;
    size_t rlen = strlen(root);
    while (rlen > 0 && root[rlen - 1] == '/')
        rlen--;
    size_t plen = rlen + strlen(env->cni_kubeconfig) + 1;
    const char *server = env->cni_server != NULL && env->cni_server[0] != '\0'
                             ? env->cni_server
                             : kc_config_server(env->config);
    int rc = KC_OK;
    if ((k->path = malloc(plen)) == NULL || (k->server = strdup(server)) == NULL)
        rc = KC_ERR_NOMEM;
    else
        snprintf(k->path, plen, "%.*s%s", (int)rlen, root, env->cni_kubeconfig);
    if (rc == KC_OK)
        rc = split_service_account(
            env->cni_account != NULL ? env->cni_account : "provisio-cni",
            env->operator_namespace != NULL ? env->operator_namespace : "default", k);
    if (rc != KC_OK) {
        cni_kc_free(k);
        return rc;
    }
    if ((rc = env->add_cleanup(env, cni_kc_free, k)) != KC_OK) {
        cni_kc_free(k);
        return rc;
    }
    ctl *c = NULL;
    if ((rc = rec_env_new_controller(env, CNI_CONTROLLER, cni_reconcile, k, &c)) != KC_OK)
        return rc;
    return ctl_enqueue_on_start(c, "", CNI_KEY);
}
