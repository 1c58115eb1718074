/*
 * Unit tests of the REST client's transport and verbs against the replay
 * server (tests/support/replay_server.h): real TLS on loopback, scripted
 * answers, recorded requests.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "kc_client.h"
#include "replay_server.h"
#include "testenv.h"
#include "pv_clock.h"

/* ---- fixture ------------------------------------------------------------- */

static rs_server *srv;
static kc_config *cfg;
static kc_client *cli;
static char *tmpdir;

typedef struct hook_log {
    pthread_mutex_t mu;
    int n;
    long status[64];
    char verb[64][8];
    const char *rotate_path; /* on 401: write rotate_token here */
    const char *rotate_token;
} hook_log;

static hook_log hooks = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void record_hook(const char *verb, long status, void *user)
{
    hook_log *h = user;
    pthread_mutex_lock(&h->mu);
    if (h->n < 64) {
        h->status[h->n] = status;
        snprintf(h->verb[h->n], sizeof(h->verb[0]), "%s", verb);
    }
    h->n++;
    if (status == 401 && h->rotate_path)
        testenv_write_file(h->rotate_path, h->rotate_token, strlen(h->rotate_token));
    pthread_mutex_unlock(&h->mu);
}

/* A client for kubeconfig text yaml (freed). */
static void make_client(char *yaml, const kc_client_opts *opts)
{
    cr_assert_not_null(yaml);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err);
    free(yaml);
    cr_assert_eq(rc, KC_OK, "kc_config_from_yaml: %s", err.message);
    rc = kc_client_new(cfg, opts, &cli, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message);
    kc_client_set_request_hook(cli, record_hook, &hooks);
}

/* Server plus a client with a static token, and the given options. */
static void start(const kc_client_opts *opts)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    rs_kubeconfig_opts ko = {.user_yaml = "    token: abc123\n"};
    make_client(rs_kubeconfig(srv, &ko), opts);
}

static void teardown(void)
{
    kc_client_free(cli);
    kc_config_free(cfg);
    rs_stop(srv);
    if (tmpdir) {
        testenv_rmtree(tmpdir);
        free(tmpdir);
    }
    cli = NULL;
    cfg = NULL;
    srv = NULL;
    tmpdir = NULL;
}

TestSuite(kc_client, .fini = teardown, .timeout = 60);

static const kc_ref POD_A = {.version = "v1", .resource = "pods", .namespace_ = "ns", .name = "a"};
static const kc_ref CLAIMS = {
    .group = "provisio.dev", .version = "v1alpha1", .resource = "ipclaims", .namespace_ = "ns"};

static const char *str_at(json_object *o, const char *a, const char *b)
{
    json_object *v = o;
    if (a && !json_object_object_get_ex(v, a, &v))
        return NULL;
    if (b && !json_object_object_get_ex(v, b, &v))
        return NULL;
    return json_object_get_string(v);
}

static json_object *body_json(const rs_request *r)
{
    cr_assert_not_null(r);
    json_object *o = json_tokener_parse(r->body);
    cr_assert_not_null(o, "request body is not JSON: %s", r->body);
    return o;
}

static const char STATUS_404[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"pods "
    "\\\"a\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"a\",\"kind\":\"pods\"},"
    "\"code\":404}";

/* ---- verbs --------------------------------------------------------------- */

Test(kc_client, get_decodes_the_object)
{
    start(NULL);
    rs_push_simple(srv, 200,
                   "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\","
                   "\"namespace\":\"ns\",\"resourceVersion\":\"42\"}}");
    json_object *obj = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, &obj, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(str_at(obj, "metadata", "name"), "a");
    cr_assert_str_eq(str_at(obj, "metadata", "resourceVersion"), "42");
    json_object_put(obj);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->method, "GET");
    cr_assert_str_eq(r->target, "/api/v1/namespaces/ns/pods/a");
    cr_assert_str_eq(rs_header(r, "Accept"), "application/json");
    cr_assert_null(rs_header(r, "Content-Type"));
    kc_error_clear(&err);
}

Test(kc_client, not_found_keeps_the_server_message)
{
    start(NULL);
    rs_push_simple(srv, 404, STATUS_404);
    json_object *obj = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, &obj, &err), KC_ERR_NOT_FOUND);
    cr_assert_null(obj);
    cr_assert_eq(err.code, KC_ERR_NOT_FOUND);
    cr_assert_eq(err.http_status, 404);
    cr_assert_str_eq(err.reason, "NotFound");
    cr_assert_str_eq(err.message, "pods \"a\" not found");
    cr_assert_eq(rs_request_count(srv), 1, "a 404 is not retried");
    kc_error_clear(&err);
}

