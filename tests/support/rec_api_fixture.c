/*
 * rec_api_fixture - a replay server and a client for the rec_util and
 * rec_events unit tests (rec_api_fixture.h).
 */
#include "rec_api_fixture.h"

#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "rec_util.h"

rs_server *raf_srv;
kc_client *raf_cli;
static kc_config *cfg;

void raf_start_with_timeout(long request_timeout_ms)
{
    raf_srv = rs_start(NULL);
    cr_assert_not_null(raf_srv);
    rs_kubeconfig_opts ko = {.user_yaml = "    token: abc123\n"};
    char *yaml = rs_kubeconfig(raf_srv, &ko);
    cr_assert_not_null(yaml);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err);
    free(yaml);
    cr_assert_eq(rc, KC_OK, "kc_config_from_yaml: %s", err.message);
    kc_client_opts co = {.max_retries = -1, .request_timeout_ms = request_timeout_ms};
    rc = kc_client_new(cfg, &co, &raf_cli, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message);
}

void raf_start(void)
{
    raf_start_with_timeout(0);
}

void raf_stop(void)
{
    kc_client_free(raf_cli);
    kc_config_free(cfg);
    rs_stop(raf_srv);
    raf_cli = NULL;
    cfg = NULL;
    raf_srv = NULL;
}

json_object *raf_parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o, "not JSON: %s", text);
    return o;
}

json_object *raf_body_json(const rs_request *r)
{
    cr_assert_not_null(r);
    return raf_parse(r->body);
}

const char *raf_str_at(json_object *o, const char *path)
{
    const char *s = rec_obj_str(o, path);
    return s ? s : "(none)";
}

int64_t raf_int_at(json_object *o, const char *path)
{
    json_object *v = rec_obj_at(o, path);
    cr_assert_not_null(v, "no %s", path);
    return json_object_get_int64(v);
}
