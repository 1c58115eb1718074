/*
 * dev_domain - the device domain as the core runs it: the table of
 * rec_domain_def (names, reasons, messages, adapters) and dev_setup, which
 * also starts the node-capacity controller (dev_node.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev_internal.h"
#include "dev_dra.h"
#include "dev_node.h"
#include "kc_error.h"
#include "rec_reserve.h"
#include "rec_util.h"

static int dev_domain_pool_open(json_object *pool_obj, void **pool, char **problem)
{
    dev_pool *p = NULL;
    int rc = dev_pool_from_obj(pool_obj, time(NULL), &p, problem);
    *pool = p;
    return rc;
}

static void dev_domain_pool_close(void *pool)
{
    dev_pool_free(pool);
}

static bool dev_domain_pool_contains(const void *pool, const char *slot)
{
    return dev_pool_find(pool, slot) != NULL;
}

static double dev_domain_pool_recheck(const void *pool)
{
    const dev_pool *p = pool;
    return p->wants_agent ? 30.0 : 0;
}

static int dev_domain_want_open(json_object *claim_obj, void **want, char **problem)
{
    dev_want *w = NULL;
    int rc = dev_want_from_obj(claim_obj, &w, problem);
    *want = w;
    return rc;
}

static void dev_domain_want_close(void *want)
{
    dev_want_free(want);
}

static int64_t dev_domain_want_count(const void *want)
{
    return ((const dev_want *)want)->count;
}

static int dev_domain_check_wanted(const void *pool, const char *pool_name, const char *wanted,
                                   char **canonical, const char **reason, char **message)
{
    (void)pool;
    (void)pool_name;
    (void)wanted;
    *canonical = NULL;
    *reason = DEV_REASON_INVALID_SPEC;
    return rec_msg(message, "a DeviceClaim cannot name a device") == KC_OK ? REC_NO_SLOT
                                                                           : KC_ERR_NOMEM;
}

static const char *dev_domain_status_display(json_object *status)
{
    (void)status;
    return NULL;
}

static int dev_domain_claim_ready(json_object *cached_status, const char *pool_name,
                                  json_object *pool_obj, const void *pool, const char *slot,
                                  int64_t generation, time_t now, json_object **out, char **event)
{
    return dev_status_claim_ready(cached_status, pool_name, pool_obj, pool, NULL, &slot, 1,
                                  generation, now, out, event);
}

/* ---- messages ------------------------------------------------------------------- */

static int msg_pool_not_found(const char *pool_name, char **out)
{
    return rec_msg(out, "DevicePool %s, which the claim held devices of, does not exist",
                   pool_name);
}

static int msg_pool_terminating(const char *pool_name, char **out)
{
    return rec_msg(out, "DevicePool %s is being deleted", pool_name);
}

static int msg_pool_invalid(const char *pool_name, const char *why, char **out)
{
    return rec_msg(out, "DevicePool %s cannot be used: %s", pool_name,
                   why ? why : "its spec is invalid");
}

static int msg_exhausted(const char *pool_name, const void *pool, char **out)
{
    const dev_pool *p = pool;
    return rec_msg(out,
                   "DevicePool %s has not enough free healthy matching devices (%zu healthy of "
                   "%zu); waiting for devices to be freed or to appear",
                   pool_name, p ? p->n_healthy : 0, p ? p->n : 0);
}

static int msg_in_use(const char *slot, const char *pool_name, const char *ns, const char *name,
                      const char *holder_pool, char **out)
{
    (void)holder_pool; /* devices are not shared between pools */
    return rec_msg(out, "device %s of DevicePool %s is held by DeviceClaim %s/%s", slot, pool_name,
                   ns ? ns : "", name ? name : "");
}

static int msg_pool_in_use(int64_t n_held, const char *const *holders, size_t n, char **out)
{
    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    if (!f)
        return KC_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? ", " : "", holders[i]);
    fclose(f);
    if (!list)
        return KC_ERR_NOMEM;
    int rc = n == 0 ? rec_msg(out,
                              "the pool is being deleted but %lld device%s being reserved "
                              "(Reservations not seen yet); it goes once that is settled",
                              (long long)n_held, n_held == 1 ? " is" : "s are")
                    : rec_msg(out,
                              "the pool is being deleted but %lld device%s still held (%s%s); it "
                              "goes when those DeviceClaims are deleted",
                              (long long)n_held, n_held == 1 ? " is" : "s are", list,
                              (size_t)n_held > n ? ", ..." : "");
    free(list);
    return rc;
}

static int msg_pool_valid(const void *pool, char **out)
{
    const dev_pool *p = pool;
    return rec_msg(out, "%zu device%s on node %s (%zu healthy), published as %s", p->n,
                   p->n == 1 ? "" : "s", p->node, p->n_healthy, dev_publish_name(p->publish));
}

/* ---- hooks: node capacity (dev_node.c) and DRA (dev_dra.c) -------------------- */

typedef struct dev_hooks {
    dev_node *node;
    dev_dra *dra;
} dev_hooks;

