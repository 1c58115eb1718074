/* Unit tests of src/manager/httpd: probes, /metrics, 404, lifecycle, over loopback. */
#include <criterion/criterion.h>

#include "httpd.h"
#include "kc_error.h"
#include "metrics.h"
#include "pv_clock.h"

#include <curl/curl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- a tiny libcurl client ----------------------------------------------- */

typedef struct reply {
    long status;
    char *body;
    size_t len;
    char *ctype;
    CURLcode rc;
} reply;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t add = size * n;
    char *nb = realloc(r->body, r->len + add + 1);
    cr_assert_not_null(nb);
    memcpy(nb + r->len, p, add);
    r->len += add;
    nb[r->len] = '\0';
    r->body = nb;
    return add;
}

static reply fetch_with(CURL *h, int port, const char *path, bool head)
{
    reply r = {0};
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOBODY, head ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    r.rc = curl_easy_perform(h);
    if (r.rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        char *ct = NULL;
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
        if (ct)
            r.ctype = strdup(ct);
    }
    if (!r.body)
        r.body = strdup("");
    return r;
}

static reply fetch(int port, const char *path)
{
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    reply r = fetch_with(h, port, path, false);
    curl_easy_cleanup(h);
    return r;
}

static void reply_free(reply *r)
{
    free(r->body);
    free(r->ctype);
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(httpd, .init = setup, .fini = teardown);

static int check_ok(void *ud, char **why)
{
    (void)ud;
    (void)why;
    return 0;
}

static int check_fail(void *ud, char **why)
{
    *why = strdup(ud ? (const char *)ud : "failed");
    return 1;
}

static httpd_server *start_probes(int *port)
{
    httpd_options o = {.probes = true};
    httpd_server *s = httpd_new(&o);
    cr_assert_not_null(s);
    cr_assert_eq(httpd_start(s, "127.0.0.1:0", port), 0);
    cr_assert_gt(*port, 0);
    cr_assert(httpd_running(s));
    return s;
}

/* ---- tests --------------------------------------------------------------- */

Test(httpd, healthz_on_ephemeral_port_answers_ok)
{
    int port;
    httpd_server *s = start_probes(&port);
    cr_assert_eq(httpd_add_healthz_check(s, "ping", check_ok, NULL), 0);
    reply r = fetch(port, "/healthz");
    cr_assert_eq(r.rc, CURLE_OK, "%s", curl_easy_strerror(r.rc));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok");
    cr_assert_str_eq(r.ctype, "text/plain; charset=utf-8");
    reply_free(&r);
    httpd_free(s);
}

Test(httpd, no_checks_means_an_implicit_ping)
{
    int port;
    httpd_server *s = start_probes(&port);
    reply r = fetch(port, "/readyz?verbose");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "[+]ping ok\nhealthz check passed\n");
    reply_free(&r);
    httpd_free(s);
}

Test(httpd, failing_ready_check_gives_500_with_verbose_listing)
{
    int port;
    httpd_server *s = start_probes(&port);
    cr_assert_eq(httpd_add_readyz_check(s, "leader", check_fail, "not leading"), 0);
    cr_assert_eq(httpd_add_readyz_check(s, "informers", check_ok, NULL), 0);
    cr_assert_eq(httpd_add_readyz_check(s, "informers", check_ok, NULL), KC_ERR_INVALID_ARG);
    reply r = fetch(port, "/readyz");
    cr_assert_eq(r.status, 500);
    /* Sorted by name, the reason withheld on the public endpoint. */
    cr_assert_str_eq(r.body, "[+]informers ok\n[-]leader failed: reason withheld\n"
                             "healthz check failed\n");
    reply_free(&r);
    /* Health is separate from readiness. */
    r = fetch(port, "/healthz");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok");
    reply_free(&r);
    httpd_free(s);
}

Test(httpd, verbose_lists_every_check_when_all_pass)
{
    int port;
    httpd_server *s = start_probes(&port);
    cr_assert_eq(httpd_add_healthz_check(s, "b", check_ok, NULL), 0);
    cr_assert_eq(httpd_add_healthz_check(s, "a", check_ok, NULL), 0);
    reply r = fetch(port, "/healthz?verbose");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "[+]a ok\n[+]b ok\nhealthz check passed\n");
    reply_free(&r);
    r = fetch(port, "/healthz/?verbose=1");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "[+]a ok\n[+]b ok\nhealthz check passed\n");
    reply_free(&r);
    httpd_free(s);
}

Test(httpd, single_check_path_shows_the_reason_and_unknown_is_404)
{
    int port;
    httpd_server *s = start_probes(&port);
    cr_assert_eq(httpd_add_readyz_check(s, "leader", check_fail, "not leading"), 0);
    cr_assert_eq(httpd_add_readyz_check(s, "cache", check_ok, NULL), 0);
    reply r = fetch(port, "/readyz/leader");
    cr_assert_eq(r.status, 500);
    cr_assert_str_eq(r.body, "internal server error: not leading\n");
    reply_free(&r);
    r = fetch(port, "/readyz/cache");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok");
    reply_free(&r);
    r = fetch(port, "/readyz/nope");
    cr_assert_eq(r.status, 404);
    reply_free(&r);
    httpd_free(s);
}

