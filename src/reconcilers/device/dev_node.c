/*
 * dev_node - node capacity (API.md "Devices", publish: NodeCapacity): for
 * every node, status.capacity[resourceName] is the healthy devices of its
 * NodeCapacity DevicePools and status.allocatable[resourceName] the healthy
 * devices no DeviceClaim holds, both summed over the pools of one resource
 * on the node and read from the pools' status (capacity, available), which
 * the devicepool controller keeps.
 *
 * One controller, "devicenode", keyed by node name: it runs when a pool of
 * the node changes and when the node changes (a kubelet that restarts
 * rewrites status.capacity and drops extended resources it does not know:
 * the next reconcile puts them back). A key is removed when no live
 * NodeCapacity pool of the node publishes it any more: at once when a pool
 * starts deleting or changes spec.publish (remembered per node until the
 * patch succeeds), and once more, synchronously, before a deleted pool's
 * finalizer goes (dev_node_pool_finalize), so a crash between the two
 * cannot leave a key behind.
 *
 * What a node needs of its pools (resource, whether it publishes, capacity
 * and available from status) is kept per pool by the pool handlers
 * (pool_sum), so a node's reconcile does not read its pools' objects
 * (DevicePools are cached as compact text: each read is a parse).
 *
 * Writes are JSON merge patches of nodes/status with only the keys of the
 * resources concerned (null removes one); nothing else of the node's status
 * is touched. A patch that only changes numbers (every key is already there,
 * none goes) waits until DEV_NODE_PATCH_INTERVAL has passed since the node's
 * last patch: a storm of allocations on a node's pools becomes one patch a
 * second, written from the pools as they are then. Keys added or removed,
 * and the finalize of a deleted pool, go at once.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev_node.h"
#include "inf_map.h"
#include "kc_error.h"
#include "kc_quantity.h"
#include "pv_clock.h"
#include "pv_json.h"
#include "rec_util.h"

#define DEV_IDX_NODE "dev-by-node"
#define DEV_NODE_CONTROLLER "devicenode"
#define DEV_NODE_PATCH_INTERVAL 1.0 /* s between count-only patches of one node */

static const kc_ref nodes_ref = {.group = "", .version = "v1", .resource = "nodes"};

/* When a node was last patched (monotonic s). */
typedef struct node_paced {
    double last_patch;
    char node[];
} node_paced;

/* What a node's reconcile reads of one pool, from its last cached version. */
typedef struct pool_sum {
    char *node, *resource; /* NULL when the pool has none */
    bool live;             /* publishes capacity and is not being deleted */
    bool counted;          /* status.capacity is set */
    int64_t capacity, available;
    char name[];
} pool_sum;

/* Resource names to take off one node. */
typedef struct gone_list {
    char **names;
    size_t n;
    char node[];
} gone_list;

struct dev_node {
    rec_env env;
    kc_client *client;
    inf_informer *pools, *nodes;
    store *pools_store, *nodes_store;
    ctl *c;
    pthread_mutex_t mu;
    inf_map gone;  /* node -> gone_list */
    inf_map paced; /* node -> node_paced; nodes patched at least once */
    inf_map sums;  /* pool name -> pool_sum */
    inf_handler *h_pools;
};

static const char *nz(const char *s)
{
    return s ? s : "";
}

static bool pool_publishes_capacity(json_object *pool)
{
    const char *pub = rec_obj_str(pool, "spec.publish");
    if (pub)
        return !strcmp(pub, "NodeCapacity");
    json_object *adv = rec_obj_at(pool, "spec.advertise");
    return !(adv && json_object_is_type(adv, json_type_boolean) && !json_object_get_boolean(adv));
}

/* A live pool that publishes node capacity. */
static bool pool_live_capacity(json_object *pool)
{
    return !rec_obj_is_deleting(pool) && pool_publishes_capacity(pool);
}

