/*
 * cni_config - see cni_config.h. Everything here is pure: no I/O, no
 * globals but constant tables, so unit tests and the fuzz harness drive it
 * with byte strings.
 */
#include "cni_config.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const cni_supported_versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
const size_t cni_supported_versions_n =
    sizeof(cni_supported_versions) / sizeof(cni_supported_versions[0]);

/* Indexes in cni_supported_versions of the first version with a command. */
#define V_0_4_0 2
#define V_1_1_0 4

/* The timeouts accepted, in seconds: a kubelet gives a CNI call minutes. */
#define MAX_TIMEOUT_S 600.0

static const char *const command_names[] = {"ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"};

const char *cni_command_name(cni_command c)
{
    return (unsigned)c < sizeof(command_names) / sizeof(command_names[0]) ? command_names[c] : "?";
}

int cni_version_index(const char *version)
{
    for (size_t i = 0; version && i < cni_supported_versions_n; i++)
        if (strcmp(version, cni_supported_versions[i]) == 0)
            return (int)i;
    return -1;
}

bool cni_is_dns_label(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
            return false;
    }
    return true;
}

/* A DNS subdomain (pod names): DNS labels joined by '.', <= 253. */
static bool is_dns_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (alnum)
            continue;
        if ((c != '-' && c != '.') || i == 0 || i + 1 == n)
            return false;
        if (c == '.' && (s[i - 1] == '.' || s[i - 1] == '-' || s[i + 1] == '-'))
            return false;
    }
    return true;
}

/* CNI_CONTAINERID, as libcni checks it: [a-zA-Z0-9][a-zA-Z0-9_.-]*. */
static bool is_container_id(const char *s)
{
    if (!isalnum((unsigned char)s[0]))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
            return false;
    return strlen(s) <= 1024;
}

/* CNI_IFNAME, as the kernel and libcni take it: 1..15 bytes, no '/', ':' or space. */
static bool is_ifname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 15 || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (const char *p = s; *p; p++)
        if (*p == '/' || *p == ':' || isspace((unsigned char)*p) || !isprint((unsigned char)*p))
            return false;
    return true;
}

static bool is_uid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (const char *p = s; *p; p++)
        if (!isxdigit((unsigned char)*p) && *p != '-')
            return false;
    return true;
}

/* The value of NAME in envp (first match), borrowed, or NULL. */
static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

static int nomem(cni_error *err)
{
    return cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: out of memory");
}

/* *dst = copy of the n bytes at s; false when memory runs out. */
static bool dup_n(char **dst, const char *s, size_t n)
{
    free(*dst);
    *dst = strndup(s, n);
    return *dst != NULL;
}

/* CNI_ARGS: "K=V;K=V". Only the Kubernetes keys are kept; each checked. */
static int parse_cni_args(const char *args, cni_env *out, cni_error *err)
{
    const char *p = args;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (n == 0) {
            /* An empty pair ("a=b;;c=d", a trailing ';') is harmless. */
        } else if (!eq || eq == p) {
            return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                                 "CNI_ARGS is not a list of KEY=VALUE pairs separated by ';': "
                                 "\"%.*s\" has no key or no '='",
                                 (int)(n > 64 ? 64 : n), p);
        } else {
            size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
            char **dst = NULL;
            if (klen == 17 && !strncmp(p, "K8S_POD_NAMESPACE", klen))
                dst = &out->pod_namespace;
            else if (klen == 12 && !strncmp(p, "K8S_POD_NAME", klen))
                dst = &out->pod_name;
            else if (klen == 11 && !strncmp(p, "K8S_POD_UID", klen))
                dst = &out->pod_uid;
            if (dst && !dup_n(dst, eq + 1, vlen))
                return nomem(err);
        }
        p += n;
        if (*p == ';')
            p++;
    }
    if (out->pod_namespace && !cni_is_dns_label(out->pod_namespace))
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                             "CNI_ARGS K8S_POD_NAMESPACE \"%.80s\" is not a namespace name "
                             "(a DNS label)",
                             out->pod_namespace);
    if (out->pod_name && !is_dns_subdomain(out->pod_name))
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                             "CNI_ARGS K8S_POD_NAME \"%.80s\" is not a pod name (a DNS subdomain)",
                             out->pod_name);
    if (out->pod_uid && !is_uid(out->pod_uid))
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                             "CNI_ARGS K8S_POD_UID \"%.80s\" is not a uid (hex digits and '-')",
                             out->pod_uid);
    return 0;
}