Test(kc_client, conflict_409_tells_already_exists_from_stale_update)
{
    start(NULL);
    rs_push_simple(srv, 409,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"ipclaims "
                   "\\\"x\\\" already exists\",\"reason\":\"AlreadyExists\",\"code\":409}");
    rs_push_simple(srv, 409,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"Operation cannot "
                   "be fulfilled: the object has been modified\",\"reason\":\"Conflict\","
                   "\"code\":409}");
    json_object *body =
        json_tokener_parse("{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"1\"},\"spec\":{}}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_create(cli, &CLAIMS, body, NULL, NULL, &err), KC_ERR_ALREADY_EXISTS);
    cr_assert_str_eq(err.reason, "AlreadyExists");
    cr_assert_eq(kc_update(cli, &CLAIMS, body, NULL, NULL, &err), KC_ERR_CONFLICT);
    cr_assert_str_eq(err.reason, "Conflict");
    cr_assert_eq(rs_request_count(srv), 2);
    cr_assert_str_eq(rs_request_at(srv, 1)->method, "PUT");
    cr_assert_str_eq(rs_request_at(srv, 1)->target,
                     "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/x",
                     "update takes the name from the body");
    json_object_put(body);
    kc_error_clear(&err);
}

Test(kc_client, create_posts_json_to_the_collection)
{
    start(NULL);
    rs_push_simple(srv, 201,
                   "{\"kind\":\"IPClaim\",\"metadata\":{\"name\":\"x\",\"uid\":\"u-1\"}}");
    json_object *body =
        json_tokener_parse("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPClaim\","
                           "\"metadata\":{\"name\":\"x\"},\"spec\":{\"pool\":\"p/1\"}}");
    kc_write_opts wo = {.field_manager = "provisio op", .dry_run = true};
    json_object *out = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_create(cli, &CLAIMS, body, &wo, &out, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(str_at(out, "metadata", "uid"), "u-1");
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(r->target, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims"
                                "?dryRun=All&fieldManager=provisio%20op");
    cr_assert_str_eq(rs_header(r, "Content-Type"), "application/json");
    cr_assert_null(rs_header(r, "Expect"));
    json_object *sent = body_json(r);
    cr_assert(json_object_equal(sent, body), "sent %s", r->body);
    json_object_put(sent);
    json_object_put(out);
    json_object_put(body);
    kc_error_clear(&err);
}

Test(kc_client, create_takes_the_name_from_the_ref_without_touching_the_body)
{
    start(NULL);
    rs_push_simple(srv, 201, "{\"metadata\":{\"name\":\"fromref\"}}");
    json_object *body = json_tokener_parse("{\"spec\":{\"a\":1}}");
    kc_ref ref = CLAIMS;
    ref.name = "fromref";
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_create(cli, &ref, body, NULL, NULL, &err), KC_OK, "%s", err.message);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->target, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims");
    json_object *sent = body_json(r);
    cr_assert_str_eq(str_at(sent, "metadata", "name"), "fromref");
    cr_assert_null(str_at(body, "metadata", NULL), "the caller's body is unchanged");
    json_object_put(sent);
    json_object_put(body);
    kc_error_clear(&err);
}

Test(kc_client, patch_sends_the_content_type_of_each_kind)
{
    start(NULL);
    static const struct {
        kc_patch_type type;
        const char *ctype;
        const char *patch;
    } cases[] = {
        {KC_PATCH_MERGE, "application/merge-patch+json", "{\"spec\":{\"a\":1}}"},
        {KC_PATCH_JSON, "application/json-patch+json",
         "[{\"op\":\"replace\",\"path\":\"/spec/a\",\"value\":2}]"},
        {KC_PATCH_STRATEGIC, "application/strategic-merge-patch+json",
         "{\"metadata\":{\"labels\":{\"x\":\"y\"}}}"},
        {KC_PATCH_APPLY, "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}"},
    };
    kc_error err = KC_ERROR_INIT;
    for (size_t i = 0; i < 4; i++) {
        rs_push_simple(srv, 200, "{\"metadata\":{\"name\":\"a\"}}");
        json_object *p = json_tokener_parse(cases[i].patch);
        kc_write_opts wo = {.field_manager = "provisio", .force = true};
        json_object *out = NULL;
        cr_assert_eq(kc_patch(cli, &POD_A, cases[i].type, p, &wo, &out, &err), KC_OK, "%s",
                     err.message);
        cr_assert_not_null(out);
        const rs_request *r = rs_request_at(srv, i);
        cr_assert_str_eq(r->method, "PATCH");
        cr_assert_str_eq(rs_header(r, "Content-Type"), cases[i].ctype);
        json_object *sent = body_json(r);
        cr_assert(json_object_equal(sent, p), "sent %s", r->body);
        json_object_put(sent);
        json_object_put(out);
        json_object_put(p);
    }
    cr_assert_str_eq(rs_request_at(srv, 0)->target,
                     "/api/v1/namespaces/ns/pods/a?fieldManager=provisio",
                     "force is only sent with apply");
    cr_assert_str_eq(rs_request_at(srv, 3)->target,
                     "/api/v1/namespaces/ns/pods/a?fieldManager=provisio&force=true");

    json_object *p = json_tokener_parse("{\"metadata\":{}}");
    kc_write_opts none = {0};
    cr_assert_eq(kc_patch(cli, &POD_A, KC_PATCH_APPLY, p, &none, NULL, &err), KC_ERR_INVALID_ARG,
                 "apply without a field manager is refused");
    cr_assert_eq(rs_request_count(srv), 4, "and never sent");
    json_object_put(p);
    kc_error_clear(&err);
}

Test(kc_client, delete_sends_delete_options)
{
    start(NULL);
    rs_push_simple(srv, 200, "{\"kind\":\"Status\",\"status\":\"Success\"}");
    rs_push_simple(srv, 200, "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}");
    kc_delete_opts o = {.propagation_policy = "Foreground",
                        .precondition_uid = "uid-1",
                        .precondition_resource_version = "77",
                        .grace_period_seconds = 0,
                        .grace_period_set = true};
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_delete(cli, &POD_A, &o, NULL, &err), KC_OK, "%s", err.message);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->method, "DELETE");
    cr_assert_str_eq(r->target, "/api/v1/namespaces/ns/pods/a");
    cr_assert_str_eq(rs_header(r, "Content-Type"), "application/json");
    json_object *sent = body_json(r);
    cr_assert_str_eq(str_at(sent, "kind", NULL), "DeleteOptions");
    cr_assert_str_eq(str_at(sent, "propagationPolicy", NULL), "Foreground");
    cr_assert_str_eq(str_at(sent, "preconditions", "uid"), "uid-1");
    cr_assert_str_eq(str_at(sent, "preconditions", "resourceVersion"), "77");
    json_object *g;
    cr_assert(json_object_object_get_ex(sent, "gracePeriodSeconds", &g));
    cr_assert_eq(json_object_get_int(g), 0);
    json_object_put(sent);

    kc_delete_opts nograce = {.grace_period_seconds = 0}; /* not set: not sent */
    json_object *out = NULL;
    cr_assert_eq(kc_delete(cli, &POD_A, &nograce, &out, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(str_at(out, "kind", NULL), "Pod");
    cr_assert_eq(rs_request_at(srv, 1)->body_len, 0, "nothing asked, no body sent");
    json_object_put(out);
    kc_error_clear(&err);
}

Test(kc_client, list_all_follows_continue_over_three_pages)
{
    start(NULL);
    rs_push_simple(srv, 200,
                   "{\"kind\":\"IPClaimList\",\"metadata\":{\"resourceVersion\":\"100\","
                   "\"continue\":\"c1\",\"remainingItemCount\":2},\"items\":[{\"metadata\":"
                   "{\"name\":\"a\"}},{\"metadata\":{\"name\":\"b\"}}]}");
    rs_push_simple(srv, 200,
                   "{\"kind\":\"IPClaimList\",\"metadata\":{\"resourceVersion\":\"100\","
                   "\"continue\":\"c2/+=\"},\"items\":[{\"metadata\":{\"name\":\"c\"}}]}");
    rs_push_simple(srv, 200,
                   "{\"kind\":\"IPClaimList\",\"metadata\":{\"resourceVersion\":\"100\"},"
                   "\"items\":[{\"metadata\":{\"name\":\"d\"}}]}");
    kc_list_opts lo = {.label_selector = "app=x,tier in (a b)", .resource_version = "0"};
    json_object *list = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_list_all(cli, &CLAIMS, &lo, &list, &err), KC_OK, "%s", err.message);
    json_object *items;
    cr_assert(json_object_object_get_ex(list, "items", &items));
    cr_assert_eq(json_object_array_length(items), 4);
    const char *want[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(str_at(json_object_array_get_idx(items, i), "metadata", "name"), want[i]);
    cr_assert_str_eq(str_at(list, "metadata", "resourceVersion"), "100");
    cr_assert_null(str_at(list, "metadata", "continue"));
    cr_assert_null(str_at(list, "metadata", "remainingItemCount"));
    cr_assert_eq(rs_request_count(srv), 3);
    const char *base = "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims"
                       "?labelSelector=app%3Dx%2Ctier%20in%20%28a%20b%29&limit=500";
    char *want0 = NULL, *want1 = NULL, *want2 = NULL;
    cr_assert(asprintf(&want0, "%s&resourceVersion=0", base) > 0);
    cr_assert(asprintf(&want1, "%s&continue=c1", base) > 0);
    cr_assert(asprintf(&want2, "%s&continue=c2%%2F%%2B%%3D", base) > 0);
    cr_assert_str_eq(rs_request_at(srv, 0)->target, want0);
    cr_assert_str_eq(rs_request_at(srv, 1)->target, want1,
                     "resourceVersion is never sent with continue");
    cr_assert_str_eq(rs_request_at(srv, 2)->target, want2);
    free(want0);
    free(want1);
    free(want2);
    json_object_put(list);
    kc_error_clear(&err);
}

Test(kc_client, list_all_restarts_once_when_continue_expires)
{
    start(NULL);
    rs_push_simple(srv, 200,
                   "{\"metadata\":{\"resourceVersion\":\"5\",\"continue\":\"old\"},\"items\":["
                   "{\"metadata\":{\"name\":\"stale\"}}]}");
    rs_push_simple(srv, 410,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"The provided "
                   "continue parameter is too old\",\"reason\":\"Expired\",\"code\":410}");
    rs_push_simple(srv, 200,
                   "{\"metadata\":{\"resourceVersion\":\"9\"},\"items\":[{\"metadata\":"
                   "{\"name\":\"fresh\"}}]}");
    json_object *list = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_list_all(cli, &CLAIMS, NULL, &list, &err), KC_OK, "%s", err.message);
    json_object *items;
    cr_assert(json_object_object_get_ex(list, "items", &items));
    cr_assert_eq(json_object_array_length(items), 1);
    cr_assert_str_eq(str_at(json_object_array_get_idx(items, 0), "metadata", "name"), "fresh");
    cr_assert_str_eq(str_at(list, "metadata", "resourceVersion"), "9");
    cr_assert_eq(rs_request_count(srv), 3);
    cr_assert_null(strstr(rs_request_at(srv, 2)->target, "continue="));
    json_object_put(list);

    /* A 410 on the first page is the caller's business (too old resourceVersion). */
    rs_push_simple(srv, 410, "{\"kind\":\"Status\",\"reason\":\"Expired\",\"code\":410}");
    cr_assert_eq(kc_list_all(cli, &CLAIMS, NULL, &list, &err), KC_ERR_GONE);
    cr_assert_eq(rs_request_count(srv), 4);
    kc_error_clear(&err);
}

