/*
 * ip_domain - the network domain as the core runs it: the table of
 * rec_domain_def (names, reasons, messages, and adapters from the core's
 * slot strings to ipam addresses) and ip_setup. README.md in this folder
 * says what a user sees.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ip_internal.h"
#include "kc_error.h"
#include "rec_reserve.h"
#include "rec_util.h"

/* ---- the pool --------------------------------------------------------------- */

static int ip_domain_pool_open(json_object *pool_obj, void **pool, char **problem)
{
    *pool = NULL;
    *problem = NULL;
    ipam_pool *p = NULL;
    ipam_error err = IPAM_ERROR_INIT;
    int rc = ip_pool_from_obj(pool_obj, &p, &err);
    if (rc == KC_OK) {
        *pool = p;
    } else if (rc != KC_ERR_NOMEM) {
        *problem = err.message; /* NULL when memory ran out: a generic message */
        err.message = NULL;
        rc = KC_OK;
    }
    ipam_error_clear(&err);
    return rc;
}

static void ip_domain_pool_close(void *pool)
{
    ipam_pool_free(pool);
}

static bool ip_domain_pool_contains(const void *pool, const char *slot)
{
    ipam_addr a;
    return slot && ipam_addr_parse(slot, &a) == 0 && ipam_contains(pool, a);
}

/* ---- slots ------------------------------------------------------------------- */

static int ip_domain_check_wanted(const void *pool, const char *pool_name, const char *wanted,
                                  char **canonical, const char **reason, char **message)
{
    *canonical = NULL;
    *message = NULL;
    ipam_addr a;
    if (ipam_addr_parse(wanted, &a) != 0) {
        *reason = IP_REASON_INVALID_SPEC;
        char *m = NULL;
        if (asprintf(&m, "spec.address %s is not an IP address", wanted) < 0)
            return KC_ERR_NOMEM;
        *message = m;
        return REC_NO_SLOT;
    }
    ipam_check_result chk = ipam_check(pool, a);
    if (chk != IPAM_ADDR_OK) {
        *reason = ip_pool_check_reason(chk);
        char *why = NULL;
        int rc = ipam_explain(pool, a, &why);
        if (rc == KC_OK)
            rc = ip_msg_address_refused(wanted, pool_name, why, message);
        free(why);
        return rc == KC_OK ? REC_NO_SLOT : rc;
    }
    char buf[IPAM_ADDR_STRLEN];
    *canonical = strdup(ipam_addr_format(a, buf));
    return *canonical ? KC_OK : KC_ERR_NOMEM;
}

static int ip_domain_pick(const void *pool, const void *used, const void *requested,
                          const char *const *skip, size_t n_skip, const char *claim_uid,
                          const void *want, char **slot)
{
    (void)want;
    const ip_pool_set *u = used, *r = requested;
    ipam_addr *addrs = n_skip ? malloc(n_skip * sizeof *addrs) : NULL;
    if (n_skip && !addrs)
        return KC_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < n_skip; i++)
        if (ipam_addr_parse(skip[i], &addrs[n]) == 0)
            n++;
    ipam_addr a;
    bool found = ip_pool_pick(pool, u->used, r->used, addrs, n, ipam_hint(pool, claim_uid), &a);
    free(addrs);
    if (!found)
        return REC_NO_SLOT;
    char buf[IPAM_ADDR_STRLEN];
    *slot = strdup(ipam_addr_format(a, buf));
    return *slot ? KC_OK : KC_ERR_NOMEM;
}

static size_t ip_domain_choose_keep(const char *const *held, size_t n, const char *status_slot,
                                    const char *wanted)
{
    ipam_addr stack[8];
    ipam_addr *addrs = n <= 8 ? stack : malloc(n * sizeof *addrs);
    if (!addrs)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ipam_addr_parse(held[i], &addrs[i]) != 0)
            memset(&addrs[i], 0xff, sizeof addrs[i]); /* sorts last */
    ipam_addr sa, wa;
    bool has_sa = status_slot && ipam_addr_parse(status_slot, &sa) == 0;
    bool has_wa = wanted && ipam_addr_parse(wanted, &wa) == 0;
    size_t keep = ip_pool_choose_keep(addrs, n, has_sa ? &sa : NULL, has_wa ? &wa : NULL);
    if (addrs != stack)
        free(addrs);
    return keep;
}

/* ---- status ------------------------------------------------------------------ */

