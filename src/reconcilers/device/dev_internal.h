/*
 * dev_internal - the device domain's own pure part: a DevicePool as the
 * operator sees it (declared devices, what the node agent reported, health),
 * what a DeviceClaim wants, the used set, choice of pool and devices, status
 * and messages. No requests, no locks: dev_domain.c adapts it to the core's
 * table (rec_domain.h).
 */
#ifndef PROVISIO_DEV_INTERNAL_H
#define PROVISIO_DEV_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "dev.h"
#include "rec_domain.h"

/* ---- reasons (API.md) ------------------------------------------------------ */
#define DEV_REASON_ALLOCATED "Allocated"              /* claim: Ready=True */
#define DEV_REASON_NO_MATCH "NoMatchingDevices"       /* claim: no pool ever could */
#define DEV_REASON_INSUFFICIENT "InsufficientDevices" /* claim: a pool could, not now */
#define DEV_REASON_POOL_NOT_FOUND "PoolNotFound"      /* claim: the pool it held from */
#define DEV_REASON_POOL_TERMINATING "PoolTerminating" /* claim */
#define DEV_REASON_INVALID_SPEC "InvalidSpec"         /* claim or pool */
#define DEV_REASON_VALID "Valid"                      /* pool: Ready=True */
#define DEV_REASON_TERMINATING "Terminating"          /* pool being deleted, in use */
#define DEV_REASON_UNHEALTHY "DeviceUnhealthy"        /* claim: DevicesHealthy=False */
#define DEV_REASON_HEALTHY "DevicesHealthy"           /* claim: DevicesHealthy=True */
#define DEV_REASON_REPLACED "DeviceReplaced"          /* event */
#define DEV_REASON_LOST "DeviceLost"                  /* event */
#define DEV_REASON_NO_AGENT "NoAgent"                 /* pool: AgentReporting=False */
#define DEV_REASON_REPORTING "Reporting"              /* pool: AgentReporting=True */

#define DEV_COND_HEALTHY "DevicesHealthy"
#define DEV_COND_AGENT "AgentReporting"

#define DEV_RESERVATION_SELECTOR "provisio.dev/pool-kind=DevicePool"
#define DEV_AGENT_STALE 120 /* s: an agent report older than this counts as none */
#define DEV_MAX_DEVICES 2048

typedef enum dev_publish {
    DEV_PUBLISH_NODE_CAPACITY,
    DEV_PUBLISH_RESOURCE_SLICE,
    DEV_PUBLISH_NONE,
} dev_publish;

typedef struct dev_attr {
    char *key, *value;
} dev_attr;

typedef struct dev_device {
    char *id;
    bool healthy;
    bool discovered;
    char *message; /* why unhealthy, or NULL */
    dev_attr *attrs;
    size_t n_attrs;
} dev_device;

/* A DevicePool as the operator uses it: devices sorted by id. */
typedef struct dev_pool {
    char *name, *node, *resource;
    dev_publish publish;
    bool wants_agent; /* a device has a path or spec.discover is set */
    bool agent_fresh; /* status.agent reported within DEV_AGENT_STALE s */
    dev_device *devs;
    size_t n;
    size_t n_healthy;
    uint64_t serial; /* unique to this opening: dev_set's memo tells pools apart by it */
} dev_pool;

/* What a DeviceClaim wants. */
typedef struct dev_want {
    char *resource;
    char *node; /* NULL: any */
    int64_t count;
    bool replace;
    dev_attr *sel;
    size_t n_sel;
} dev_want;

/* ---- dev_pool.c ---------------------------------------------------------------- */
/* The pool of pool_obj (borrowed; a store object) at now. An unusable spec:
 * *out NULL and *problem (malloc'd). 0 or KC_ERR_NOMEM. */
int dev_pool_from_obj(json_object *pool_obj, time_t now, dev_pool **out, char **problem);
void dev_pool_free(dev_pool *p);
/* The device of id, or NULL. */
const dev_device *dev_pool_find(const dev_pool *p, const char *id);
bool dev_device_matches(const dev_device *dev, const dev_want *w);
const char *dev_publish_name(dev_publish p);

int dev_want_from_obj(json_object *claim_obj, dev_want **out, char **problem);
void dev_want_free(dev_want *w);

/* ---- dev_set.c: the used set (id -> "namespace/name" of the holder) --------- */
int dev_set_new(void **set);
void dev_set_free(void *set);
int dev_set_update(void *set, const char *slot, const char *holder, bool add);
/* The holder of id, or NULL. */
const char *dev_set_holder(const void *set, const char *id);
bool dev_set_has(const void *set, const char *id);
size_t dev_set_count(const void *set);
/* How many healthy devices of p the set does not hold. Remembered per set for
 * the last pool asked about (by p->serial) until the set changes, so that
 * choosing among many pools for many claims does not look every device up
 * each time. set may be NULL (holds nothing). Domain lock held, as for every
 * use of the set: the memo is written even through a const set. */
int64_t dev_set_free_healthy(const void *set, const dev_pool *p);

/* Counts detail (rec_pool_counts.detail): the pool's devices with their
 * holders, for its status. */
typedef struct dev_detail_dev {
    char *id;
    bool healthy, discovered;
    char *message; /* NULL when healthy */
    char *holder;  /* NULL: free */
} dev_detail_dev;

typedef struct dev_detail {
    dev_detail_dev *devs;
    size_t n;
    int64_t unhealthy;
    bool wants_agent, agent_fresh;
    dev_publish publish;
} dev_detail;
void dev_set_counts(void *set, json_object *pool_obj, const void *pool, rec_pool_counts *out);
void dev_detail_free(void *detail);

/* ---- dev_choose.c -------------------------------------------------------------- */
void dev_pool_fit(const void *pool, const void *want, const void *used, const void *requested,
                  const char *const *skip, size_t n_skip, int64_t *fit, int64_t *free_now);
int dev_choose_pool(const rec_pool_view *views, size_t n, const void *want, const char *claim_uid,
                    size_t *chosen, const char **reason, char **message);
int dev_pick(const void *pool, const void *used, const void *requested, const char *const *skip,
             size_t n_skip, const char *claim_uid, const void *want, char **slot);
size_t dev_choose_keep(const char *const *held, size_t n, const char *status_slot,
                       const char *wanted);
bool dev_slot_replace(const void *pool, const void *want, const char *slot);
/* "devicepool.<pool>.<id>" */
int dev_slot_name(const char *pool_name, const char *slot, char **name, char **canonical);

/* ---- dev_status.c -------------------------------------------------------------- */
int dev_status_slots(json_object *status, char ***slots, size_t *n);
char *dev_status_slot(json_object *status);
int dev_status_claim_ready(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                           const void *pool, const void *want, const char *const *slots, size_t n,
                           int64_t generation, time_t now, json_object **out, char **event);
int dev_status_pool(json_object *cached_status, const rec_pool_counts *counts,
                    const char *cond_status, const char *reason, const char *message,
                    int64_t generation, time_t now, json_object **out);
bool dev_pool_changed(json_object *old_obj, json_object *new_obj);
/* rec_domain_def.pool_status_counts_only: counts and the devices' holders
 * ("claim") may differ; the devices, their health, conditions may not. */
bool dev_status_pool_counts_only(json_object *cached_status, json_object *new_status);

extern const rec_domain_def dev_domain_def;

#endif