Test(kc_client, request_raw_returns_the_body)
{
    start(NULL);
    rs_push_simple(srv, 200, "{\"kind\":\"APIVersions\",\"versions\":[\"v1\"]}");
    char *body = NULL;
    size_t len = 0;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_request_raw(cli, "GET", "/api", NULL, NULL, 0, &body, &len, &err), KC_OK);
    cr_assert_str_eq(body, "{\"kind\":\"APIVersions\",\"versions\":[\"v1\"]}");
    cr_assert_eq(len, strlen(body));
    cr_assert_str_eq(rs_request_at(srv, 0)->target, "/api");
    free(body);
    kc_error_clear(&err);
}

Test(kc_client, non_json_2xx_is_a_decode_error)
{
    start(NULL);
    rs_response r = {
        .status = 200, .body = "<html>proxy</html>", .headers = "Content-Type: text/html\r\n"};
    rs_push(srv, &r);
    json_object *obj = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, &obj, &err), KC_ERR_DECODE);
    cr_assert_null(obj);
    cr_assert_not_null(err.message);
    kc_error_clear(&err);
}

/* ---- retries ------------------------------------------------------------- */

Test(kc_client, get_retried_on_503_until_it_succeeds)
{
    start(NULL);
    rs_push_simple(srv, 503, "{\"kind\":\"Status\",\"code\":503,\"message\":\"busy\"}");
    rs_push_simple(srv, 503, "{\"kind\":\"Status\",\"code\":503,\"message\":\"busy\"}");
    rs_push_simple(srv, 200, "{\"metadata\":{\"name\":\"a\"}}");
    json_object *obj = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, &obj, &err), KC_OK, "%s", err.message);
    cr_assert_null(err.message, "a success leaves no error behind");
    cr_assert_eq(rs_request_count(srv), 3);
    cr_assert_eq(hooks.n, 3);
    cr_assert_eq(hooks.status[0], 503);
    cr_assert_eq(hooks.status[1], 503);
    cr_assert_eq(hooks.status[2], 200);
    cr_assert_str_eq(hooks.verb[2], "GET");
    json_object_put(obj);
}