/* n->mu held. */
static void gone_add_locked(dev_node *n, const char *node, const char *resource)
{
    if (!node || !resource)
        return;
    gone_list *g = inf_map_get(&n->gone, node);
    if (!g) {
        size_t len = strlen(node);
        g = calloc(1, sizeof *g + len + 1);
        if (g) {
            memcpy(g->node, node, len + 1);
            if (inf_map_put(&n->gone, g->node, g) != 0) {
                free(g);
                g = NULL;
            }
        }
    }
    bool have = false;
    for (size_t i = 0; g && i < g->n && !have; i++)
        have = !strcmp(g->names[i], resource);
    if (g && !have) {
        char **nn = realloc(g->names, (g->n + 1) * sizeof *nn);
        if (nn) {
            g->names = nn;
            if ((nn[g->n] = strdup(resource)))
                g->n++;
        }
    }
}

static void gone_add(dev_node *n, const char *node, const char *resource)
{
    pthread_mutex_lock(&n->mu);
    gone_add_locked(n, node, resource);
    pthread_mutex_unlock(&n->mu);
}

/* Take the gone list of node (caller frees names and the array); n->mu held. */
static void gone_take_locked(dev_node *n, const char *node, char ***names, size_t *count)
{
    *names = NULL;
    *count = 0;
    gone_list *g = inf_map_remove(&n->gone, node);
    if (!g)
        return;
    *names = g->names;
    *count = g->n;
    free(g);
}

static void strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* How long a count-only patch of node must still wait (0: none). */
static double paced_wait(dev_node *n, const char *node, double now)
{
    double wait = 0;
    pthread_mutex_lock(&n->mu);
    node_paced *p = inf_map_get(&n->paced, node);
    if (p && now - p->last_patch < DEV_NODE_PATCH_INTERVAL)
        wait = DEV_NODE_PATCH_INTERVAL - (now - p->last_patch);
    pthread_mutex_unlock(&n->mu);
    return wait;
}

/* node was patched at now (out of memory: the next patch is not paced). */
static void paced_note(dev_node *n, const char *node, double now)
{
    pthread_mutex_lock(&n->mu);
    node_paced *p = inf_map_get(&n->paced, node);
    if (!p) {
        size_t len = strlen(node);
        p = calloc(1, sizeof *p + len + 1);
        if (p) {
            memcpy(p->node, node, len + 1);
            if (inf_map_put(&n->paced, p->node, p) != 0) {
                free(p);
                p = NULL;
            }
        }
    }
    if (p)
        p->last_patch = now;
    pthread_mutex_unlock(&n->mu);
}

static void paced_forget(dev_node *n, const char *node)
{
    pthread_mutex_lock(&n->mu);
    free(inf_map_remove(&n->paced, node));
    pthread_mutex_unlock(&n->mu);
}

/* ---- what the node controller knows of each pool ---------------------------------- */

static int64_t status_int(json_object *pool, const char *path)
{
    json_object *v = rec_obj_at(pool, path);
    return v && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
}

static void sum_free(pool_sum *ps)
{
    if (!ps)
        return;
    free(ps->node);
    free(ps->resource);
    free(ps);
}

static char *dup_or_null(const char *v)
{
    return v ? strdup(v) : NULL;
}

/* What the node controller keeps of pool (a cached version), or NULL (no
 * name, out of memory). */
static pool_sum *sum_new(json_object *pool)
{
    const char *name = rec_obj_str(pool, "metadata.name");
    if (!name)
        return NULL;
    size_t len = strlen(name);
    pool_sum *ps = calloc(1, sizeof *ps + len + 1);
    const char *node = rec_obj_str(pool, "spec.nodeName");
    const char *res = rec_obj_str(pool, "spec.resourceName");
    if (ps) {
        memcpy(ps->name, name, len + 1);
        ps->node = dup_or_null(node);
        ps->resource = dup_or_null(res);
        ps->live = pool_live_capacity(pool);
        ps->counted = rec_obj_at(pool, "status.capacity") != NULL;
        ps->capacity = status_int(pool, "status.capacity");
        ps->available = status_int(pool, "status.available");
        if ((node && !ps->node) || (res && !ps->resource)) {
            sum_free(ps);
            ps = NULL;
        }
    }
    return ps;
}