static int parse_command(const char *s, cni_command *out, cni_error *err)
{
    if (!s || !*s)
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                             "CNI_COMMAND is not set: provisio-cni is a CNI IPAM plugin, run "
                             "by a container runtime or cnitool with CNI_COMMAND=ADD, DEL, "
                             "CHECK, STATUS, GC or VERSION");
    for (size_t i = 0; i < sizeof(command_names) / sizeof(command_names[0]); i++) {
        if (strcmp(s, command_names[i]) == 0) {
            *out = (cni_command)i;
            return 0;
        }
    }
    return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                         "CNI_COMMAND \"%.40s\" is not one of ADD, DEL, CHECK, STATUS, GC, "
                         "VERSION",
                         s);
}

static int env_parse(char *const *envp, cni_env *out, cni_error *err)
{
    int rc = parse_command(env_get(envp, "CNI_COMMAND"), &out->command, err);
    if (rc)
        return rc;
    const char *netns = env_get(envp, "CNI_NETNS");
    if (netns && *netns && !(out->netns = strdup(netns)))
        return nomem(err);
    const char *args = env_get(envp, "CNI_ARGS");
    if (args && (rc = parse_cni_args(args, out, err)))
        return rc;
    if (out->command != CNI_CMD_ADD && out->command != CNI_CMD_DEL && out->command != CNI_CMD_CHECK)
        return 0;
    const char *cid = env_get(envp, "CNI_CONTAINERID");
    const char *ifname = env_get(envp, "CNI_IFNAME");
    if (!cid || !*cid)
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL, "CNI_CONTAINERID is not set (%s)",
                             cni_command_name(out->command));
    if (!is_container_id(cid))
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                             "CNI_CONTAINERID \"%.80s\" has characters other than letters, "
                             "digits, '_', '.' and '-' (or does not start with a letter or "
                             "digit)",
                             cid);
    if (!ifname || !*ifname)
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL, "CNI_IFNAME is not set (%s)",
                             cni_command_name(out->command));
    if (!is_ifname(ifname))
        return cni_error_set(err, CNI_ERR_INVALID_ENV, NULL,
                             "CNI_IFNAME \"%.40s\" is not an interface name (1-15 characters, "
                             "no '/', ':' or space)",
                             ifname);
    if (!(out->container_id = strdup(cid)) || !(out->ifname = strdup(ifname)))
        return nomem(err);
    return 0;
}

int cni_env_parse(char *const *envp, cni_env *out, cni_error *err)
{
    memset(out, 0, sizeof(*out));
    int rc = env_parse(envp, out, err);
    if (rc)
        cni_env_free(out);
    return rc;
}

void cni_env_free(cni_env *e)
{
    if (!e)
        return;
    free(e->container_id);
    free(e->ifname);
    free(e->netns);
    free(e->pod_namespace);
    free(e->pod_name);
    free(e->pod_uid);
    memset(e, 0, sizeof(*e));
}

/* ---- the configuration -------------------------------------------------- */