Test(kc_client, post_not_retried_on_500)
{
    start(NULL);
    rs_push_simple(srv, 500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"boom\"}");
    rs_push_simple(srv, 201, "{\"metadata\":{\"name\":\"x\"}}");
    json_object *body = json_tokener_parse("{\"metadata\":{\"name\":\"x\"}}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_create(cli, &CLAIMS, body, NULL, NULL, &err), KC_ERR_INTERNAL);
    cr_assert_str_eq(err.message, "boom");
    cr_assert_eq(rs_request_count(srv), 1);
    cr_assert_eq(rs_pending(srv), 1);
    json_object_put(body);
    kc_error_clear(&err);
}

Test(kc_client, too_many_requests_waits_for_retry_after)
{
    start(NULL);
    rs_response r = {.status = 429,
                     .headers = "Retry-After: 1\r\n",
                     .body = "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\",\"code\":429}"};
    rs_push(srv, &r);
    rs_push_simple(srv, 200, "{\"metadata\":{\"name\":\"a\"}}");
    kc_error err = KC_ERROR_INIT;
    double t0 = pv_clock_monotonic();
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    double elapsed = pv_clock_monotonic() - t0;
    cr_assert_geq(elapsed, 0.9, "waited only %.3f s", elapsed);
    cr_assert_eq(rs_request_count(srv), 2);
    kc_error_clear(&err);
}

Test(kc_client, post_retried_after_429)
{
    start(NULL);
    rs_push_simple(srv, 429, "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\",\"code\":429}");
    rs_push_simple(srv, 201, "{\"metadata\":{\"name\":\"x\"}}");
    json_object *body = json_tokener_parse("{\"metadata\":{\"name\":\"x\"}}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_create(cli, &CLAIMS, body, NULL, NULL, &err), KC_OK, "%s", err.message);
    cr_assert_eq(rs_request_count(srv), 2, "429 means nothing was done: safe to repeat");
    cr_assert_str_eq(rs_request_at(srv, 1)->body, rs_request_at(srv, 0)->body);
    json_object_put(body);
    kc_error_clear(&err);
}

Test(kc_client, retries_give_up_after_max_retries_with_the_last_error)
{
    kc_client_opts o = {.max_retries = 2};
    start(&o);
    rs_push_simple(srv, 503, "{\"kind\":\"Status\",\"code\":503,\"message\":\"first\"}");
    rs_push_simple(srv, 502, "{\"kind\":\"Status\",\"code\":502,\"message\":\"second\"}");
    rs_push_simple(srv, 503, "{\"kind\":\"Status\",\"code\":503,\"message\":\"third\"}");
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_ERR_SERVICE_UNAVAILABLE);
    cr_assert_str_eq(err.message, "third");
    cr_assert_eq(rs_request_count(srv), 3);
    cr_assert_eq(rs_pending(srv), 1);
    kc_error_clear(&err);
}

Test(kc_client, unauthorized_rereads_the_token_file_and_retries_once)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    tmpdir = testenv_tempdir();
    cr_assert_not_null(tmpdir);
    char *tokpath = NULL, *user = NULL;
    cr_assert(asprintf(&tokpath, "%s/token", tmpdir) > 0);
    cr_assert_eq(testenv_write_file(tokpath, "tok-one", 7), 0);
    cr_assert(asprintf(&user, "    tokenFile: %s\n", tokpath) > 0);
    rs_kubeconfig_opts ko = {.user_yaml = user};
    make_client(rs_kubeconfig(srv, &ko), NULL);
    free(user);
    hooks.rotate_path = tokpath;
    hooks.rotate_token = "tok-two-rotated";

    rs_push_simple(srv, 401, "{\"kind\":\"Status\",\"reason\":\"Unauthorized\",\"code\":401}");
    rs_push_simple(srv, 200, "{\"metadata\":{\"name\":\"a\"}}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    cr_assert_eq(rs_request_count(srv), 2);
    cr_assert_str_eq(rs_header(rs_request_at(srv, 0), "Authorization"), "Bearer tok-one");
    cr_assert_str_eq(rs_header(rs_request_at(srv, 1), "Authorization"), "Bearer tok-two-rotated");

    /* Refused again after the refresh: one refresh per request, then the error. */
    hooks.rotate_path = NULL;
    rs_push_simple(srv, 401, "{\"kind\":\"Status\",\"reason\":\"Unauthorized\",\"code\":401}");
    rs_push_simple(srv, 401, "{\"kind\":\"Status\",\"reason\":\"Unauthorized\",\"code\":401}");
    rs_push_simple(srv, 200, "{}");
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_ERR_UNAUTHORIZED);
    cr_assert_eq(rs_request_count(srv), 4);
    cr_assert_eq(rs_pending(srv), 1);
    free(tokpath);
    kc_error_clear(&err);
}

/* ---- headers, connections, pacing ---------------------------------------- */

Test(kc_client, sends_bearer_token_and_user_agent)
{
    start(NULL);
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(rs_header(r, "Authorization"), "Bearer abc123");
    cr_assert_str_eq(rs_header(r, "User-Agent"), "provisio/" PROVISIO_VERSION);
    kc_error_clear(&err);
}

Test(kc_client, user_agent_can_be_overridden)
{
    kc_client_opts o = {.user_agent = "provisio-test/9 (unit)"};
    start(&o);
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(rs_header(rs_request_at(srv, 0), "User-Agent"), "provisio-test/9 (unit)");
    kc_error_clear(&err);
}

Test(kc_client, sequential_requests_reuse_one_connection)
{
    start(NULL);
    rs_response r = {.status = 200, .body = "{\"metadata\":{\"name\":\"a\"}}", .times = -1};
    rs_push(srv, &r);
    kc_error err = KC_ERROR_INIT;
    for (int i = 0; i < 10; i++)
        cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    cr_assert_eq(rs_request_count(srv), 10);
    cr_assert_eq(rs_connections(srv), 1);
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq(rs_request_at(srv, i)->conn_id, 1);
    /* The client's own count agrees (the replay server speaks HTTP/1.1 only). */
    kc_client_stats st;
    kc_client_stats_get(cli, &st);
    cr_assert_eq(st.responses, 10);
    cr_assert_eq(st.connections_opened, 1);
    cr_assert_eq(st.http2_responses, 0);
    kc_error_clear(&err);
}