/* n->mu held: ps (from sum_new, consumed) replaces its pool's summary; NULL
 * (out of memory) keeps the one before, which the pool's next version
 * mends. */
static void sum_put_locked(dev_node *n, pool_sum *ps)
{
    if (!ps)
        return;
    sum_free(inf_map_remove(&n->sums, ps->name));
    if (inf_map_put(&n->sums, ps->name, ps) != 0)
        sum_free(ps);
}

/* n->mu held. */
static void sum_drop_locked(dev_node *n, json_object *pool)
{
    const char *name = rec_obj_str(pool, "metadata.name");
    if (name)
        sum_free(inf_map_remove(&n->sums, name));
}

/* ---- handlers ------------------------------------------------------------------ */

static void enqueue_node_of(dev_node *n, json_object *pool)
{
    const char *node = rec_obj_str(pool, "spec.nodeName");
    if (node && n->c)
        (void)ctl_enqueue(n->c, NULL, node);
}

/*
 * A pool's summary and the keys its change takes off its node change under
 * one hold of n->mu, and a node's reconcile reads both under one (node_wants
 * and gone_take_locked): it sees a pool before or after a change, never the
 * old summary with the new key to remove (which it would then drop as still
 * wanted).
 */
static void pools_on_add(json_object *obj, void *user)
{
    dev_node *n = user;
    pool_sum *ps = sum_new(obj);
    pthread_mutex_lock(&n->mu);
    sum_put_locked(n, ps);
    pthread_mutex_unlock(&n->mu);
    enqueue_node_of(n, obj);
}

static void pools_on_update(json_object *old_obj, json_object *new_obj, void *user)
{
    dev_node *n = user;
    if (old_obj == new_obj)
        return;
    pool_sum *ps = sum_new(new_obj);
    pthread_mutex_lock(&n->mu);
    if (pool_live_capacity(old_obj) && !pool_live_capacity(new_obj))
        gone_add_locked(n, rec_obj_str(old_obj, "spec.nodeName"),
                        rec_obj_str(old_obj, "spec.resourceName"));
    sum_put_locked(n, ps);
    pthread_mutex_unlock(&n->mu);
    enqueue_node_of(n, new_obj);
}

static void pools_on_delete(json_object *obj, void *user)
{
    dev_node *n = user;
    pthread_mutex_lock(&n->mu);
    if (pool_publishes_capacity(obj))
        gone_add_locked(n, rec_obj_str(obj, "spec.nodeName"),
                        rec_obj_str(obj, "spec.resourceName"));
    sum_drop_locked(n, obj);
    pthread_mutex_unlock(&n->mu);
    enqueue_node_of(n, obj);
}

/* ---- what a node should show ------------------------------------------------------ */

typedef struct want_res {
    char *name;
    int64_t capacity, allocatable;
} want_res;

static void wants_free(want_res *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(w[i].name);
    free(w);
}

/* The resources node's live pools publish, summed, and (taken) the keys to
 * remove from it, under one hold of n->mu. */