static int parse_json(const char *data, size_t len, json_object **out, cni_error *err)
{
    *out = NULL;
    if (len > CNI_MAX_CONFIG_BYTES)
        return cni_error_set(err, CNI_ERR_DECODE, NULL,
                             "the network configuration on stdin is %zu bytes, more than the "
                             "%d this plugin reads",
                             len, CNI_MAX_CONFIG_BYTES);
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        return nomem(err);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!o || je != json_tokener_success) {
        json_object_put(o);
        if (je == json_tokener_success)
            je = json_tokener_continue; /* a cut text: json-c waits for more */
        return cni_error_set(err, CNI_ERR_DECODE, json_tokener_error_desc(je),
                             "the network configuration on stdin is not JSON (at byte %zu)", end);
    }
    for (size_t i = end; i < len; i++) {
        if (!isspace((unsigned char)data[i])) {
            json_object_put(o);
            return cni_error_set(err, CNI_ERR_DECODE, NULL,
                                 "the network configuration on stdin has data after its "
                                 "JSON object (at byte %zu)",
                                 i);
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return cni_error_set(err, CNI_ERR_DECODE, NULL,
                             "the network configuration on stdin is JSON but not an object");
    }
    *out = o;
    return 0;
}

/*
 * An optional string member: *out = copy (or stays NULL when absent).
 * where names the field for messages ("ipam.kubeconfig").
 */
static int opt_string(json_object *o, const char *key, const char *where, char **out,
                      cni_error *err)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL, "%s must be a string", where);
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n == 0 || strlen(s) != n)
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "%s must be a non-empty string without NUL characters", where);
    return dup_n(out, s, n) ? 0 : nomem(err);
}

/* An optional number of seconds in (0, MAX_TIMEOUT_S]. */
static int opt_seconds(json_object *o, const char *key, const char *where, double *out,
                       cni_error *err)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "%s must be a number of seconds (e.g. 10 or 2.5)", where);
    double d = json_object_get_double(v);
    if (!isfinite(d) || d <= 0 || d > MAX_TIMEOUT_S)
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "%s must be more than 0 and at most %.0f seconds", where,
                             MAX_TIMEOUT_S);
    *out = d;
    return 0;
}

/* The CNI specification's rule for network names. */
static bool is_network_name(const char *s)
{
    if (!isalnum((unsigned char)s[0]))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
            return false;
    return true;
}

static int add_pool(cni_conf *c, json_object *v, const char *where, cni_error *err)
{
    if (!json_object_is_type(v, json_type_string))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "%s must be the name of an IPPool (a string)", where);
    const char *s = json_object_get_string(v);
    if (!cni_is_dns_label(s) || strlen(s) != (size_t)json_object_get_string_len(v))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "%s \"%.80s\" is not an IPPool name (a DNS label: lower-case "
                             "letters, digits and '-', at most 63)",
                             where, s);
    for (size_t i = 0; i < c->n_pools; i++)
        if (strcmp(c->pools[i], s) == 0)
            return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                                 "ipam.pools names IPPool %s twice", s);
    if (c->n_pools == CNI_MAX_POOLS)
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "ipam.pools has more than %d pools (one per address family)",
                             CNI_MAX_POOLS);
    if (!(c->pools[c->n_pools] = strdup(s)))
        return nomem(err);
    c->n_pools++;
    return 0;
}