Test(kc_client, rate_limiter_paces_requests)
{
    kc_client_opts o = {.qps = 20, .burst = 1};
    start(&o);
    rs_response r = {.status = 200, .body = "{}", .times = -1};
    rs_push(srv, &r);
    kc_error err = KC_ERROR_INIT;
    double t0 = pv_clock_monotonic();
    for (int i = 0; i < 11; i++)
        cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    double elapsed = pv_clock_monotonic() - t0;
    cr_assert_geq(elapsed, 0.45, "11 requests at 20 qps took only %.3f s", elapsed);
    kc_error_clear(&err);
}

typedef struct worker {
    pthread_t t;
    int ok;
    int id;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    char name[32];
    snprintf(name, sizeof(name), "w%d", w->id);
    kc_ref ref = POD_A;
    ref.name = name;
    for (int i = 0; i < 50; i++) {
        json_object *obj = NULL;
        kc_error err = KC_ERROR_INIT;
        if (kc_get(cli, &ref, &obj, &err) == KC_OK && obj)
            w->ok++;
        json_object_put(obj);
        kc_error_clear(&err);
    }
    return NULL;
}

Test(kc_client, many_threads_share_one_client)
{
    start(NULL);
    rs_response r = {.status = 200, .body = "{\"metadata\":{\"name\":\"any\"}}", .times = -1};
    rs_push(srv, &r);
    worker ws[8];
    for (int i = 0; i < 8; i++) {
        ws[i] = (worker){.id = i};
        cr_assert_eq(pthread_create(&ws[i].t, NULL, worker_main, &ws[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(ws[i].t, NULL);
        ok += ws[i].ok;
    }
    cr_assert_eq(ok, 400);
    cr_assert_eq(rs_request_count(srv), 400);
    cr_assert_leq(rs_connections(srv), 8, "one connection per concurrent thread at most, got %d",
                  rs_connections(srv));
    cr_assert_eq(hooks.n, 400);
}

Test(kc_client, connect_to_a_closed_port_fails_fast_as_transport)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    char *url = NULL;
    cr_assert(asprintf(&url, "https://127.0.0.1:%d", rs_closed_port()) > 0);
    rs_kubeconfig_opts ko = {.server = url, .user_yaml = "    token: abc\n"};
    kc_client_opts o = {.max_retries = 2};
    make_client(rs_kubeconfig(srv, &ko), &o);
    free(url);
    kc_error err = KC_ERROR_INIT;
    double t0 = pv_clock_monotonic();
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_ERR_TRANSPORT);
    double elapsed = pv_clock_monotonic() - t0;
    cr_assert_lt(elapsed, 2.0, "took %.3f s", elapsed);
    cr_assert_eq(hooks.n, 3, "connect failures are retried (nothing was sent)");
    cr_assert_eq(hooks.status[0], 0);
    cr_assert_eq(err.http_status, 0);
    cr_assert_not_null(strstr(err.message, "onnect"), "message: %s", err.message);

    /* Nothing was sent, so even a POST is retried. */
    json_object *body = json_tokener_parse("{\"metadata\":{\"name\":\"x\"}}");
    cr_assert_eq(kc_create(cli, &CLAIMS, body, NULL, NULL, &err), KC_ERR_TRANSPORT);
    cr_assert_eq(hooks.n, 6);
    json_object_put(body);
    kc_error_clear(&err);
}

/* ---- cancelling a list --------------------------------------------------- */

typedef struct cancel_thread {
    rs_server *srv;
    size_t after_requests; /* set the flag once the server has seen this many */
    int then_ms;           /* and this much later */
    atomic_bool *flag;
} cancel_thread;

static void *cancel_main(void *arg)
{
    cancel_thread *t = arg;
    rs_wait_requests(t->srv, t->after_requests, 10000);
    struct timespec ts = {t->then_ms / 1000, (t->then_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(t->flag, true);
    return NULL;
}

Test(kc_client, list_already_cancelled_sends_nothing)
{
    start(NULL);
    rs_push_simple(srv, 200, "{\"items\":[]}");
    atomic_bool cancel = true;
    kc_list_opts lo = {.cancel = &cancel};
    json_object *page = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_list(cli, &CLAIMS, &lo, &page, &err), KC_ERR_STOPPED);
    cr_assert_null(page);
    cr_assert_not_null(strstr(err.message, "cancelled"), "message: %s", err.message);
    cr_assert_eq(rs_request_count(srv), 0);
    cr_assert_eq(hooks.n, 0);
    /* The same list without the flag goes through. */
    atomic_store(&cancel, false);
    cr_assert_eq(kc_list(cli, &CLAIMS, &lo, &page, &err), KC_OK, "%s", err.message);
    json_object_put(page);
    kc_error_clear(&err);
}

/* 503s keep the list retrying (up to 5 retries, backoff doubling from
 * 100 ms); the flag, set after the first answer, ends it between attempts. */
Test(kc_client, list_cancelled_during_retries_stops_retrying)
{
    start(NULL);
    rs_response busy = {.status = 503,
                        .body = "{\"kind\":\"Status\",\"code\":503,\"message\":\"busy\"}",
                        .times = -1};
    rs_push(srv, &busy);
    atomic_bool cancel = false;
    cancel_thread ct = {.srv = srv, .after_requests = 1, .then_ms = 0, .flag = &cancel};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_main, &ct), 0);
    kc_list_opts lo = {.cancel = &cancel};
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_list(cli, &CLAIMS, &lo, NULL, &err), KC_ERR_STOPPED, "%s", err.message);
    pthread_join(th, NULL);
    cr_assert_lt(rs_request_count(srv), 6, "%zu attempts: the retries ran to the end",
                 rs_request_count(srv));
    kc_error_clear(&err);
}

/* An answer that never ends (headers, then nothing): the flag aborts the
 * attempt in flight; without it the list would wait for the 30 s timeout. */