Test(httpd, exclude_skips_a_failing_check_and_warns_about_unknown_names)
{
    int port;
    httpd_server *s = start_probes(&port);
    cr_assert_eq(httpd_add_readyz_check(s, "leader", check_fail, NULL), 0);
    cr_assert_eq(httpd_add_readyz_check(s, "cache", check_ok, NULL), 0);
    reply r = fetch(port, "/readyz?exclude=leader");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok");
    reply_free(&r);
    r = fetch(port, "/readyz?exclude=leader&exclude=zzz&verbose");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "[+]cache ok\n[+]leader excluded: ok\n"
                             "warn: some health checks cannot be excluded: no matches for \"zzz\"\n"
                             "healthz check passed\n");
    reply_free(&r);
    httpd_free(s);
}

/* Every line of a text exposition must match one of these (format 0.0.4). */
static void assert_exposition(const char *text)
{
    regex_t help, type, sample;
    cr_assert_eq(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$", REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(
        regcomp(&type,
                "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$",
                REG_EXTENDED | REG_NOSUB),
        0);
    cr_assert_eq(regcomp(&sample,
                         "^[a-zA-Z_:][a-zA-Z0-9_:]*"
                         "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
                         "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})?"
                         " (NaN|[+-]Inf|[-+]?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    char *copy = strdup(text);
    size_t lines = 0;
    cr_assert(strlen(copy) > 0 && copy[strlen(copy) - 1] == '\n', "must end with a newline");
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        bool ok = regexec(&help, line, 0, NULL, 0) == 0 || regexec(&type, line, 0, NULL, 0) == 0 ||
                  regexec(&sample, line, 0, NULL, 0) == 0;
        cr_assert(ok, "line does not match the exposition grammar: %s", line);
        lines++;
    }
    cr_assert_gt(lines, 10);
    free(copy);
    regfree(&help);
    regfree(&type);
    regfree(&sample);
}

Test(httpd, metrics_endpoint_renders_the_registry_in_text_format)
{
    met_registry *reg = met_registry_new();
    met_cr m;
    cr_assert_eq(met_cr_register(reg, &m), 0);
    cr_assert_eq(met_cr_init_controller(&m, "ippool", 2), 0);
    met_histogram_observe(met_histogram_get(m.reconcile_time_seconds, MET_L("ippool")), 0.3);
    met_vec *esc;
    cr_assert_eq(met_counter_vec(reg, "odd_total", "Odd \\ help\nline", MET_L("v"), &esc), 0);
    met_counter_inc(met_counter_get(esc, MET_L("quote\" back\\ nl\n")));

    httpd_options o = {.metrics = reg};
    httpd_server *s = httpd_new(&o);
    int port;
    cr_assert_eq(httpd_start(s, "127.0.0.1:0", &port), 0);
    reply r = fetch(port, "/metrics");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_exposition(r.body);
    cr_assert_not_null(
        strstr(r.body,
               "controller_runtime_reconcile_total{controller=\"ippool\",result=\"success\"} 0\n"));
    cr_assert_not_null(strstr(r.body, "odd_total{v=\"quote\\\" back\\\\ nl\\n\"} 1\n"));
    cr_assert_not_null(strstr(r.body, "\nprocess_resident_memory_bytes "));
    reply_free(&r);
    /* A metrics-only server has no probes. */
    r = fetch(port, "/healthz");
    cr_assert_eq(r.status, 404);
    reply_free(&r);
    httpd_free(s);
    met_registry_free(reg);
}

Test(httpd, large_metrics_body_arrives_whole_over_keepalive)
{
    met_registry *reg = met_registry_new();
    met_vec *v;
    cr_assert_eq(met_gauge_vec(reg, "big", "Many series.", MET_L("i"), &v), 0);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "series-%05d", i);
        met_gauge_set(met_gauge_get(v, MET_L(name)), i);
    }
    char *want = NULL;
    size_t want_len = 0;
    cr_assert_eq(met_render(reg, &want, &want_len), 0);
    cr_assert_gt(want_len, 100000); /* several write chunks */

    httpd_options o = {.metrics = reg, .probes = true};
    httpd_server *s = httpd_new(&o);
    int port;
    cr_assert_eq(httpd_start(s, "127.0.0.1:0", &port), 0);
    CURL *h = curl_easy_init();
    for (int i = 0; i < 3; i++) { /* the same connection is reused */
        reply r = fetch_with(h, port, "/metrics", false);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.len, want_len);
        cr_assert_eq(memcmp(r.body, want, want_len), 0);
        reply_free(&r);
        r = fetch_with(h, port, "/healthz", false);
        cr_assert_str_eq(r.body, "ok");
        reply_free(&r);
    }
    long conns = -1;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    cr_assert_eq(conns, 0, "the last request should reuse the connection");
    curl_easy_cleanup(h);
    free(want);
    httpd_free(s);
    met_registry_free(reg);
}

