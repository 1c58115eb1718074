/*
 * vol_fixture - the volume app over the replay server (vol_fixture.h).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vol.h"
#include "vol_fixture.h"

vfx_env VFX;

/* The app's informers: resource and list path (vol_setup, vol_claim_setup,
 * vol_pv_setup, vol_dyn_setup). */
static const struct {
    const char *resource, *path;
} lists[] = {
    {"storagepools", "/apis/provisio.dev/v1alpha1/storagepools"},
    {"reservations", "/apis/provisio.dev/v1alpha1/reservations"},
    {"nodes", "/api/v1/nodes"},
    {"volumes", "/apis/provisio.dev/v1alpha1/volumes"},
    {"persistentvolumes", "/api/v1/persistentvolumes"},
    {"persistentvolumeclaims", "/api/v1/persistentvolumeclaims"},
    {"storageclasses", "/apis/storage.k8s.io/v1/storageclasses"},
    {"csistoragecapacities",
     "/apis/storage.k8s.io/v1/namespaces/" VFX_OPERATOR_NS "/csistoragecapacities"},
};
#define N_LISTS (sizeof lists / sizeof lists[0])

static size_t list_index(const char *resource)
{
    for (size_t i = 0; i < N_LISTS; i++)
        if (!strcmp(lists[i].resource, resource))
            return i;
    cr_assert_fail("no informer of %s in the volume app", resource);
    return 0;
}

const char *vfx_list_path(const char *resource)
{
    return lists[list_index(resource)].path;
}

/* ---- the rec_env the manager would hand over ---------------------------------- */

static int add_controller(const rec_env *env, ctl *c)
{
    (void)env;
    if (VFX.n_ctls == VFX_MAX_CONTROLLERS)
        return KC_ERR_NOMEM;
    VFX.ctls[VFX.n_ctls++] = c;
    return KC_OK;
}

static int add_cleanup(const rec_env *env, void (*fn)(void *arg), void *arg)
{
    (void)env;
    if (VFX.n_cleanups == VFX_MAX_CLEANUPS)
        return KC_ERR_NOMEM;
    VFX.cleanup_fn[VFX.n_cleanups] = fn;
    VFX.cleanup_arg[VFX.n_cleanups++] = arg;
    return KC_OK;
}

static void log_line(const rec_env *env, rec_log_level level, const char *logger, const char *msg,
                     const char *const *kv)
{
    (void)env;
    if (level < REC_LOG_ERROR)
        return;
    fprintf(stderr, "[vfx] %s: %s", logger ? logger : "-", msg);
    for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2)
        fprintf(stderr, " %s=%s", kv[i], kv[i + 1]);
    fputc('\n', stderr);
}

/* A failed reconcile is an outcome the tests look at, not noise. */
static void reconcile_error(const ctl_ctx *ctx, int code, const char *message, void *user)
{
    (void)ctx;
    (void)code;
    (void)message;
    (void)user;
}

void vfx_start(const char *label)
{
    memset(&VFX, 0, sizeof VFX);
    rcf_start_client(label);
    inf_factory_opts fo = {.backoff = {.initial = 0.02, .max = 0.1}};
    cr_assert_eq(inf_factory_new(RCF.cli, &fo, &VFX.factory), KC_OK);
    VFX.env.client = RCF.cli;
    VFX.env.factory = VFX.factory;
    VFX.env.identity = "test-replica";
    VFX.env.operator_namespace = VFX_OPERATOR_NS;
    VFX.env.max_concurrent_reconciles = 1;
    VFX.env.ctl_defaults.max_concurrent_reconciles = 1;
    VFX.env.ctl_defaults.hooks.reconcile_error = reconcile_error;
    VFX.env.add_controller = add_controller;
    VFX.env.add_cleanup = add_cleanup;
    VFX.env.log = log_line;
    int rc = vol_setup(&VFX.env);
    cr_assert_eq(rc, KC_OK, "vol_setup: %s", kc_strerror(rc));
    /* vol_setup registers the app's own cleanup first, with the app. */
    cr_assert_geq(VFX.n_cleanups, 1);
    VFX.app = VFX.cleanup_arg[0];
    cr_assert_not_null(VFX.app);
    cr_assert_eq(VFX.app->client, RCF.cli, "the first cleanup's argument is not the vol_app");
    RCF.events = VFX.app->events;
}

