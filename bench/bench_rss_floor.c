/*
 * bench_rss_floor - what a process linked like provisio costs before it does
 * any work: the shared libraries (libcurl with its OpenSSL, GnuTLS, Kerberos,
 * LDAP ... dependencies as Debian builds it, json-c, libyaml,
 * libwebsockets) mapped and one authenticated TLS request to the API server
 * (GET /version) made with provisio's own client.
 *
 *   bench_rss_floor [--kubeconfig PATH]
 *
 * Prints one line of key=value figures in KiB, read from /proc/self/status
 * at three points: after start (the libraries loaded and relocated), after
 * the client is made (OpenSSL initialised), after the request:
 *
 *   RSS_FLOOR start_rss=... client_rss=... request_rss=... hwm=... file=... anon=...
 *
 * The node agent's and the operator's peak RSS (bench/run-*-bench) include
 * this floor; the agent's target (< 12 MiB, DESIGN.md) is measured against
 * it. Most of it is file-backed pages of the libraries (RssFile), shared with
 * every other process that maps them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <yaml.h>

#include "kc_client.h"
#include "kc_config.h"
#include "kc_error.h"

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--kubeconfig") && i + 1 < argc)
            kubeconfig = argv[++i];
        else if (!strncmp(argv[i], "--kubeconfig=", 13))
            kubeconfig = argv[i] + 13;
        else {
            fprintf(stderr, "usage: %s [--kubeconfig PATH]\n", argv[0]);
            return 2;
        }
    }
    /* The libraries provisio maps: referenced so that the linker keeps them
     * whatever its --as-needed default. */
    if (!lws_get_library_version() || !yaml_get_version_string())
        return 1;
    long start_rss = status_kib("VmRSS");

    kc_config_opts co = {.kubeconfig = kubeconfig, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    kc_client *c = NULL;
    kc_client_opts cop = {.user_agent = "provisio-bench-rss-floor"};
    if (kc_config_load(&co, &cfg, &err) != KC_OK || kc_client_new(cfg, &cop, &c, &err) != KC_OK) {
        fprintf(stderr, "bench_rss_floor: %s\n", err.message ? err.message : "client failed");
        return 1;
    }
    long client_rss = status_kib("VmRSS");

    char *body = NULL;
    size_t len = 0;
    if (kc_request_raw(c, "GET", "/version", NULL, NULL, 0, &body, &len, &err) != KC_OK) {
        fprintf(stderr, "bench_rss_floor: GET /version: %s\n",
                err.message ? err.message : "failed");
        return 1;
    }
    free(body);
    printf("RSS_FLOOR start_rss=%ld client_rss=%ld request_rss=%ld hwm=%ld file=%ld anon=%ld\n",
           start_rss, client_rss, status_kib("VmRSS"), status_kib("VmHWM"), status_kib("RssFile"),
           status_kib("RssAnon"));
    kc_client_free(c);
    kc_config_free(cfg);
    kc_error_clear(&err);
    return 0;
}