static int node_wants(dev_node *n, const char *node, want_res **out, size_t *n_out, char ***gone,
                      size_t *n_gone)
{
    *out = NULL;
    *n_out = 0;
    *gone = NULL;
    *n_gone = 0;
    want_res *want = NULL;
    size_t nw = 0, cap = 0;
    int rc = KC_OK;
    pthread_mutex_lock(&n->mu);
    size_t pos = 0;
    void *v;
    while (rc == KC_OK && inf_map_next(&n->sums, &pos, NULL, &v)) {
        const pool_sum *ps = v;
        if (!ps->node || strcmp(ps->node, node) || !ps->resource || !ps->live || !ps->counted)
            continue;
        size_t k = 0;
        while (k < nw && strcmp(want[k].name, ps->resource))
            k++;
        if (k == nw) {
            if (nw == cap) {
                size_t nc = cap ? cap * 2 : 4;
                want_res *nv = realloc(want, nc * sizeof *nv);
                if (!nv) {
                    rc = KC_ERR_NOMEM;
                    break;
                }
                want = nv;
                cap = nc;
            }
            want[nw] = (want_res){.name = strdup(ps->resource)};
            if (!want[nw].name) {
                rc = KC_ERR_NOMEM;
                break;
            }
            nw++;
        }
        want[k].capacity += ps->capacity;
        want[k].allocatable += ps->available;
    }
    if (rc == KC_OK)
        gone_take_locked(n, node, gone, n_gone);
    pthread_mutex_unlock(&n->mu);
    if (rc != KC_OK) {
        wants_free(want, nw);
        return rc;
    }
    *out = want;
    *n_out = nw;
    return KC_OK;
}

/* Whether the node's status holds key = value (as a decimal quantity). */
/* Whether the node's field (status.capacity or .allocatable) has key at
 * value: compared as quantities, since the API server gives "3000" back as
 * "3k" (a string compare would patch the node again on every event). */
static bool node_has(json_object *node, const char *field, const char *key, int64_t value)
{
    json_object *m = rec_obj_at(node, field);
    json_object *v = NULL;
    if (!m || !json_object_object_get_ex(m, key, &v) || !json_object_is_type(v, json_type_string))
        return false;
    int64_t got;
    return kc_quantity_parse(json_object_get_string(v), (size_t)json_object_get_string_len(v),
                             KC_QUANTITY_UNITS, &got, NULL) == KC_OK &&
           got == value;
}

static bool node_has_key(json_object *node, const char *key)
{
    json_object *v = NULL;
    json_object *c = rec_obj_at(node, "status.capacity");
    json_object *a = rec_obj_at(node, "status.allocatable");
    return (c && json_object_object_get_ex(c, key, &v)) ||
           (a && json_object_object_get_ex(a, key, &v));
}

/* PATCH nodes/name/status with patch (consumed). */
static ctl_result patch_node(dev_node *n, const char *name, json_object *patch, const char *what)
{
    kc_ref ref = nodes_ref;
    ref.name = name;
    ref.subresource = "status";
    kc_error err = KC_ERROR_INIT;
    int rc = kc_patch(n->client, &ref, KC_PATCH_MERGE, patch, NULL, NULL, &err);
    json_object_put(patch);
    ctl_result res = ctl_done();
    if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        res = ctl_error(rc, "%s of node %s: %s", what, name,
                        err.message ? err.message : kc_strerror(rc));
    kc_error_clear(&err);
    return res;
}

/* key: null in a merge patch (removes it). */
static bool add_null(json_object *o, const char *key)
{
    return json_object_object_add(o, key, NULL) == 0;
}

static json_object *patch_new(json_object **cap, json_object **alloc)
{
    json_object *p = json_object_new_object();
    json_object *st = p ? pv_json_add_child(p, "status") : NULL;
    *cap = st ? pv_json_add_child(st, "capacity") : NULL;
    *alloc = st ? pv_json_add_child(st, "allocatable") : NULL;
    if (!*cap || !*alloc) {
        json_object_put(p);
        return NULL;
    }
    return p;
}