static int dev_domain_pool_check(void *user, json_object *pool_obj, const void *pool,
                                 const char **reason, char **message)
{
    *reason = NULL;
    *message = NULL;
    return user ? dev_node_pool_check(((dev_hooks *)user)->node, pool_obj, pool, reason, message)
                : KC_OK; /* a detached domain (tests): no nodes */
}

static ctl_result dev_domain_pool_finalize(void *user, json_object *pool_obj)
{
    return user ? dev_node_pool_finalize(((dev_hooks *)user)->node, pool_obj) : ctl_done();
}

static ctl_result dev_domain_release_gate(void *user, json_object *claim_obj)
{
    return user ? dev_dra_release_gate(((dev_hooks *)user)->dra, claim_obj) : ctl_done();
}

const rec_domain_def dev_domain_def = {
    .api_version = "provisio.dev/v1alpha1",
    .claim_kind = "DeviceClaim",
    .pool_kind = REC_POOL_KIND_DEVICE,
    .claims_ref = {.group = "provisio.dev", .version = "v1alpha1", .resource = "deviceclaims"},
    .pools_ref = {.group = "provisio.dev", .version = "v1alpha1", .resource = "devicepools"},
    /* A DevicePool lists its devices and their holders: ~10 KB of JSON,
     * ~100 KB as a json-c tree; 100 pools of 100 devices were most of the
     * operator's heap. */
    .pools_compact = true,
    .claim_controller = "deviceclaim",
    .pool_controller = "devicepool",
    .resv_controller = "devicereservation",
    .resv_selector = DEV_RESERVATION_SELECTOR,
    .slot_noun = "device",
    .claim_pool_path = NULL,
    .claim_group_path = "spec.resourceName",
    .pool_group_path = "spec.resourceName",
    .status_pool_path = "status.pool",
    .claim_slot_path = NULL,

    .reason_ready = DEV_REASON_ALLOCATED,
    .reason_not_found = DEV_REASON_POOL_NOT_FOUND,
    .reason_pool_gone = DEV_REASON_POOL_TERMINATING,
    .reason_invalid = DEV_REASON_INVALID_SPEC,
    .reason_exhausted = DEV_REASON_INSUFFICIENT,
    .reason_in_use = DEV_REASON_INSUFFICIENT,
    .reason_lost = DEV_REASON_LOST,
    .reason_valid = DEV_REASON_VALID,
    .reason_terminating = DEV_REASON_TERMINATING,
    .reason_replaced = DEV_REASON_REPLACED,

    .msgs =
        {
            .pool_not_found = msg_pool_not_found,
            .pool_terminating = msg_pool_terminating,
            .pool_invalid = msg_pool_invalid,
            .exhausted = msg_exhausted,
            .in_use = msg_in_use,
            .pool_in_use = msg_pool_in_use,
            .pool_valid = msg_pool_valid,
        },

    .pool_open = dev_domain_pool_open,
    .pool_close = dev_domain_pool_close,
    .pool_contains = dev_domain_pool_contains,
    .pool_recheck = dev_domain_pool_recheck,
    .pool_changed = dev_pool_changed,
    .pool_check = dev_domain_pool_check,
    .pool_finalize = dev_domain_pool_finalize,
    .claim_release_gate = dev_domain_release_gate,
    .want_open = dev_domain_want_open,
    .want_close = dev_domain_want_close,
    .want_count = dev_domain_want_count,
    .slot_replace = dev_slot_replace,
    .choose_pool = dev_choose_pool,
    .pool_fit = dev_pool_fit,
    .set_new = dev_set_new,
    .set_free = dev_set_free,
    .set_update = dev_set_update,
    .set_counts = dev_set_counts,
    .detail_free = dev_detail_free,
    .slot_name = dev_slot_name,
    .check_wanted = dev_domain_check_wanted,
    .pick = dev_pick,
    .choose_keep = dev_choose_keep,
    .status_slot = dev_status_slot,
    .status_slots = dev_status_slots,
    .status_display = dev_domain_status_display,
    .claim_ready = dev_domain_claim_ready,
    .claim_ready_n = dev_status_claim_ready,
    .claim_pending = rec_status_not_ready,
    .pool_status = dev_status_pool,
    .pool_status_counts_only = dev_status_pool_counts_only,
};

int dev_setup(const rec_env *env)
{
    dev_hooks *h = calloc(1, sizeof *h);
    if (!h)
        return KC_ERR_NOMEM;
    int rc = env->add_cleanup(env, free, h);
    if (rc != KC_OK) {
        free(h);
        return rc;
    }
    if ((rc = dev_node_setup(env, &dev_domain_def.pools_ref, &h->node)) != KC_OK ||
        (rc = dev_dra_setup(env, &dev_domain_def.pools_ref, &dev_domain_def.claims_ref, &h->dra)) !=
            KC_OK)
        return rc;
    return rec_domain_setup_user(env, &dev_domain_def, h);
}