static int parse_pools(json_object *ipam, cni_conf *c, cni_error *err)
{
    json_object *pool = NULL, *pools = NULL;
    json_object_object_get_ex(ipam, "pool", &pool);
    json_object_object_get_ex(ipam, "pools", &pools);
    if (pool && pools)
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "ipam has both pool and pools: give one IPPool as pool, or one "
                             "per address family as pools");
    if (pool)
        return add_pool(c, pool, "ipam.pool", err);
    if (!pools)
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "ipam.pool is missing: name the IPPool to take addresses from "
                             "(\"pool\": \"demo-v4\", or \"pools\": [\"demo-v4\", \"demo-v6\"])");
    if (!json_object_is_type(pools, json_type_array) || json_object_array_length(pools) == 0)
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "ipam.pools must be a non-empty array of IPPool names");
    for (size_t i = 0; i < json_object_array_length(pools); i++) {
        int rc = add_pool(c, json_object_array_get_idx(pools, i), "ipam.pools[]", err);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_valid_attachments(json_object *root, cni_conf *c, cni_error *err)
{
    json_object *arr;
    if (!json_object_object_get_ex(root, "cni.dev/valid-attachments", &arr))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "GC needs cni.dev/valid-attachments in the configuration (the "
                             "runtime adds it): without it every attachment would look stale");
    if (!json_object_is_type(arr, json_type_array))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "cni.dev/valid-attachments must be an array of "
                             "{\"containerID\", \"ifname\"}");
    size_t n = json_object_array_length(arr);
    c->valid = calloc(n ? n : 1, sizeof(*c->valid));
    if (!c->valid)
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        json_object *a = json_object_array_get_idx(arr, i), *cid = NULL, *ifn = NULL;
        if (!json_object_is_type(a, json_type_object) ||
            !json_object_object_get_ex(a, "containerID", &cid) ||
            !json_object_object_get_ex(a, "ifname", &ifn) ||
            !json_object_is_type(cid, json_type_string) ||
            !json_object_is_type(ifn, json_type_string))
            return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                                 "cni.dev/valid-attachments[%zu] must be an object with string "
                                 "members containerID and ifname",
                                 i);
        cni_attachment *at = &c->valid[c->n_valid];
        if (!(at->container_id = strdup(json_object_get_string(cid))) ||
            !(at->ifname = strdup(json_object_get_string(ifn))))
            return nomem(err);
        c->n_valid++;
    }
    return 0;
}

static int parse_version(json_object *root, cni_conf *c, cni_error *err)
{
    json_object *v;
    if (!json_object_object_get_ex(root, "cniVersion", &v) ||
        !json_object_is_type(v, json_type_string))
        return cni_error_set(err, CNI_ERR_INCOMPATIBLE_VERSION, NULL,
                             "the network configuration has no cniVersion string: "
                             "provisio-cni speaks CNI 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0");
    const char *s = json_object_get_string(v);
    c->version = cni_version_index(s);
    if (c->version < 0)
        return cni_error_set(err, CNI_ERR_INCOMPATIBLE_VERSION, NULL,
                             "cniVersion \"%.20s\" is not supported: provisio-cni speaks CNI "
                             "0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0",
                             s);
    return (c->cni_version = strdup(s)) ? 0 : nomem(err);
}

static int need_version(const cni_conf *c, cni_command cmd, int min, cni_error *err)
{
    if (c->version >= min)
        return 0;
    return cni_error_set(err, CNI_ERR_INCOMPATIBLE_VERSION, NULL,
                         "%s needs cniVersion %s or later; the configuration says %s",
                         cni_command_name(cmd), cni_supported_versions[min], c->cni_version);
}

static int parse_ipam(json_object *ipam, cni_conf *c, cni_error *err)
{
    int rc = parse_pools(ipam, c, err);
    if (!rc)
        rc = opt_string(ipam, "kubeconfig", "ipam.kubeconfig", &c->kubeconfig, err);
    if (!rc)
        rc = opt_string(ipam, "network", "ipam.network", &c->network, err);
    if (!rc && c->network && !cni_is_dns_label(c->network))
        rc =
            cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                          "ipam.network \"%.80s\" is not a network name (a DNS label)", c->network);
    if (!rc)
        rc = opt_string(ipam, "namespace", "ipam.namespace", &c->namespace_, err);
    if (!rc && c->namespace_ && !cni_is_dns_label(c->namespace_))
        rc = cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                           "ipam.namespace \"%.80s\" is not a namespace name (a DNS label)",
                           c->namespace_);
    if (!rc)
        rc = opt_string(ipam, "nodeName", "ipam.nodeName", &c->node_name, err);
    if (!rc && c->node_name && !is_dns_subdomain(c->node_name))
        rc = cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                           "ipam.nodeName \"%.80s\" is not a node name (a DNS subdomain)",
                           c->node_name);
    if (!rc)
        rc = opt_seconds(ipam, "timeout", "ipam.timeout", &c->timeout_s, err);
    if (!rc)
        rc = opt_seconds(ipam, "requestTimeout", "ipam.requestTimeout", &c->request_timeout_s, err);
    return rc;
}