Test(httpd, head_gets_headers_without_body)
{
    int port;
    httpd_server *s = start_probes(&port);
    CURL *h = curl_easy_init();
    reply r = fetch_with(h, port, "/healthz", true);
    cr_assert_eq(r.rc, CURLE_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    reply_free(&r);
    curl_easy_cleanup(h);
    httpd_free(s);
}

Test(httpd, unknown_paths_are_404)
{
    int port;
    httpd_server *s = start_probes(&port);
    const char *paths[] = {"/", "/metrics", "/healthzz", "/readyzfoo", "/favicon.ico"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        reply r = fetch(port, paths[i]);
        cr_assert_eq(r.status, 404, "%s", paths[i]);
        cr_assert_str_eq(r.body, "404 page not found\n");
        reply_free(&r);
    }
    httpd_free(s);
}

Test(httpd, stop_is_prompt_and_closes_the_port_and_restart_works)
{
    int port;
    httpd_server *s = start_probes(&port);
    reply r = fetch(port, "/healthz");
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    double t0 = pv_clock_monotonic();
    httpd_stop(s);
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 0.5, "httpd_stop took %.3fs", took);
    cr_assert_not(httpd_running(s));
    r = fetch(port, "/healthz");
    cr_assert_neq(r.rc, CURLE_OK);
    reply_free(&r);
    httpd_stop(s); /* stopping twice is fine */

    int port2;
    cr_assert_eq(httpd_start(s, "127.0.0.1:0", &port2), 0);
    r = fetch(port2, "/healthz");
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    httpd_free(s);
}

Test(httpd, two_servers_run_in_one_process)
{
    met_registry *reg = met_registry_new();
    met_vec *v;
    cr_assert_eq(met_counter_vec(reg, "two_total", "Two.", NULL, &v), 0);
    met_counter_inc(met_counter_get(v, NULL));
    httpd_options mo = {.metrics = reg};
    httpd_options po = {.probes = true};
    httpd_server *ms = httpd_new(&mo);
    httpd_server *ps = httpd_new(&po);
    int mport, pport;
    cr_assert_eq(httpd_start(ms, "127.0.0.1:0", &mport), 0);
    cr_assert_eq(httpd_start(ps, ":0", &pport), 0);
    cr_assert_neq(mport, pport);
    reply r = fetch(mport, "/metrics");
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body, "two_total 1\n"));
    reply_free(&r);
    r = fetch(pport, "/readyz");
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    r = fetch(pport, "/metrics");
    cr_assert_eq(r.status, 404);
    reply_free(&r);
    httpd_free(ps);
    r = fetch(mport, "/metrics"); /* still up after the other stopped */
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    httpd_free(ms);
    met_registry_free(reg);
}

Test(httpd, port_in_use_is_a_transport_error_and_zero_disables)
{
    int port;
    httpd_server *a = start_probes(&port);
    httpd_options o = {.probes = true};
    httpd_server *b = httpd_new(&o);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    int got = -1;
    cr_assert_eq(httpd_start(b, addr, &got), KC_ERR_TRANSPORT);
    cr_assert_eq(got, 0);
    cr_assert_not(httpd_running(b));
    cr_assert_eq(httpd_start(b, "0", &got), 0);
    cr_assert_eq(got, 0);
    cr_assert_not(httpd_running(b));
    cr_assert_eq(httpd_start(b, "nonsense", &got), KC_ERR_INVALID_ARG);
    httpd_free(b);
    httpd_free(a);
}

Test(httpd, bind_addresses_parse_like_controller_runtime_flags)
{
    char *host;
    int port;
    cr_assert_eq(httpd_parse_bind_address(":8081", &host, &port), 0);
    cr_assert_null(host);
    cr_assert_eq(port, 8081);
    cr_assert_eq(httpd_parse_bind_address("127.0.0.1:8080", &host, &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 8080);
    free(host);
    cr_assert_eq(httpd_parse_bind_address("[::1]:9443", &host, &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 9443);
    free(host);
    cr_assert_eq(httpd_parse_bind_address("localhost:0", &host, &port), 0);
    cr_assert_str_eq(host, "localhost");
    cr_assert_eq(port, 0);
    free(host);
    cr_assert_eq(httpd_parse_bind_address("0", &host, &port), 0);
    cr_assert_eq(port, -1);
    const char *bad[] = {"", "8080", ":", ":65536", ":80a", "::1:80", "[::1]80", "host:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(httpd_parse_bind_address(bad[i], &host, &port), KC_ERR_INVALID_ARG, "%s",
                     bad[i]);
}

Test(httpd, localhost_name_resolves_and_serves)
{
    httpd_options o = {.probes = true};
    httpd_server *s = httpd_new(&o);
    int port;
    cr_assert_eq(httpd_start(s, "localhost:0", &port), 0);
    reply r = fetch(port, "/healthz");
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    httpd_free(s);
}
