/*
 * ip_msg - the messages of the network domain's conditions (API.md): each
 * says what is wrong and what makes it right.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ip_internal.h"
#include "kc_error.h"
#include "rec_util.h"

int ip_msg_pool_not_found(const char *pool_name, char **out)
{
    return rec_msg(out, "IPPool %s does not exist; the claim gets an address once it is created",
                   pool_name);
}

int ip_msg_pool_terminating(const char *pool_name, char **out)
{
    return rec_msg(out, "IPPool %s is being deleted and hands out no new addresses", pool_name);
}

int ip_msg_pool_invalid(const char *pool_name, const char *why, char **out)
{
    return rec_msg(out, "IPPool %s cannot be used: %s", pool_name, why ? why : "invalid spec");
}

int ip_msg_exhausted(const char *pool_name, int64_t total, char **out)
{
    return rec_msg(
        out,
        "IPPool %s has no free address: all %lld allocatable addresses are held; the claim "
        "gets one as soon as one is released",
        pool_name, (long long)total);
}

int ip_msg_in_use(const char *addr, const char *pool_name, const char *holder_ns,
                  const char *holder_name, const char *holder_pool, char **out)
{
    const char *ns = holder_ns ? holder_ns : "?", *name = holder_name ? holder_name : "?";
    if (holder_pool && *holder_pool && strcmp(holder_pool, pool_name) != 0)
        return rec_msg(out,
                       "%s of IPPool %s is held by IPClaim %s/%s through IPPool %s, which "
                       "overlaps it in the same network; the claim gets it once that claim "
                       "releases it",
                       addr, pool_name, ns, name, holder_pool);
    return rec_msg(out,
                   "%s of IPPool %s is held by IPClaim %s/%s; the claim gets it once that claim "
                   "releases it",
                   addr, pool_name, ns, name);
}

int ip_msg_address_refused(const char *addr, const char *pool_name, const char *why, char **out)
{
    return rec_msg(out, "spec.address %s cannot be allocated from IPPool %s: %s", addr, pool_name,
                   why ? why : "it is not allocatable");
}

int ip_msg_allocated(const char *cidr_addr, const char *pool_name, char **out)
{
    return rec_msg(out, "holds %s of IPPool %s", cidr_addr, pool_name);
}

int ip_msg_pool_in_use(int64_t n_held, const char *const *holders, size_t n_holders, char **out)
{
    size_t len = 1;
    for (size_t i = 0; i < n_holders; i++)
        len += strlen(holders[i]) + 2;
    char *list = malloc(len);
    if (!list)
        return KC_ERR_NOMEM;
    list[0] = '\0';
    for (size_t i = 0; i < n_holders; i++) {
        if (i > 0)
            strcat(list, ", ");
        strcat(list, holders[i]);
    }
    int64_t more = n_held - (int64_t)n_holders;
    int rc;
    if (n_holders == 0)
        /* Only creations of ours in flight: their Reservations not seen yet. */
        rc = rec_msg(out,
                     "%lld %s being reserved (Reservations not seen yet); the IPPool is "
                     "deleted once that is settled",
                     (long long)n_held, n_held == 1 ? "address is" : "addresses are");
    else if (more > 0)
        rc = rec_msg(out,
                     "%lld %s still held by claims: %s and %lld more; the IPPool is deleted once "
                     "they are released",
                     (long long)n_held, n_held == 1 ? "address is" : "addresses are", list,
                     (long long)more);
    else
        rc = rec_msg(
            out, "%lld %s still held by claims: %s; the IPPool is deleted once they are released",
            (long long)n_held, n_held == 1 ? "address is" : "addresses are", list);
    free(list);
    return rc;
}

int ip_msg_pool_valid(const ipam_pool *pool, char **out)
{
    ipam_u128 total = ipam_pool_total(pool);
    if (total <= (ipam_u128)INT64_MAX)
        return rec_msg(out, "the spec is valid");
    char buf[IPAM_U128_STRLEN];
    return rec_msg(out,
                   "the spec is valid; the pool has %s addresses, more than status.total can show: "
                   "total and available are capped at %lld",
                   ipam_u128_format(total, buf), (long long)INT64_MAX);
}

int ip_msg_overlapping(const char *network, const char *const *names, size_t n, char **out)
{
    if (n == 0)
        return rec_msg(out, "no other IPPool of network %s shares an address with it", network);
    char list[512] = "";
    size_t shown = n < 5 ? n : 5, len = 0;
    for (size_t i = 0; i < shown && len < sizeof list; i++) {
        int w = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (n > shown)
        return rec_msg(out,
                       "shares addresses with IPPool %s and %zu more of network %s; an address "
                       "held through one of them is not available in the others",
                       list, n - shown, network);
    return rec_msg(out,
                   "shares addresses with IPPool %s of network %s; an address held through one "
                   "of them is not available in the others",
                   list, network);
}