Test(kc_client, list_cancelled_in_flight_is_aborted)
{
    kc_client_opts o = {.request_timeout_ms = 30000};
    start(&o);
    rs_response r = {.status = 200, .body = "{\"items\":[", .hold = true};
    rs_push(srv, &r);
    atomic_bool cancel = false;
    cancel_thread ct = {.srv = srv, .after_requests = 1, .then_ms = 200, .flag = &cancel};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_main, &ct), 0);
    kc_list_opts lo = {.cancel = &cancel};
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_list(cli, &CLAIMS, &lo, NULL, &err), KC_ERR_STOPPED, "%s", err.message);
    pthread_join(th, NULL);
    cr_assert_eq(rs_request_count(srv), 1, "an aborted attempt is not retried");
    kc_error_clear(&err);
}

Test(kc_client, body_over_the_limit_is_too_large)
{
    kc_client_opts o = {.max_body_bytes = 1024};
    start(&o);
    char *big = malloc(4097);
    cr_assert_not_null(big);
    memset(big, ' ', 4096);
    big[0] = '{';
    big[4095] = '}';
    big[4096] = '\0';
    rs_push_simple(srv, 200, big); /* Content-Length announces it */
    size_t pieces[] = {512, 512, 512};
    rs_response chunked = {.status = 200, .body = big, .chunks = pieces, .nchunks = 3};
    rs_push(srv, &chunked); /* no length: caught while it arrives */
    kc_error err = KC_ERROR_INIT;
    json_object *obj = NULL;
    cr_assert_eq(kc_get(cli, &POD_A, &obj, &err), KC_ERR_TOO_LARGE, "%s", err.message);
    cr_assert_eq(kc_get(cli, &POD_A, &obj, &err), KC_ERR_TOO_LARGE, "%s", err.message);
    cr_assert_null(obj);
    cr_assert_eq(rs_request_count(srv), 2, "not retried");
    free(big);
    kc_error_clear(&err);
}

/* ---- TLS ----------------------------------------------------------------- */

Test(kc_client, wrong_ca_is_refused)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    char *other = rs_unrelated_ca_pem();
    cr_assert_not_null(other);
    rs_kubeconfig_opts ko = {.ca_pem = other, .user_yaml = "    token: abc\n"};
    make_client(rs_kubeconfig(srv, &ko), NULL);
    free(other);
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_ERR_TRANSPORT);
    cr_assert(strstr(err.message, "SSL") || strstr(err.message, "certificate"), "message: %s",
              err.message);
    cr_assert_eq(hooks.n, 1, "a verification failure is not retried");
    cr_assert_eq(rs_request_count(srv), 0);
    kc_error_clear(&err);
}

Test(kc_client, insecure_config_skips_verification)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    rs_kubeconfig_opts ko = {.no_ca = true, .insecure = true, .user_yaml = "    token: abc\n"};
    make_client(rs_kubeconfig(srv, &ko), NULL);
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_client, tls_server_name_is_the_name_verified)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    /* The certificate names kubernetes.default.svc: verified against it, it passes. */
    rs_kubeconfig_opts ko = {.tls_server_name = "kubernetes.default.svc",
                             .user_yaml = "    token: abc\n"};
    make_client(rs_kubeconfig(srv, &ko), NULL);
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    kc_client_free(cli);
    kc_config_free(cfg);

    /* A name the certificate lacks fails, although 127.0.0.1 itself is in it. */
    rs_kubeconfig_opts bad = {.tls_server_name = "not-in-the-cert.test",
                              .user_yaml = "    token: abc\n"};
    make_client(rs_kubeconfig(srv, &bad), NULL);
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_ERR_TRANSPORT);
    cr_assert_eq(rs_request_count(srv), 1);
    kc_error_clear(&err);
}

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    cr_assert_not_null(out);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

Test(kc_client, client_certificate_is_sent_from_memory)
{
    rs_opts so = {.require_client_cert = true};
    srv = rs_start(&so);
    cr_assert_not_null(srv);
    char *cert = NULL, *key = NULL, *user = NULL;
    cr_assert_eq(rs_issue_client_cert(srv, "system:provisio", &cert, &key), 0);
    char *c64 = b64(cert), *k64 = b64(key);
    cr_assert(asprintf(&user, "    client-certificate-data: %s\n    client-key-data: %s\n", c64,
                       k64) > 0);
    rs_kubeconfig_opts ko = {.user_yaml = user};
    make_client(rs_kubeconfig(srv, &ko), NULL);
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->client_cn, "system:provisio");
    cr_assert_null(rs_header(r, "Authorization"));
    free(cert);
    free(key);
    free(c64);
    free(k64);
    free(user);
    kc_error_clear(&err);
}

static char *json_escape_pem(const char *pem)
{
    /* PEM has only newlines to escape in a JSON string. */
    size_t n = strlen(pem), k = 0;
    char *out = malloc(2 * n + 1);
    cr_assert_not_null(out);
    for (size_t i = 0; i < n; i++) {
        if (pem[i] == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = pem[i];
        }
    }
    out[k] = '\0';
    return out;
}

