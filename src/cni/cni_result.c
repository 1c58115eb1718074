/* cni_result - see cni_result.h. */
#include "cni_result.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "cni_config.h"
#include "pv_json.h"

bool cni_result_parse_cidr(const char *s, int *family, unsigned char addr[16], int *prefix)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || slash == s || (size_t)(slash - s) >= INET6_ADDRSTRLEN)
        return false;
    char host[INET6_ADDRSTRLEN];
    memcpy(host, s, (size_t)(slash - s));
    host[slash - s] = '\0';
    memset(addr, 0, 16);
    int fam;
    if (inet_pton(AF_INET, host, addr) == 1)
        fam = 4;
    else if (inet_pton(AF_INET6, host, addr) == 1)
        fam = 6;
    else
        return false;
    const char *p = slash + 1;
    int len = 0;
    if (!*p || strlen(p) > 3)
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        len = len * 10 + (*p - '0');
    }
    if (len > (fam == 4 ? 32 : 128))
        return false;
    *family = fam;
    *prefix = len;
    return true;
}

static const char *str_member(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool is_address(const char *s)
{
    unsigned char buf[16];
    return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* Append the routes of status to routes (an array), skipping duplicates. */
static bool add_routes(json_object *routes, json_object *status)
{
    json_object *rs;
    if (!json_object_object_get_ex(status, "routes", &rs) ||
        !json_object_is_type(rs, json_type_array))
        return true;
    for (size_t i = 0; i < json_object_array_length(rs); i++) {
        json_object *r = json_object_array_get_idx(rs, i);
        const char *dst = str_member(r, "dst"), *gw = str_member(r, "gw");
        int fam, prefix;
        unsigned char a[16];
        if (!cni_result_parse_cidr(dst, &fam, a, &prefix) || (gw && !is_address(gw)))
            continue; /* the CRD validates routes; anything else is not ours to pass on */
        bool dup = false;
        for (size_t j = 0; j < json_object_array_length(routes) && !dup; j++) {
            json_object *o = json_object_array_get_idx(routes, j);
            const char *odst = str_member(o, "dst"), *ogw = str_member(o, "gw");
            dup = !strcmp(odst, dst) && ((!gw && !ogw) || (gw && ogw && !strcmp(gw, ogw)));
        }
        if (dup)
            continue;
        json_object *o = json_object_new_object();
        if (!pv_json_add_str(o, "dst", dst) || !pv_json_add_str(o, "gw", gw) ||
            json_object_array_add(routes, o) != 0) {
            json_object_put(o);
            return false;
        }
    }
    return true;
}

static int add_ip(json_object *ips, int version, json_object *status, const char *name,
                  cni_error *err)
{
    const char *address = str_member(status, "address");
    const char *gateway = str_member(status, "gateway");
    int fam, prefix;
    unsigned char a[16];
    if (!cni_result_parse_cidr(address, &fam, a, &prefix))
        return cni_error_set(err, CNI_ERR_INTERNAL, NULL,
                             "IPClaim %s is Ready but its status.address \"%.60s\" is not a "
                             "CIDR: a bug of the operator (kubectl get ipclaim %s -o yaml)",
                             name, address ? address : "", name);
    if (gateway && !*gateway)
        gateway = NULL;
    if (gateway && !is_address(gateway))
        return cni_error_set(err, CNI_ERR_INTERNAL, NULL,
                             "IPClaim %s has a status.gateway \"%.60s\" that is not an address",
                             name, gateway);
    json_object *ip = json_object_new_object();
    bool ok = ip != NULL;
    /* "version" was dropped by 1.0.0 (index 3 of cni_supported_versions). */
    ok = ok && (version >= 3 || pv_json_add_str(ip, "version", fam == 4 ? "4" : "6"));
    ok = ok && pv_json_add_str(ip, "address", address) && pv_json_add_str(ip, "gateway", gateway);
    if (!ok || json_object_array_add(ips, ip) != 0) {
        json_object_put(ip);
        return cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: out of memory");
    }
    return 0;
}

static char *to_text(json_object *o)
{
    const char *s = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    return s ? strdup(s) : NULL;
}

int cni_result_encode(const char *version, json_object *const *statuses, const char *const *names,
                      size_t n, char **out, cni_error *err)
{
    *out = NULL;
    int v = cni_version_index(version);
    if (v < 0)
        return cni_error_set(err, CNI_ERR_INCOMPATIBLE_VERSION, NULL,
                             "cniVersion \"%.20s\" is not supported", version ? version : "");
    json_object *root = json_object_new_object();
    json_object *ips = json_object_new_array();
    json_object *routes = json_object_new_array();
    bool ok = root && pv_json_add_str(root, "cniVersion", version);
    ok = pv_json_add(root, "ips", ips) && ok;
    ok = pv_json_add(root, "routes", routes) && ok;
    ok = ok && pv_json_add(root, "dns", json_object_new_object());
    int rc = ok ? 0 : cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        rc = add_ip(ips, v, statuses[i], names[i], err);
        if (!rc && !add_routes(routes, statuses[i]))
            rc = cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: out of memory");
    }
    if (!rc && !(*out = to_text(root)))
        rc = cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: out of memory");
    json_object_put(root);
    return rc;
}

char *cni_result_version(void)
{
    json_object *root = json_object_new_object();
    json_object *list = json_object_new_array();
    bool ok = root && pv_json_add_str(root, "cniVersion", CNI_VERSION_LATEST);
    ok = pv_json_add(root, "supportedVersions", list) && ok;
    for (size_t i = 0; ok && i < cni_supported_versions_n; i++)
        ok = json_object_array_add(list, json_object_new_string(cni_supported_versions[i])) == 0;
    char *out = ok ? to_text(root) : NULL;
    json_object_put(root);
    return out;
}

bool cni_result_has_address(json_object *prev, const char *cidr)
{
    int fam, prefix;
    unsigned char a[16];
    json_object *ips;
    if (!cni_result_parse_cidr(cidr, &fam, a, &prefix) ||
        !json_object_object_get_ex(prev, "ips", &ips) || !json_object_is_type(ips, json_type_array))
        return false;
    for (size_t i = 0; i < json_object_array_length(ips); i++) {
        int f2, p2;
        unsigned char b[16];
        const char *s = str_member(json_object_array_get_idx(ips, i), "address");
        if (cni_result_parse_cidr(s, &f2, b, &p2) && f2 == fam && p2 == prefix &&
            memcmp(a, b, 16) == 0)
            return true;
    }
    return false;
}