static int conf_parse(json_object *root, cni_command cmd, cni_conf *c, cni_error *err)
{
    if (cmd == CNI_CMD_VERSION) {
        /* The runtime's cniVersion does not matter: the answer lists ours. */
        c->version = (int)cni_supported_versions_n - 1;
        return (c->cni_version = strdup(CNI_VERSION_LATEST)) ? 0 : nomem(err);
    }
    int rc = parse_version(root, c, err);
    if (rc)
        return rc;
    if (cmd == CNI_CMD_CHECK && (rc = need_version(c, cmd, V_0_4_0, err)))
        return rc;
    if ((cmd == CNI_CMD_STATUS || cmd == CNI_CMD_GC) && (rc = need_version(c, cmd, V_1_1_0, err)))
        return rc;
    if ((rc = opt_string(root, "name", "name", &c->name, err)))
        return rc;
    if (!c->name)
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "the network configuration has no name: provisio-cni names "
                             "claims after it");
    if (!is_network_name(c->name))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "network name \"%.80s\" has characters other than letters, digits, "
                             "'_', '.' and '-' (or does not start with a letter or digit)",
                             c->name);
    json_object *ipam;
    if (!json_object_object_get_ex(root, "ipam", &ipam) ||
        !json_object_is_type(ipam, json_type_object))
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                             "the network configuration has no ipam object: provisio-cni is an "
                             "IPAM plugin (\"ipam\": {\"type\": \"provisio-cni\", \"pool\": "
                             "\"...\"})");
    if ((rc = parse_ipam(ipam, c, err)))
        return rc;
    if (cmd == CNI_CMD_CHECK) {
        json_object *prev;
        if (!json_object_object_get_ex(root, "prevResult", &prev) ||
            !json_object_is_type(prev, json_type_object))
            return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                                 "CHECK needs prevResult in the configuration (the result of "
                                 "the ADD)");
        c->prev_result = json_object_get(prev);
    }
    if (cmd == CNI_CMD_GC)
        return parse_valid_attachments(root, c, err);
    return 0;
}

int cni_conf_parse(const char *data, size_t len, cni_command cmd, cni_conf *out, cni_error *err)
{
    memset(out, 0, sizeof(*out));
    out->version = -1;
    out->timeout_s = CNI_DEFAULT_TIMEOUT_S;
    out->request_timeout_s = CNI_DEFAULT_REQUEST_TIMEOUT_S;
    size_t blank = 0;
    while (blank < len && isspace((unsigned char)data[blank]))
        blank++;
    if (cmd == CNI_CMD_VERSION && blank == len) {
        /* VERSION with nothing on stdin: answer for the newest version. */
        out->version = (int)cni_supported_versions_n - 1;
        out->cni_version = strdup(CNI_VERSION_LATEST);
        return out->cni_version ? 0 : nomem(err);
    }
    json_object *root = NULL;
    int rc = parse_json(data, len, &root, err);
    if (!rc)
        rc = conf_parse(root, cmd, out, err);
    json_object_put(root);
    if (rc)
        cni_conf_free(out);
    return rc;
}

void cni_conf_free(cni_conf *c)
{
    if (!c)
        return;
    free(c->cni_version);
    free(c->name);
    for (size_t i = 0; i < c->n_pools; i++)
        free(c->pools[i]);
    free(c->kubeconfig);
    free(c->network);
    free(c->namespace_);
    free(c->node_name);
    json_object_put(c->prev_result);
    for (size_t i = 0; i < c->n_valid; i++) {
        free(c->valid[i].container_id);
        free(c->valid[i].ifname);
    }
    free(c->valid);
    memset(c, 0, sizeof(*c));
    c->version = -1;
}