Test(kc_client, exec_plugin_client_certificate_is_used)
{
    rs_opts so = {.require_client_cert = true};
    srv = rs_start(&so);
    cr_assert_not_null(srv);
    tmpdir = testenv_tempdir();
    cr_assert_not_null(tmpdir);
    char *cert = NULL, *key = NULL;
    cr_assert_eq(rs_issue_client_cert(srv, "exec-user", &cert, &key), 0);
    char *ce = json_escape_pem(cert), *ke = json_escape_pem(key);
    char *cred = NULL, *credpath = NULL, *plugin = NULL, *script = NULL, *user = NULL;
    cr_assert(asprintf(&cred,
                       "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
                       "\"ExecCredential\",\"status\":{\"clientCertificateData\":\"%s\","
                       "\"clientKeyData\":\"%s\"}}",
                       ce, ke) > 0);
    cr_assert(asprintf(&credpath, "%s/cred.json", tmpdir) > 0);
    cr_assert_eq(testenv_write_file(credpath, cred, strlen(cred)), 0);
    cr_assert(asprintf(&plugin, "%s/plugin.sh", tmpdir) > 0);
    cr_assert(asprintf(&script, "#!/bin/sh\nexec cat '%s'\n", credpath) > 0);
    cr_assert_eq(testenv_write_file(plugin, script, strlen(script)), 0);
    cr_assert_eq(chmod(plugin, 0700), 0);
    cr_assert(asprintf(&user,
                       "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
                       "      command: %s\n      interactiveMode: Never\n",
                       plugin) > 0);
    rs_kubeconfig_opts ko = {.user_yaml = user};
    make_client(rs_kubeconfig(srv, &ko), NULL);
    rs_push_simple(srv, 200, "{}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_get(cli, &POD_A, NULL, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(rs_request_at(srv, 0)->client_cn, "exec-user");
    cr_assert_null(rs_header(rs_request_at(srv, 0), "Authorization"));
    free(cert);
    free(key);
    free(ce);
    free(ke);
    free(cred);
    free(credpath);
    free(plugin);
    free(script);
    free(user);
    kc_error_clear(&err);
}

Test(kc_client, answer_cut_short_is_retried_for_get_but_not_for_post)
{
    start(NULL);
    static const char obj[] = "{\"metadata\":{\"name\":\"a\"},\"spec\":{\"x\":1}}";
    rs_response cut = {.status = 200, .body = obj, .cut = true, .cut_after = 10};
    rs_push(srv, &cut);
    rs_push_simple(srv, 200, obj);
    kc_error err = KC_ERROR_INIT;
    json_object *out = NULL;
    cr_assert_eq(kc_get(cli, &POD_A, &out, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(str_at(out, "metadata", "name"), "a");
    json_object_put(out);
    cr_assert_eq(rs_request_count(srv), 2);

    /* The POST reached the server: repeating it could create twice. */
    rs_push(srv, &cut);
    rs_push_simple(srv, 201, obj);
    json_object *body = json_tokener_parse(obj);
    cr_assert_eq(kc_create(cli, &CLAIMS, body, NULL, NULL, &err), KC_ERR_TRANSPORT);
    cr_assert_eq(rs_request_count(srv), 3);
    cr_assert_eq(rs_pending(srv), 1);
    json_object_put(body);
    kc_error_clear(&err);
}

/* ---- watch --------------------------------------------------------------- */

typedef struct seen {
    int n;
    kc_event_type types[16];
    char names[16][32];
    int stop_at; /* return 7 at this event (1-based); 0 = never */
} seen;

static int on_event(kc_event_type type, json_object *obj, void *user)
{
    seen *s = user;
    if (s->n < 16) {
        s->types[s->n] = type;
        const char *name = str_at(obj, "metadata", "name");
        snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name ? name : "");
    }
    s->n++;
    return (s->stop_at && s->n == s->stop_at) ? 7 : 0;
}

#define EV(type, name, rv)                                                                         \
    "{\"type\":\"" type "\",\"object\":{\"kind\":\"IPClaim\",\"metadata\":{\"name\":\"" name       \
    "\",\"resourceVersion\":\"" rv "\",\"annotations\":{\"note\":\"a } in a \\\"string\\\" "       \
    "{\"}}}}\n"

static const char STREAM[] = EV("ADDED", "a", "11")
    EV("MODIFIED", "a", "12") "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"IPClaim\","
                              "\"metadata\":{\"resourceVersion\":"
                              "\"13\"}}}\n" EV("DELETED", "a", "14");

static kc_watch *new_watch(void)
{
    kc_watch *w = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_watch_new(cli, 0, &w, &err), KC_OK, "%s", err.message);
    return w;
}

Test(kc_client, watch_delivers_events_split_in_odd_chunks)
{
    start(NULL);
    size_t pieces[] = {1, 7, 3, 50, 2, 13, 97, 1, 1, 64, 5, 33};
    rs_response r = {
        .status = 200, .body = STREAM, .chunks = pieces, .nchunks = 12, .chunk_delay_ms = 2};
    rs_push(srv, &r);
    kc_watch *w = new_watch();
    kc_list_opts lo = {
        .resource_version = "10", .allow_watch_bookmarks = true, .timeout_seconds = 300};
    seen s = {0};
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_watch_run(w, &CLAIMS, &lo, on_event, &s, &err), KC_OK, "%s", err.message);
    cr_assert_eq(s.n, 4);
    cr_assert_eq(s.types[0], KC_EVENT_ADDED);
    cr_assert_eq(s.types[1], KC_EVENT_MODIFIED);
    cr_assert_eq(s.types[2], KC_EVENT_BOOKMARK);
    cr_assert_eq(s.types[3], KC_EVENT_DELETED);
    cr_assert_str_eq(s.names[3], "a");
    const rs_request *req = rs_request_at(srv, 0);
    cr_assert_str_eq(req->target, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims?watch=1"
                                  "&resourceVersion=10&timeoutSeconds=300"
                                  "&allowWatchBookmarks=true");
    cr_assert_str_eq(rs_header(req, "Authorization"), "Bearer abc123");
    cr_assert_str_eq(hooks.verb[0], "WATCH");
    cr_assert_eq(hooks.status[0], 200);

    /* Run again: the same watch handle, the same connection. */
    rs_push(srv, &r);
    seen s2 = {0};
    cr_assert_eq(kc_watch_run(w, &CLAIMS, &lo, on_event, &s2, &err), KC_OK, "%s", err.message);
    cr_assert_eq(s2.n, 4);
    cr_assert_eq(rs_connections(srv), 1);
    kc_watch_free(w);
    kc_error_clear(&err);
}

Test(kc_client, watch_error_event_410_is_gone)
{
    start(NULL);
    static const char body[] = EV("ADDED", "a", "11") "{\"type\":\"ERROR\",\"object\":{\"kind\":"
                                                      "\"Status\",\"apiVersion\":\"v1\",\"status\":"
                                                      "\"Failure\",\"message\":\"too old resource "
                                                      "version: 11 (20)\",\"reason\":\"Expired\","
                                                      "\"code\":410}}\n" EV("ADDED", "b", "21");
    size_t pieces[] = {10, 200, 3};
    rs_response r = {.status = 200, .body = body, .chunks = pieces, .nchunks = 3, .hold = true};
    rs_push(srv, &r);
    kc_watch *w = new_watch();
    seen s = {0};
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_watch_run(w, &CLAIMS, NULL, on_event, &s, &err), KC_ERR_GONE);
    cr_assert_eq(s.n, 1, "nothing is delivered after the ERROR event");
    cr_assert_str_eq(err.message, "too old resource version: 11 (20)");
    kc_watch_free(w);
    kc_error_clear(&err);
}