static char *ip_domain_status_slot(json_object *status)
{
    ipam_addr a;
    if (!ip_status_address(status, &a))
        return NULL;
    char buf[IPAM_ADDR_STRLEN];
    return strdup(ipam_addr_format(a, buf));
}

static const char *ip_domain_status_display(json_object *status)
{
    return rec_obj_str(status, "address");
}

static int ip_domain_claim_ready(json_object *cached_status, const char *pool_name,
                                 json_object *pool_obj, const void *pool, const char *slot,
                                 int64_t generation, time_t now, json_object **out, char **event)
{
    *event = NULL;
    ipam_addr a;
    if (ipam_addr_parse(slot, &a) != 0)
        return KC_ERR_INVALID_ARG;
    int rc =
        ip_status_claim_ready(cached_status, pool_name, pool_obj, pool, a, generation, now, out);
    if (rc != KC_OK)
        return rc;
    if (asprintf(event, "Allocated %s from IPPool %s", rec_obj_str(*out, "address"), pool_name) <
        0) {
        *event = NULL;
        json_object_put(*out);
        *out = NULL;
        return KC_ERR_NOMEM;
    }
    return KC_OK;
}

static int ip_domain_msg_exhausted(const char *pool_name, const void *pool, char **out)
{
    return ip_msg_exhausted(pool_name, ipam_pool_total_i64(pool), out);
}

static int ip_domain_msg_pool_valid(const void *pool, char **out)
{
    return ip_msg_pool_valid(pool, out);
}

const rec_domain_def ip_domain_def = {
    .api_version = "provisio.dev/v1alpha1",
    .claim_kind = "IPClaim",
    .pool_kind = REC_POOL_KIND_IP,
    .claims_ref = {.group = "provisio.dev", .version = "v1alpha1", .resource = "ipclaims"},
    .pools_ref = {.group = "provisio.dev", .version = "v1alpha1", .resource = "ippools"},
    .claim_controller = "ipclaim",
    .pool_controller = "ippool",
    .resv_controller = "ipreservation",
    .resv_selector = IP_RESERVATION_SELECTOR,
    .slot_noun = "address",
    .claim_pool_path = "spec.pool",
    .claim_slot_path = "spec.address",
    .pool_scope_path = "spec.network",
    .pool_scope_default = IP_DEFAULT_NETWORK,
    .resv_scope_key = "network",
    .resv_scope_label = IP_LABEL_NETWORK,

    .reason_ready = IP_REASON_ALLOCATED,
    .reason_not_found = IP_REASON_POOL_NOT_FOUND,
    .reason_pool_gone = IP_REASON_POOL_TERMINATING,
    .reason_invalid = IP_REASON_INVALID_SPEC,
    .reason_exhausted = IP_REASON_POOL_EXHAUSTED,
    .reason_in_use = IP_REASON_ADDRESS_IN_USE,
    .reason_lost = "AddressLost",
    .reason_valid = IP_REASON_VALID,
    .reason_terminating = IP_REASON_TERMINATING,

    .msgs =
        {
            .pool_not_found = ip_msg_pool_not_found,
            .pool_terminating = ip_msg_pool_terminating,
            .pool_invalid = ip_msg_pool_invalid,
            .exhausted = ip_domain_msg_exhausted,
            .in_use = ip_msg_in_use,
            .pool_in_use = ip_msg_pool_in_use,
            .pool_valid = ip_domain_msg_pool_valid,
        },

    .pool_open = ip_domain_pool_open,
    .pool_close = ip_domain_pool_close,
    .pool_contains = ip_domain_pool_contains,
    .set_new = ip_pool_set_new,
    .set_free = ip_pool_set_free,
    .set_update = ip_pool_set_update,
    .set_counts = ip_pool_set_counts,
    .scope_counts = ip_pool_scope_counts,
    .pool_overlap = ip_pool_overlap,
    .slot_name = ip_names_slot,
    .check_wanted = ip_domain_check_wanted,
    .pick = ip_domain_pick,
    .choose_keep = ip_domain_choose_keep,
    .status_slot = ip_domain_status_slot,
    .status_display = ip_domain_status_display,
    .claim_ready = ip_domain_claim_ready,
    .claim_pending = rec_status_not_ready,
    .pool_status = ip_status_pool,
};

int ip_setup(const rec_env *env)
{
    return rec_domain_setup(env, &ip_domain_def);
}