static ctl_result node_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                 void *user)
{
    (void)ctx;
    (void)namespace_;
    dev_node *n = user;
    if (!inf_has_synced(n->pools) || !inf_has_synced(n->nodes) ||
        (n->h_pools && !inf_handler_has_synced(n->h_pools)))
        return ctl_requeue_after(0.1);
    json_object *node = NULL;
    if (store_get(n->nodes_store, name, &node) != KC_OK) {
        char **g = NULL;
        size_t ng = 0;
        pthread_mutex_lock(&n->mu);
        gone_take_locked(n, name, &g, &ng); /* nothing to take off a node that is not there */
        pthread_mutex_unlock(&n->mu);
        strings_free(g, ng);
        paced_forget(n, name);
        return ctl_done();
    }
    want_res *want = NULL;
    size_t nw = 0, ng = 0;
    char **gone = NULL;
    int rc = node_wants(n, name, &want, &nw, &gone, &ng);
    if (rc != KC_OK) {
        store_obj_put(node);
        return ctl_error(rc, "out of memory");
    }

    json_object *cap = NULL, *alloc = NULL;
    json_object *patch = patch_new(&cap, &alloc);
    /* keys: a key comes or goes, which is never paced */
    bool needed = false, keys = false, ok = patch != NULL;
    for (size_t k = 0; ok && k < nw; k++) {
        if (node_has(node, "status.capacity", want[k].name, want[k].capacity) &&
            node_has(node, "status.allocatable", want[k].name, want[k].allocatable))
            continue;
        keys = keys || !node_has_key(node, want[k].name);
        char c[32], a[32];
        snprintf(c, sizeof c, "%lld", (long long)want[k].capacity);
        snprintf(a, sizeof a, "%lld", (long long)want[k].allocatable);
        ok = pv_json_add_str(cap, want[k].name, c) && pv_json_add_str(alloc, want[k].name, a);
        needed = true;
    }
    for (size_t i = 0; ok && i < ng; i++) {
        bool wanted = false;
        for (size_t k = 0; k < nw && !wanted; k++)
            wanted = !strcmp(want[k].name, gone[i]);
        if (wanted || !node_has_key(node, gone[i]))
            continue;
        ok = add_null(cap, gone[i]) && add_null(alloc, gone[i]);
        needed = keys = true;
    }
    ctl_result res = ctl_done();
    double now = pv_clock_monotonic();
    double wait = ok && needed && !keys ? paced_wait(n, name, now) : 0;
    if (!ok) {
        json_object_put(patch);
        res = ctl_error(KC_ERR_NOMEM, "out of memory");
    } else if (wait > 0) {
        /* Only numbers: the reconcile after the wait patches what they are then. */
        json_object_put(patch);
        res = ctl_requeue_after(wait);
    } else if (needed) {
        res = patch_node(n, name, patch, "publishing device capacity");
        if (res.outcome == CTL_DONE)
            paced_note(n, name, now);
    } else {
        json_object_put(patch);
    }
    if (res.outcome != CTL_DONE)
        for (size_t i = 0; i < ng; i++)
            gone_add(n, name, gone[i]); /* again next time */
    strings_free(gone, ng);
    wants_free(want, nw);
    store_obj_put(node);
    return res;
}

/* ---- the core's hooks -------------------------------------------------------------- */

