/*
 * kc_config_kubeconfig - parsing and merging kubeconfig files into a
 * kc_config (part of kc_config; see kc_config.c for the object, loading
 * entry points and credential cache, kc_config_exec.c for exec plugins).
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
 */
#include "kc_config_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "kc_yaml.h"
#include "pv_json.h"

void kc_config_sources_free(sources *ss)
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
int kc_config_sources_add(sources *ss, const char *text, size_t len, char *name, char *dir,
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
int kc_config_sources_add_file(sources *ss, const char *path, bool *missing, kc_error *err)
{
    *missing = false;
    unsigned char *buf;
    size_t len;
    int e = kc_config_read_file(path, CONFIG_FILE_MAX, &buf, &len);
    if (e == ENOENT) {
        *missing = true;
        return KC_OK;
    }
    if (e == ENOMEM)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory reading kubeconfig %s", path);
    if (e)
        return kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: %s", path, kc_config_errno_text(e));
    /* The file may hold client keys and tokens. */
    int rc = kc_config_sources_add(ss, (const char *)buf, len, strdup(path),
                                   kc_config_abs_dir_of(path), err);
    kc_config_wipe_free(buf, len);
    return rc;
}

static char *sources_names(const sources *ss)
{
    const char **names = calloc(ss->n ? ss->n : 1, sizeof(*names));
    if (!names)
        return NULL;
    for (size_t i = 0; i < ss->n; i++)
        names[i] = ss->v[i].name;
    char *s = kc_config_join_names(names, ss->n);
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

int kc_config_dup_str(const char *s, char **out, kc_error *err)
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
        rc = kc_config_b64_decode(data, strlen(data), out, outlen);
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
    char *path = kc_config_path_join(w->src->dir, file);
    if (!path)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    int e = kc_config_read_file(path, CONFIG_FILE_MAX, out, outlen);
    if (e == ENOMEM)
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory reading %s", path);
    else if (e)
        rc = kc_error_set(err, KC_ERR_CONFIG, "kubeconfig %s: %s \"%s\": %s %s: %s", w->src->name,
                          w->what, w->name, key_file, path, kc_config_errno_text(e));
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
    if (tsn && *tsn && (rc = kc_config_dup_str(tsn, &cfg->tls_server_name, err)))
        return rc;
    if (proxy && *proxy && (rc = kc_config_dup_str(proxy, &cfg->proxy_url, err)))
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
    ex->command =
        strchr(command, '/') ? kc_config_path_join(w->src->dir, command) : strdup(command);
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
        char *path = kc_config_path_join(w->src->dir, tokenfile);
        if (!path)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        rc = kc_config_token_file_new(path, "tokenFile", &cfg->tokenfile, err);
        free(path);
        if (rc == KC_ERR_CONFIG && err) {
            char *prefix = NULL;
            if (asprintf(&prefix, "kubeconfig %s: user \"%s\": ", w->src->name, w->name) >= 0)
                kc_config_prefix_message(err, prefix);
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

int kc_config_build_from_sources(const sources *ss, const char *context, kc_config **out,
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

    kc_config *cfg = kc_config_new();
    if (!cfg)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    where clw = {clsrc, "cluster", cluster_name};
    rc = parse_cluster(cfg, &clw, clbody, err);
    if (!rc && usrc) {
        where uw = {usrc, "user", user_name};
        rc = parse_user(cfg, &uw, ubody, &clw, clbody, err);
    }
    if (!rc)
        rc = kc_config_dup_str(ctx_name, &cfg->context, err);
    if (!rc)
        rc = kc_config_dup_str(ns && *ns ? ns : "default", &cfg->namespace_, err);
    if (rc) {
        kc_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return KC_OK;
}
