/*
 * fuzz_kubeconfig - libFuzzer harness for the kubeconfig loader
 * (src/client/kc_config*.c over src/client/kc_yaml.c).
 *
 * The input is one kubeconfig document, loaded from memory as
 * `--kubeconfig=-` would be, for its current-context. Properties, each a
 * finding when it fails: a refusal is a negative code with a message and no
 * config; a config has a server URL (http or https, no trailing '/'), a
 * non-empty namespace, a context and TLS blobs whose lengths match their
 * data; loading twice gives the same. The same bytes also go through the YAML
 * reader alone, converted to JSON from the root (bounded depth and nodes).
 * Exec plugins are parsed, never run (no credential is asked for). Paths in
 * the document are read relative to the current directory; fuzz/run starts
 * the fuzzer with stdin from /dev/null so "/dev/stdin" cannot block it.
 *
 * libFuzzer provides main; the replay build links fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "kc_config.h"
#include "kc_yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_blob(kc_blob b)
{
    if ((b.len == 0) != (b.data == NULL) && b.len != 0)
        abort();
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < b.len; i++) /* ASan: every byte it claims is there */
        sum ^= b.data[i];
    (void)sum;
}

static char *load(const char *text, size_t len)
{
    kc_config *cfg = (kc_config *)1;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(text, len, NULL, &cfg, &err);
    char *summary = NULL;
    if (rc != KC_OK) {
        if (rc >= 0 || cfg || !err.message)
            abort();
        if (asprintf(&summary, "error %d", rc) < 0)
            abort();
    } else {
        if (!cfg || err.message)
            abort();
        const char *server = kc_config_server(cfg), *ns = kc_config_namespace(cfg),
                   *ctx = kc_config_context(cfg);
        size_t sl = server ? strlen(server) : 0;
        if (!server || (strncasecmp(server, "https://", 8) && strncasecmp(server, "http://", 7)) ||
            (sl > 0 && server[sl - 1] == '/') || !ns || !*ns || !ctx)
            abort();
        kc_tls tls;
        kc_config_tls(cfg, &tls);
        check_blob(tls.ca);
        check_blob(tls.client_cert);
        check_blob(tls.client_key);
        const char *proxy = kc_config_proxy_url(cfg);
        if (asprintf(&summary, "%s|%s|%s|%s|%s|%zu|%zu|%zu|%d", server, ns, ctx,
                     proxy ? proxy : "-", tls.server_name ? tls.server_name : "-", tls.ca.len,
                     tls.client_cert.len, tls.client_key.len, tls.insecure) < 0)
            abort();
        kc_config_free(cfg);
    }
    kc_error_clear(&err);
    return summary;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    const char *text = (const char *)data;
    char *a = load(text, size), *b = load(text, size);
    if (strcmp(a, b)) {
        fprintf(stderr, "two loads differ: %s / %s\n", a, b);
        abort();
    }
    free(a);
    free(b);

    kc_yaml *y = NULL;
    kc_error err = KC_ERROR_INIT;
    if (kc_yaml_parse(text, size, "fuzz", &y, &err) == KC_OK) {
        json_object *j = NULL;
        int rc = kc_yaml_to_json(y, kc_yaml_root(y), &j, &err);
        if (rc != KC_OK && !err.message)
            abort();
        json_object_put(j);
        kc_yaml_free(y);
    } else if (!err.message || y) {
        abort();
    }
    kc_error_clear(&err);
    return 0;
}
