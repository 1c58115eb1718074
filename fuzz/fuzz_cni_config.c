/*
 * fuzz_cni_config - libFuzzer harness for provisio-cni's input parsing
 * (src/cni/cni_config.c: the CNI_* environment and CNI_ARGS, the network
 * configuration on stdin) and what is built from it (cni_result.c,
 * cni_names.c, cni_error.c).
 *
 * Input: byte 0 picks the command (mod 6: ADD, DEL, CHECK, STATUS, GC,
 * VERSION); then the environment, "NAME=value" lines up to the first NUL
 * byte; the rest is the configuration. Properties, each a finding when it
 * fails:
 *   - every refusal has a code of the specification or the plugin's own, a
 *     message, and leaves *out zeroed; its error object is JSON with that code;
 *   - an accepted environment has what its command needs (container id and
 *     interface for ADD, DEL, CHECK; names that are Kubernetes names), and
 *     the claim names made from it are DNS labels;
 *   - an accepted configuration has 1-2 distinct pools that are DNS labels,
 *     timeouts in (0, 600], a supported version, prevResult for CHECK and
 *     the valid attachments for GC; a second parse agrees;
 *   - the ips of an accepted prevResult, encoded as a result, give JSON
 *     that lists each of their addresses again (round trip).
 *
 * libFuzzer provides main; the replay build links fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni_config.h"
#include "cni_error.h"
#include "cni_names.h"
#include "cni_result.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ENV 32

static void check_error(int rc, const cni_error *err)
{
    static const int known[] = {CNI_ERR_INCOMPATIBLE_VERSION, CNI_ERR_INVALID_ENV, CNI_ERR_DECODE,
                                CNI_ERR_INVALID_CONFIG, CNI_ERR_INTERNAL};
    bool ok = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok = ok || rc == -known[i];
    if (!ok || err->code != -rc || !err->msg || !*err->msg) {
        fprintf(stderr, "refusal rc %d code %d msg %s\n", rc, err->code,
                err->msg ? err->msg : "(null)");
        abort();
    }
    char *text = cni_error_encode(err, NULL);
    json_object *o = text ? json_tokener_parse(text) : NULL;
    json_object *code = NULL;
    if (!o || !json_object_object_get_ex(o, "code", &code) || json_object_get_int(code) != -rc)
        abort();
    json_object_put(o);
    free(text);
}

static void check_env(const cni_env *e)
{
    bool needs =
        e->command == CNI_CMD_ADD || e->command == CNI_CMD_DEL || e->command == CNI_CMD_CHECK;
    if (needs != (e->container_id != NULL) || needs != (e->ifname != NULL))
        abort();
    if (e->pod_namespace && !cni_is_dns_label(e->pod_namespace))
        abort();
    if (needs) {
        char name[CNI_NAMES_CLAIM_MAX], label[64];
        if (!cni_names_claim("net", e->container_id, e->ifname, 1, name) ||
            !cni_is_dns_label(name) || !cni_names_container_label(e->container_id, label) ||
            !cni_names_is_label_value(label))
            abort();
    }
}

static void check_conf(const cni_conf *c, cni_command cmd)
{
    if (c->version < 0 || (size_t)c->version >= cni_supported_versions_n || !c->cni_version ||
        strcmp(c->cni_version, cni_supported_versions[c->version]) != 0)
        abort();
    if (cmd == CNI_CMD_VERSION)
        return;
    if (c->n_pools < 1 || c->n_pools > CNI_MAX_POOLS || !c->name)
        abort();
    for (size_t i = 0; i < c->n_pools; i++) {
        if (!cni_is_dns_label(c->pools[i]))
            abort();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->pools[i], c->pools[j]))
                abort();
    }
    if (!(c->timeout_s > 0 && c->timeout_s <= 600) ||
        !(c->request_timeout_s > 0 && c->request_timeout_s <= 600))
        abort();
    if ((cmd == CNI_CMD_CHECK) != (c->prev_result != NULL))
        abort();
    if (cmd == CNI_CMD_GC && !c->valid)
        abort();
    char label[64];
    if (!cni_names_label_value(c->name, label) || !cni_names_is_label_value(label))
        abort();
}

/* prevResult's ips as claim statuses: encoded, each address is listed again. */
static void round_trip(const cni_conf *c)
{
    json_object *ips = NULL;
    if (!c->prev_result || !json_object_object_get_ex(c->prev_result, "ips", &ips) ||
        !json_object_is_type(ips, json_type_array))
        return;
    size_t n = json_object_array_length(ips);
    if (n > 8)
        n = 8;
    json_object *st[8];
    const char *names[8];
    for (size_t i = 0; i < n; i++) {
        st[i] = json_object_array_get_idx(ips, i);
        names[i] = "claim";
    }
    char *out = NULL;
    cni_error err = CNI_ERROR_INIT;
    int rc = cni_result_encode(c->cni_version, st, names, n, &out, &err);
    if (rc == 0) {
        json_object *r = json_tokener_parse(out);
        if (!r)
            abort();
        for (size_t i = 0; i < n; i++) {
            json_object *a = NULL;
            json_object_object_get_ex(st[i], "address", &a);
            if (!cni_result_has_address(r, json_object_get_string(a)))
                abort();
        }
        json_object_put(r);
    } else if (rc != -CNI_ERR_INTERNAL || out || !err.msg) {
        abort();
    }
    free(out);
    cni_error_clear(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    cni_command cmd = (cni_command)(data[0] % 6);
    const char *rest = (const char *)data + 1;
    size_t left = size - 1;
    const char *nul = memchr(rest, '\0', left);
    size_t env_len = nul ? (size_t)(nul - rest) : left;
    char *env_text = strndup(rest, env_len);
    if (!env_text)
        return 0;
    char *envp[MAX_ENV + 2];
    size_t n = 0;
    char cmdline[32];
    snprintf(cmdline, sizeof(cmdline), "CNI_COMMAND=%s", cni_command_name(cmd));
    envp[n++] = cmdline;
    for (char *save = NULL, *line = strtok_r(env_text, "\n", &save); line && n < MAX_ENV + 1;
         line = strtok_r(NULL, "\n", &save))
        envp[n++] = line;
    envp[n] = NULL;
    /* The command given by byte 0 comes first, so it wins over one in the lines. */
    cni_env e;
    cni_error err = CNI_ERROR_INIT;
    int rc = cni_env_parse(envp, &e, &err);
    if (rc == 0) {
        if (e.command != cmd)
            abort();
        check_env(&e);
    } else {
        check_error(rc, &err);
        if (e.container_id || e.pod_uid)
            abort();
    }
    cni_env_free(&e);
    cni_error_clear(&err);
    free(env_text);

    const char *conf = nul ? nul + 1 : rest + left;
    size_t conf_len = nul ? left - env_len - 1 : 0;
    cni_conf c, c2;
    rc = cni_conf_parse(conf, conf_len, cmd, &c, &err);
    int rc2 = cni_conf_parse(conf, conf_len, cmd, &c2, NULL);
    if (rc != rc2)
        abort();
    if (rc == 0) {
        check_conf(&c, cmd);
        if (c.n_pools != c2.n_pools)
            abort();
        round_trip(&c);
    } else {
        check_error(rc, &err);
        if (c.pools[0] || c.name || c.prev_result)
            abort();
    }
    cni_conf_free(&c);
    cni_conf_free(&c2);
    cni_error_clear(&err);
    return 0;
}