ctl_result dev_node_pool_finalize(void *user, json_object *pool_obj)
{
    dev_node *n = user;
    if (!n || !pool_publishes_capacity(pool_obj))
        return ctl_done();
    const char *node = rec_obj_str(pool_obj, "spec.nodeName");
    const char *res = rec_obj_str(pool_obj, "spec.resourceName");
    const char *uid = rec_obj_str(pool_obj, "metadata.uid");
    if (!node || !res)
        return ctl_done();
    json_object **pools = NULL;
    size_t np = 0;
    if (store_by_index(n->pools_store, DEV_IDX_NODE, node, &pools, &np) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    bool other = false;
    for (size_t i = 0; i < np && !other; i++)
        other = pool_live_capacity(pools[i]) &&
                strcmp(nz(rec_obj_str(pools[i], "metadata.uid")), nz(uid)) &&
                !strcmp(nz(rec_obj_str(pools[i], "spec.resourceName")), res);
    store_objs_free(pools, np);
    if (other)
        return ctl_done(); /* another pool publishes it: the node controller sums */
    json_object *node_obj = NULL;
    bool has = store_get(n->nodes_store, node, &node_obj) == KC_OK && node_has_key(node_obj, res);
    store_obj_put(node_obj);
    if (!has)
        return ctl_done();
    json_object *cap = NULL, *alloc = NULL;
    json_object *patch = patch_new(&cap, &alloc);
    if (!patch || !add_null(cap, res) || !add_null(alloc, res)) {
        json_object_put(patch);
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    }
    return patch_node(n, node, patch, "removing device capacity");
}

int dev_node_pool_check(void *user, json_object *pool_obj, const void *pool, const char **reason,
                        char **message)
{
    (void)pool;
    dev_node *n = user;
    *reason = NULL;
    *message = NULL;
    const char *node = rec_obj_str(pool_obj, "spec.nodeName");
    if (!n || !node || !inf_has_synced(n->nodes))
        return KC_OK;
    json_object *obj = NULL;
    if (store_get(n->nodes_store, node, &obj) == KC_OK) {
        store_obj_put(obj);
        return KC_OK;
    }
    *reason = "NodeNotFound";
    return rec_msg(message,
                   "node %s does not exist: its devices are not handed out until it joins "
                   "(kubectl get nodes)",
                   node);
}

/* ---- life cycle ---------------------------------------------------------------------- */

static void node_free(void *arg)
{
    dev_node *n = arg;
    size_t pos = 0;
    void *v;
    while (inf_map_next(&n->gone, &pos, NULL, &v)) {
        gone_list *g = v;
        strings_free(g->names, g->n);
        free(g);
    }
    inf_map_close(&n->gone);
    pos = 0;
    while (inf_map_next(&n->paced, &pos, NULL, &v))
        free(v);
    inf_map_close(&n->paced);
    pos = 0;
    while (inf_map_next(&n->sums, &pos, NULL, &v))
        sum_free(v);
    inf_map_close(&n->sums);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

int dev_node_setup(const rec_env *env, const kc_ref *pools_ref, dev_node **out)
{
    *out = NULL;
    dev_node *n = calloc(1, sizeof *n);
    if (!n)
        return KC_ERR_NOMEM;
    n->env = *env;
    n->client = env->client;
    pthread_mutex_init(&n->mu, NULL);
    inf_map_init(&n->gone);
    inf_map_init(&n->paced);
    inf_map_init(&n->sums);
    int rc = env->add_cleanup(env, node_free, n);
    if (rc != KC_OK) {
        node_free(n);
        return rc;
    }
    /* as the device domain caches them (dev_domain.c: pools_compact) */
    inf_opts popts = {.store_mode = INF_STORE_COMPACT};
    inf_opts nopts = {.store_mode = INF_STORE_SHARED};
    if ((rc = inf_factory_get(env->factory, pools_ref, &popts, &n->pools)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &nodes_ref, &nopts, &n->nodes)) != KC_OK)
        return rc;
    n->pools_store = inf_store(n->pools);
    n->nodes_store = inf_store(n->nodes);
    if ((rc = store_add_index(n->pools_store, DEV_IDX_NODE, store_index_field,
                              (void *)"spec.nodeName")) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, DEV_NODE_CONTROLLER, node_reconcile, n, &n->c)) !=
            KC_OK ||
        (rc = ctl_watch_for(n->c, n->nodes)) != KC_OK)
        return rc;
    inf_handler_fns hp = {.on_add = pools_on_add,
                          .on_update = pools_on_update,
                          .on_delete = pools_on_delete,
                          .user = n,
                          .no_resync = true};
    if ((rc = inf_add_handler(n->pools, &hp, &n->h_pools)) != KC_OK)
        return rc;
    *out = n;
    return KC_OK;
}