Test(kc_client, watch_answered_410_is_gone)
{
    start(NULL);
    rs_push_simple(srv, 410,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"too old resource "
                   "version\",\"reason\":\"Expired\",\"code\":410}");
    kc_watch *w = new_watch();
    seen s = {0};
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_watch_run(w, &CLAIMS, NULL, on_event, &s, &err), KC_ERR_GONE);
    cr_assert_eq(s.n, 0);
    cr_assert_eq(err.http_status, 410);
    cr_assert_str_eq(err.message, "too old resource version");
    kc_watch_free(w);
    kc_error_clear(&err);
}

Test(kc_client, watch_stream_cut_mid_event_is_transport)
{
    start(NULL);
    size_t first = strlen(EV("ADDED", "a", "11"));
    /* Connection dropped half-way through the second event. */
    rs_response cut = {
        .status = 200, .body = STREAM, .chunked = true, .cut = true, .cut_after = first + 20};
    rs_push(srv, &cut);
    /* The response ends cleanly, but inside an event. */
    rs_response clean = {.status = 200, .body = STREAM, .body_len = first + 20, .chunked = true};
    rs_push(srv, &clean);
    kc_watch *w = new_watch();
    kc_error err = KC_ERROR_INIT;
    for (int i = 0; i < 2; i++) {
        seen s = {0};
        cr_assert_eq(kc_watch_run(w, &CLAIMS, NULL, on_event, &s, &err), KC_ERR_TRANSPORT);
        cr_assert_eq(s.n, 1);
        cr_assert_not_null(strstr(err.message, "cut mid-event"), "message: %s", err.message);
    }
    kc_watch_free(w);
    kc_error_clear(&err);
}

typedef struct watch_thread {
    kc_watch *w;
    int rc;
    double ended;
    seen s;
} watch_thread;

static void *watch_main(void *arg)
{
    watch_thread *t = arg;
    kc_error err = KC_ERROR_INIT;
    t->rc = kc_watch_run(t->w, &CLAIMS, NULL, on_event, &t->s, &err);
    t->ended = pv_clock_monotonic();
    kc_error_clear(&err);
    return NULL;
}

Test(kc_client, watch_stop_from_another_thread_returns_stopped_promptly)
{
    start(NULL);
    rs_response r = {.status = 200, .hold = true}; /* headers, then nothing */
    rs_push(srv, &r);
    watch_thread t = {.w = new_watch()};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, watch_main, &t), 0);
    cr_assert(rs_wait_requests(srv, 1, 5000));
    struct timespec settle = {0, 200 * 1000000L};
    nanosleep(&settle, NULL);
    double stop_at = pv_clock_monotonic();
    kc_watch_stop(t.w);
    pthread_join(th, NULL);
    cr_assert_eq(t.rc, KC_ERR_STOPPED);
    cr_assert_lt(t.ended - stop_at, 0.5, "stop took %.3f s", t.ended - stop_at);
    cr_assert_eq(t.s.n, 0);

    /* A stopped watch stays stopped. */
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_watch_run(t.w, &CLAIMS, NULL, on_event, &t.s, &err), KC_ERR_STOPPED);
    cr_assert_eq(rs_request_count(srv), 1);
    kc_watch_free(t.w);
    kc_error_clear(&err);
}

Test(kc_client, watch_ends_when_the_callback_returns_non_zero)
{
    start(NULL);
    rs_response r = {.status = 200, .body = STREAM, .hold = true};
    rs_push(srv, &r);
    kc_watch *w = new_watch();
    seen s = {.stop_at = 2};
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_watch_run(w, &CLAIMS, NULL, on_event, &s, &err), 7);
    cr_assert_eq(s.n, 2);
    kc_watch_free(w);
    kc_error_clear(&err);
}

/* ---- throughput (a figure for the log, asserted only for correctness) ----- */

static size_t discard(char *p, size_t size, size_t n, void *user)
{
    (void)p;
    *(size_t *)user += size * n;
    return size * n;
}

/* The floor: one bare libcurl handle doing the same GETs, nothing else. */
static double bare_curl_rate(int n)
{
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    char *url = NULL;
    cr_assert(asprintf(&url, "%s/api/v1/namespaces/ns/pods/a", rs_url(srv)) > 0);
    struct curl_blob ca = {(void *)rs_ca_pem(srv), strlen(rs_ca_pem(srv)), CURL_BLOB_COPY};
    size_t got = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
    double t0 = pv_clock_monotonic();
    for (int i = 0; i < n; i++)
        cr_assert_eq(curl_easy_perform(h), CURLE_OK);
    double elapsed = pv_clock_monotonic() - t0;
    curl_easy_cleanup(h);
    free(url);
    cr_assert_gt(got, 0);
    return n / elapsed;
}

Test(kc_client, sequential_get_throughput_on_one_connection)
{
    start(NULL);
    rs_response r = {.status = 200,
                     .body = "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
                             "\"resourceVersion\":\"42\"},\"spec\":{}}",
                     .times = -1};
    rs_push(srv, &r);
    kc_error err = KC_ERROR_INIT;
    int n = 2000;
    double t0 = pv_clock_monotonic();
    for (int i = 0; i < n; i++) {
        json_object *obj = NULL;
        cr_assert_eq(kc_get(cli, &POD_A, &obj, &err), KC_OK, "%s", err.message);
        json_object_put(obj);
    }
    double rate = n / (pv_clock_monotonic() - t0);
    cr_assert_eq(rs_connections(srv), 1);
    double bare = bare_curl_rate(n);
    cr_assert_eq(rs_connections(srv), 2);
    fprintf(stderr,
            "BENCH sequential GETs, one TLS connection, replay server in-process: kc_get %.0f/s, "
            "bare libcurl %.0f/s, ratio %.2f\n",
            rate, bare, rate / bare);
    kc_error_clear(&err);
}