void vfx_stop(void)
{
    for (size_t i = 0; i < VFX.n_ctls; i++)
        ctl_stop(VFX.ctls[i]);
    inf_factory_stop(VFX.factory);
    for (size_t i = 0; i < VFX.n_ctls; i++)
        ctl_free(VFX.ctls[i]);
    for (size_t i = VFX.n_cleanups; i-- > 0;)
        VFX.cleanup_fn[i](VFX.cleanup_arg[i]);
    inf_factory_free(VFX.factory);
    RCF.events = NULL;
    rcf_stop();
    memset(&VFX, 0, sizeof VFX);
}

ctl *vfx_controller(const char *name)
{
    for (size_t i = 0; i < VFX.n_ctls; i++)
        if (!strcmp(ctl_name(VFX.ctls[i]), name))
            return VFX.ctls[i];
    cr_assert_fail("no controller %s in the volume app", name);
    return NULL;
}

/* ---- caches -------------------------------------------------------------------- */

void vfx_serve(const char *resource, const char *items)
{
    vfx_serve_events(resource, items, NULL, 0);
}

void vfx_serve_events(const char *resource, const char *items, const char *events, int delay_ms)
{
    size_t i = list_index(resource);
    cr_assert_not(VFX.started, "vfx_serve after vfx_run");
    cr_assert_not(VFX.served[i], "%s served twice", resource);
    VFX.served[i] = true;
    /* The watch first: its prefix is the longer one, and an entry is taken
     * in push order. */
    const char *watch = rcf_fmt("%s?watch=1", lists[i].path);
    if (events) /* the first watch only; a second one (a rewatch) sends nothing */
        rs_push(RCF.srv, &(rs_response){.method = "GET",
                                        .path_prefix = watch,
                                        .body = events,
                                        .delay_ms = delay_ms,
                                        .hold = true});
    rs_push(RCF.srv,
            &(rs_response){.method = "GET", .path_prefix = watch, .hold = true, .times = -1});
    rs_push(RCF.srv, &(rs_response){
                         .method = "GET",
                         .path_prefix = rcf_fmt("%s?", lists[i].path),
                         .body = rcf_fmt("{\"kind\":\"List\",\"apiVersion\":\"v1\",\"metadata\":{"
                                         "\"resourceVersion\":\"10\"},\"items\":[%s]}",
                                         items),
                     });
}

void vfx_cache(store *s, const char *text)
{
    cr_assert_not_null(s);
    cr_assert_eq(store_add(s, rcf_parse(text), NULL), KC_OK);
}

void vfx_run(const char *name)
{
    ctl *c = vfx_controller(name);
    for (size_t i = 0; i < N_LISTS; i++)
        if (!VFX.served[i])
            vfx_serve(lists[i].resource, "");
    VFX.started = true;
    cr_assert_eq(inf_factory_start(VFX.factory), KC_OK);
    cr_assert(inf_factory_wait_for_sync(VFX.factory, 10), "the informers did not sync:%s",
              rcf_describe_requests());
    cr_assert(ctl_wait_for_sync(c, 10), "controller %s did not sync", name);
    cr_assert_eq(ctl_start(c), KC_OK);
}

uint64_t vfx_reconciles(const char *name)
{
    ctl_stats st;
    ctl_stats_get(vfx_controller(name), &st);
    return st.reconcile_success + st.reconcile_error + st.reconcile_requeue +
           st.reconcile_requeue_after;
}

void vfx_wait_reconciles(const char *name, uint64_t n)
{
    struct timespec pause = {0, 5 * 1000 * 1000};
    for (int i = 0; i < 2000 && vfx_reconciles(name) < n; i++)
        nanosleep(&pause, NULL);
    cr_assert_geq(vfx_reconciles(name), n, "[%s] %s: %llu reconciles, want %llu:%s", RCF.label,
                  name, (unsigned long long)vfx_reconciles(name), (unsigned long long)n,
                  rcf_describe_requests());
}
