/*
 * bench_claims - the end-to-end claims benchmark of the network, device and
 * volume domains, against a real API server (bench/run-ip-bench,
 * bench/run-device-bench and bench/run-volume-bench drive it; see those
 * scripts for the whole procedure and the tables they print). --kind ip
 * (default) works on IPClaims, --kind device on DeviceClaims, --kind volume
 * on Volumes; "IPClaim" below stands for any of them, and what the kinds
 * differ in is the claim_kind table (spec, reserved slot, Reservation,
 * status, the operator's further writes).
 *
 *   bench_claims claims  create N IPClaims at once from T threads sharing one
 *                        kc_client, and watch ipclaims of the namespace to
 *                        timestamp each claim's first Ready=True
 *                        (status.conditions). Reports claims/s over the
 *                        whole run (first POST sent -> last Ready seen) and
 *                        the create->Ready latency of each claim (POST sent
 *                        -> watch event with Ready=True received), p50/p99.
 *                        A Volume is Ready (reason Bound) once its PVC is
 *                        Bound, which kube-controller-manager does: its
 *                        binding is in this time.
 *   bench_claims floor   the API server's floor for the same work: the same
 *                        number of writes, issued by a plain writer at the
 *                        same concurrency, with nothing in between (no
 *                        queue, no reads; the only watch is the same
 *                        observer as in the claims run, on the namespace's
 *                        IPClaims, so the instrument costs the API server
 *                        the same on both sides). Each of the N "chains"
 *                        does what the operator (and the node agent) and
 *                        the user do for one claim, one write after another
 *                        (each needs the previous answer's uid/
 *                        resourceVersion, as the operator's do):
 *                          POST   IPClaim           (the user's create)
 *                          POST   Reservation       (1st POST of the operator:
 *                                                    ipnet.<network>.<address>
 *                                                    with spec.network and the
 *                                                    provisio.dev/network label
 *                                                    (the floor's network is
 *                                                    named as its pool),
 *                                                    devicepool.<pool>.dev<i>
 *                                                    or storagepool.<pool>.
 *                                                    <volume uid> with bytes,
 *                                                    admittedUntil and the
 *                                                    provisio.dev/node label)
 *                          POST   PV, PVC           (volume: the 2nd and 3rd
 *                                                    POSTs are the operator's
 *                                                    PersistentVolume vol-<uid>,
 *                                                    local, node affinity,
 *                                                    claimRef, and the PVC of
 *                                                    the Volume's name with
 *                                                    volumeName, owned by it)
 *                          POST   Event             (further POSTs)
 *                          PATCH  Reservation/status (--agent-patches: the
 *                                                    node agent's merge patch,
 *                                                    phase Ready, path, quota;
 *                                                    usedBytes in later ones)
 *                          PATCH  IPClaim           (merge patch of a label
 *                                                    carrying resourceVersion
 *                                                    as a precondition: the
 *                                                    finalizer patch's shape)
 *                          PUT    IPClaim/status    (Ready=True, address;
 *                                                    device: pool, nodeName,
 *                                                    devices [dev<i>], Ready
 *                                                    and DevicesHealthy True;
 *                                                    volume: pool, nodeName,
 *                                                    path, capacityBytes, the
 *                                                    PV and PVC names, Ready
 *                                                    reason Bound; the PUTs
 *                                                    before a chain's last say
 *                                                    Ready=False Provisioning)
 *                          DELETE Reservation       (only if the operator
 *                                                    deleted anything)
 *                        The operator's counts come from its
 *                        rest_client_requests_total (--posts, --patches,
 *                        --puts, --deletes: totals for the N claims, spread
 *                        evenly over the chains), the agents' PATCHes from
 *                        theirs (--agent-patches). Every write changes its
 *                        object (an identical PUT or patch would be a no-op
 *                        for the API server: no etcd write, no watch event),
 *                        as the operator's do. Same kinds, same sizes,
 *                        same CEL validation, same etcd writes: the API
 *                        server and etcd do the same work as for the
 *                        operator, so floor time / claims time is the
 *                        operator's overhead. The floor claims name a pool
 *                        that does not exist and must be written while no
 *                        operator runs (the driver stops it), or it would
 *                        reconcile them.
 *                        Volume: what the floor does not hold is
 *                        kube-controller-manager's binding of each PV and
 *                        PVC (its PV claimRef and status and PVC annotation
 *                        and status updates, from one worker): the floor's
 *                        PV/PVC pairs are real, pre-bound like the
 *                        operator's, so kube-controller-manager binds them
 *                        during the floor too (the same load on the API
 *                        server), but the floor's time (wall_s) ends with
 *                        its own last write. bound_s in its RESULT is the
 *                        time until every floor PVC was seen Bound (a watch
 *                        of the namespace's PVCs), the floor with that
 *                        binding in it. Two simplifications: every PUT is
 *                        the Volume's status (the operator's include the
 *                        StoragePools' ledger PUTs, whose status grows with
 *                        the admissions in flight), and the floor's
 *                        Reservations carry no finalizer (no agent is to
 *                        act on them).
 *   bench_claims cleanup delete what a floor run left (its Reservations by
 *                        the provisio.dev/pool label, its IPClaims by
 *                        deletecollection; volume: its PVCs and PVs too)
 *                        and wait until they are gone.
 *
 * Output: a human summary on stderr and one machine line on stdout,
 *   RESULT mode=claims n=... wall_s=... rate=... p50_ms=... p99_ms=... ...
 *
 * Options (all modes):
 *   -n N              claims (1000)
 *   -t T              threads (16)
 *   --namespace NS    namespace (created if missing) (required)
 *   --kind K          ip (IPClaims, the default), device (DeviceClaims) or
 *                     volume (Volumes)
 *   --pool NAME       ip: IPPool named by the claims (claims: must exist);
 *                     volume claims: spec.pool, or "none" for no spec.pool
 *                     (the operator places them); floor/cleanup: a name no
 *                     pool has, e.g. floor-1, the pool of the floor's
 *                     Reservations (device claims: not used, but required)
 *   --resource R      device: the claims' spec.resourceName, count 1
 *                     (bench.provisio.dev/dev)
 *   --size Q          volume: spec.size, a quantity (1Mi)
 *   --prefix P        claim names P-0 .. P-(N-1) ("c")
 *   --timeout S       claims: give up waiting for Ready after S s (900);
 *                     volume floor: for every PVC Bound
 *   --latencies FILE  claims/floor: one line per claim: index, start,
 *                     created, ready/done (ms since the first start)
 *   --kubeconfig F    else KUBECONFIG / ~/.kube/config
 *   --serial          claims: each thread waits for its claim to be Ready
 *                     before it creates the next (with -t 1: the latency of
 *                     one claim at a time, the "light load" figure)
 * Floor: --posts X --patches Y --puts Z --deletes D (operator totals for N
 * claims; default N, N, N, 0) --agent-patches A (node agents' totals; 0).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_stats.h"
#include "kc_client.h"

#define FLOOR_LABEL_STEP "bench.provisio.dev/step"
#define BENCH_LABEL_RUN "bench.provisio.dev/run"
#define EVENT_COMPONENT "provisio-bench"

typedef enum bench_mode { MODE_CLAIMS, MODE_FLOOR, MODE_CLEANUP } bench_mode;

struct bench_opts;
struct bench;

/* What differs between the claim kinds (--kind): the resource, the claim's
 * spec, the slot a floor chain reserves and its Reservation, the status the
 * operator writes for a Ready claim and its further writes. Everything else
 * is one code path. */
typedef struct claim_kind {
    const char *name;      /* --kind */
    const char *resource;  /* plural of the claim */
    const char *kind;      /* the claim's kind */
    const char *pool_kind; /* the Reservation's spec.pool.kind */
    const char *prefix;    /* of Reservation names: <prefix>.<pool>.<slot>, or
                            * <prefix>.<scope>.<slot> with scope_key */
    /* IPPool: "network" and "provisio.dev/network": a slot is locked once per
     * scope (the pool's network), not per pool; the Reservation carries
     * spec.<scope_key> and the label scope_label, both the scope, as the
     * operator's (rec_domain.h resv_scope_key). The floor's scope is named as
     * its pool (a pool that does not exist), so that its Reservations never
     * meet the addresses of a real pool or of another floor run. NULL: per
     * pool */
    const char *scope_key;
    const char *scope_label;
    /* claim i's spec fields, into spec */
    void (*spec)(const struct bench_opts *o, json_object *spec);
    /* the slot floor chain i reserves (an address, a device id, the volume's
     * uid), claim: claim i as its POST answered; *in_name: as it stands in
     * the Reservation's name */
    char *(*slot)(long i, json_object *claim, char **in_name);
    /* more of chain i's Reservation (volume: spec.bytes, spec.admittedUntil,
     * the provisio.dev/node label); NULL: nothing */
    void (*resv_extra)(const struct bench_opts *o, long i, json_object *labels, json_object *spec);
    /* the domain's status fields of Ready claim i and its conditions (the
     * Ready one and any other), each through add_condition */
    void (*status)(const struct bench_opts *o, long i, json_object *claim, json_object *st,
                   json_object *conds, int64_t generation, const char *now);
    /* chain i's k-th POST after the Reservation (k >= 1) when the operator
     * makes an object of its domain there (volume: 1 the PV, 2 the PVC):
     * its body, and its resource in *ref; NULL: an Event. NULL: Events only */
    json_object *(*extra_post)(const struct bench_opts *o, long i, json_object *claim, long k,
                               kc_ref *ref);
    /* the node agent's status of chain i's Reservation (--agent-patches);
     * NULL: a merge patch of a label */
    void (*resv_status)(const struct bench_opts *o, long i, json_object *claim, json_object *st);
    /* the floor also times this resource of the namespace (claim names) to
     * status.phase Bound (volume: the PVCs kube-controller-manager binds);
     * NULL: none */
    const char *bound_resource;
    const char *event_message; /* the Event the operator writes on Ready */
} claim_kind;

typedef struct bench_opts {
    bench_mode mode;
    const claim_kind *kind;
    const char *resource_name; /* device: the claims' spec.resourceName */
    const char *size;          /* volume: spec.size */
    int64_t size_bytes;        /* the same in bytes (the Reservation's spec.bytes) */
    long n;
    int threads;
    const char *ns;
    const char *pool;
    const char *prefix;
    double timeout_s;
    const char *latencies;
    const char *kubeconfig;
    bool serial; /* claims: each creator waits for its claim's Ready before the next */
    long posts, patches, puts, deletes; /* floor: operator totals for n claims */
    long agent_patches;                 /* floor: the node agents' PATCHes */
} bench_opts;

/* A watch of the namespace's claims (or, volume floor, its PVCs) from "now",
 * timing each object's first sight in a state. */
typedef struct watcher {
    struct bench *b;
    kc_ref ref;
    bool (*in_state)(json_object *obj); /* Ready=True, Bound; NULL: only count events */
    double *t;                          /* per index: first seen in the state (under mu) */
    long *count;                        /* how many were (under mu) */
    bool stop_at_n;                     /* claims: the watch ends once every claim is Ready */
    long events;                        /* events about our objects (watch thread only) */
    long relists;                       /* 410s recovered from by a list (watch thread only) */
    char *rv;                           /* where the next watch starts (watch thread only) */
    kc_watch *watch;
    pthread_t th;
    int rc;
    kc_error err;
} watcher;

/* One run's shared state. The arrays are indexed by claim number. */
typedef struct bench {
    const bench_opts *o;
    kc_client *client;
    double *t_start;   /* POST sent (written by the creating thread) */
    double *t_created; /* POST answered */
    double *t_ready;   /* claims: first Ready=True seen (watch thread, under mu); floor:
                        * chain done */
    atomic_long next;  /* next claim index to create */
    atomic_long created, create_failed;
    atomic_long writes, write_failed; /* floor: every write issued / failed */
    atomic_long skipped_deletes, skipped_agent_patches;
    atomic_long bound_made; /* volume floor: PVCs created (to be bound) */
    atomic_int first_error_taken;
    char first_error[512];

    /* the watch side */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long ready;       /* claims seen Ready (under mu) */
    long bound;       /* volume floor: PVCs seen Bound (under mu) */
    double *t_bound;  /* volume floor: each PVC's first Bound (under mu) */
    watcher claims_w; /* the claims (claims: timing; floor: the observer) */
    watcher bound_w;  /* volume floor: the PVCs */
} bench;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const kc_error *err)
{
    fprintf(stderr, "bench_claims: %s: %s\n", what, err && err->message ? err->message : "failed");
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    return s;
}

static json_object *jstr(const char *s)
{
    json_object *v = json_object_new_string(s);
    if (v == NULL) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    return v;
}

/* Keep the first failure's text for the summary (any thread). */
static void note_error(bench *b, const char *what, long i, const kc_error *err)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&b->first_error_taken, &expected, 1))
        snprintf(b->first_error, sizeof b->first_error, "%s of claim %ld: %s (HTTP %ld)", what, i,
                 err->message ? err->message : "?", err->http_status);
}

/* ---- the claim kinds ---------------------------------------------------- */

static json_object *new_obj(void)
{
    json_object *o = json_object_new_object();
    if (o == NULL) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    return o;
}

/* A condition in metav1.Condition's shape, appended to conds. */
static void add_condition(json_object *conds, const char *type, const char *reason,
                          const char *message, int64_t generation, const char *now)
{
    json_object *c = new_obj();
    json_object_object_add(c, "type", jstr(type));
    json_object_object_add(c, "status", jstr("True"));
    json_object_object_add(c, "observedGeneration", json_object_new_int64(generation));
    json_object_object_add(c, "lastTransitionTime", jstr(now));
    json_object_object_add(c, "reason", jstr(reason));
    json_object_object_add(c, "message", jstr(message));
    json_object_array_add(conds, c);
}

/* IPClaim i holds 10.0.0.0 + i + 1. */
static uint32_t ip_addr(long i)
{
    return 0x0A000000u + (uint32_t)i + 1u;
}

static void ip_spec(const bench_opts *o, json_object *spec)
{
    json_object_object_add(spec, "pool", jstr(o->pool));
}

static char *ip_slot(long i, json_object *claim, char **in_name)
{
    (void)claim;
    uint32_t a = ip_addr(i);
    *in_name = xasprintf("%u-%u-%u-%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
    return xasprintf("%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

static void ip_status(const bench_opts *o, long i, json_object *claim, json_object *st,
                      json_object *conds, int64_t generation, const char *now)
{
    (void)claim;
    uint32_t a = ip_addr(i);
    char *addr = xasprintf("%u.%u.%u.%u/8", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
    json_object_object_add(st, "pool", jstr(o->pool));
    json_object_object_add(st, "address", jstr(addr));
    add_condition(conds, "Ready", "Allocated", "address allocated", generation, now);
    free(addr);
}

/* DeviceClaim i (count 1) holds device dev<i> of a pool on node-a/b/c. */
static const char *const device_nodes[] = {"node-a", "node-b", "node-c"};

static void device_spec(const bench_opts *o, json_object *spec)
{
    json_object_object_add(spec, "resourceName", jstr(o->resource_name));
    json_object_object_add(spec, "count", json_object_new_int(1));
}

static char *device_slot(long i, json_object *claim, char **in_name)
{
    (void)claim;
    *in_name = xasprintf("dev%ld", i);
    return xasprintf("dev%ld", i);
}

/* As dev_status.c writes it: pool, nodeName, devices, Ready and DevicesHealthy. */
static void device_status(const bench_opts *o, long i, json_object *claim, json_object *st,
                          json_object *conds, int64_t generation, const char *now)
{
    (void)claim;
    const char *node = device_nodes[i % 3];
    char *id = xasprintf("dev%ld", i);
    char *msg = xasprintf("Allocated %s of DevicePool %s on node %s", id, o->pool, node);
    json_object *devs = json_object_new_array();
    if (devs == NULL) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    json_object_array_add(devs, jstr(id));
    json_object_object_add(st, "pool", jstr(o->pool));
    json_object_object_add(st, "nodeName", jstr(node));
    json_object_object_add(st, "devices", devs);
    add_condition(conds, "Ready", "Allocated", msg, generation, now);
    add_condition(conds, "DevicesHealthy", "DevicesHealthy", "every device held is healthy",
                  generation, now);
    free(msg);
    free(id);
}

/* Volume i (spec.size, spec.pool unless "none") is placed in a pool of node
 * node-a/b/c, as the operator (vol_claim.c, vol_pv.c) and the node agent
 * (agent/vol_node.c) write it. */
static const char *const volume_nodes[] = {"node-a", "node-b", "node-c"};
#define VOLUME_FLOOR_ROOT "/srv/floor"
#define VOLUME_UID_LABEL "provisio.dev/volume-uid"
#define VOLUME_FLOOR_POOL_LABEL "bench.provisio.dev/floor-pool"

static void volume_spec(const bench_opts *o, json_object *spec)
{
    json_object_object_add(spec, "size", jstr(o->size));
    if (strcmp(o->pool, "none") != 0)
        json_object_object_add(spec, "pool", jstr(o->pool));
}

static const char *uid_of(json_object *claim)
{
    json_object *meta = NULL, *uid = NULL;
    if (json_object_object_get_ex(claim, "metadata", &meta) &&
        json_object_object_get_ex(meta, "uid", &uid) && json_object_is_type(uid, json_type_string))
        return json_object_get_string(uid);
    return "no-uid";
}

static const char *name_of(json_object *claim)
{
    json_object *meta = NULL, *name = NULL;
    if (json_object_object_get_ex(claim, "metadata", &meta) &&
        json_object_object_get_ex(meta, "name", &name) &&
        json_object_is_type(name, json_type_string))
        return json_object_get_string(name);
    return "?";
}

static char *volume_slot(long i, json_object *claim, char **in_name)
{
    (void)i;
    *in_name = xasprintf("%s", uid_of(claim));
    return xasprintf("%s", uid_of(claim));
}

static char *utc_in(int seconds);

/* spec.bytes, the admission's deadline (the operator's: 30 s after the pool's
 * ledger PUT) and the node label the agent's informer selects on. */
static void volume_resv_extra(const bench_opts *o, long i, json_object *labels, json_object *spec)
{
    char *until = utc_in(30);
    json_object_object_add(labels, "provisio.dev/node", jstr(volume_nodes[i % 3]));
    json_object_object_add(spec, "bytes", json_object_new_int64(o->size_bytes));
    json_object_object_add(spec, "admittedUntil", jstr(until));
    free(until);
}

static char *volume_path(const bench_opts *o, json_object *claim)
{
    return xasprintf(VOLUME_FLOOR_ROOT "/%s_%s_%s", o->ns, name_of(claim), uid_of(claim));
}

/* As vol_claim.c's placed() writes a Bound Volume. */
static void volume_status(const bench_opts *o, long i, json_object *claim, json_object *st,
                          json_object *conds, int64_t generation, const char *now)
{
    const char *node = volume_nodes[i % 3];
    char *path = volume_path(o, claim), *pv = xasprintf("vol-%s", uid_of(claim));
    char *msg = xasprintf("%lld bytes in StoragePool %s on node %s; PersistentVolumeClaim %s is "
                          "Bound to PersistentVolume %s",
                          (long long)o->size_bytes, o->pool, node, name_of(claim), pv);
    add_condition(conds, "Ready", "Bound", msg, generation, now);
    json_object_object_add(st, "pool", jstr(o->pool));
    json_object_object_add(st, "nodeName", jstr(node));
    json_object_object_add(st, "path", jstr(path));
    json_object_object_add(st, "capacityBytes", json_object_new_int64(o->size_bytes));
    json_object_object_add(st, "persistentVolumeName", jstr(pv));
    json_object_object_add(st, "persistentVolumeClaimName", jstr(name_of(claim)));
    free(msg);
    free(pv);
    free(path);
}

static json_object *new_arr(void)
{
    json_object *a = json_object_new_array();
    if (a == NULL) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    return a;
}

static json_object *str_array(const char *one)
{
    json_object *a = new_arr();
    json_object_array_add(a, jstr(one));
    return a;
}

/* The PV of vol_pv.c's pv_body (plus a label the floor's cleanup finds it by). */
static json_object *volume_pv(const bench_opts *o, long i, json_object *claim)
{
    char *name = xasprintf("vol-%s", uid_of(claim)), *path = volume_path(o, claim);
    json_object *pv = new_obj(), *meta = new_obj(), *labels = new_obj(), *ann = new_obj(),
                *spec = new_obj(), *cap = new_obj(), *local = new_obj(), *ref = new_obj(),
                *aff = new_obj(), *req = new_obj(), *term = new_obj(), *expr = new_obj(),
                *terms = new_arr(), *exprs = new_arr();
    json_object_object_add(pv, "apiVersion", jstr("v1"));
    json_object_object_add(pv, "kind", jstr("PersistentVolume"));
    json_object_object_add(meta, "name", jstr(name));
    json_object_object_add(labels, VOLUME_UID_LABEL, jstr(uid_of(claim)));
    json_object_object_add(labels, VOLUME_FLOOR_POOL_LABEL, jstr(o->pool));
    json_object_object_add(meta, "labels", labels);
    json_object_object_add(ann, "pv.kubernetes.io/provisioned-by", jstr("local.provisio.dev"));
    json_object_object_add(meta, "annotations", ann);
    json_object_object_add(pv, "metadata", meta);
    json_object_object_add(cap, "storage", jstr(o->size));
    json_object_object_add(spec, "capacity", cap);
    json_object_object_add(spec, "accessModes", str_array("ReadWriteOnce"));
    json_object_object_add(spec, "persistentVolumeReclaimPolicy", jstr("Delete"));
    json_object_object_add(spec, "storageClassName", jstr(""));
    json_object_object_add(spec, "volumeMode", jstr("Filesystem"));
    json_object_object_add(local, "path", jstr(path));
    json_object_object_add(spec, "local", local);
    json_object_object_add(ref, "apiVersion", jstr("v1"));
    json_object_object_add(ref, "kind", jstr("PersistentVolumeClaim"));
    json_object_object_add(ref, "namespace", jstr(o->ns));
    json_object_object_add(ref, "name", jstr(name_of(claim)));
    json_object_object_add(spec, "claimRef", ref);
    json_object_object_add(expr, "key", jstr("kubernetes.io/hostname"));
    json_object_object_add(expr, "operator", jstr("In"));
    json_object_object_add(expr, "values", str_array(volume_nodes[i % 3]));
    json_object_array_add(exprs, expr);
    json_object_object_add(term, "matchExpressions", exprs);
    json_object_array_add(terms, term);
    json_object_object_add(req, "nodeSelectorTerms", terms);
    json_object_object_add(aff, "required", req);
    json_object_object_add(spec, "nodeAffinity", aff);
    json_object_object_add(pv, "spec", spec);
    free(path);
    free(name);
    return pv;
}

/* The PVC of vol_pv.c's pvc_body: the Volume's name, owned by it, volumeName set. */
static json_object *volume_pvc(const bench_opts *o, json_object *claim)
{
    char *pv = xasprintf("vol-%s", uid_of(claim));
    json_object *pvc = new_obj(), *meta = new_obj(), *labels = new_obj(), *owner = new_obj(),
                *owners = new_arr(), *spec = new_obj(), *res = new_obj(), *reqs = new_obj();
    json_object_object_add(owner, "apiVersion", jstr("provisio.dev/v1alpha1"));
    json_object_object_add(owner, "kind", jstr("Volume"));
    json_object_object_add(owner, "name", jstr(name_of(claim)));
    json_object_object_add(owner, "uid", jstr(uid_of(claim)));
    json_object_object_add(owner, "controller", json_object_new_boolean(1));
    json_object_object_add(owner, "blockOwnerDeletion", json_object_new_boolean(1));
    json_object_array_add(owners, owner);
    json_object_object_add(pvc, "apiVersion", jstr("v1"));
    json_object_object_add(pvc, "kind", jstr("PersistentVolumeClaim"));
    json_object_object_add(meta, "name", jstr(name_of(claim)));
    json_object_object_add(meta, "namespace", jstr(o->ns));
    json_object_object_add(labels, VOLUME_UID_LABEL, jstr(uid_of(claim)));
    json_object_object_add(labels, BENCH_LABEL_RUN, jstr(o->prefix));
    json_object_object_add(meta, "labels", labels);
    json_object_object_add(meta, "ownerReferences", owners);
    json_object_object_add(pvc, "metadata", meta);
    json_object_object_add(spec, "accessModes", str_array("ReadWriteOnce"));
    json_object_object_add(reqs, "storage", jstr(o->size));
    json_object_object_add(res, "requests", reqs);
    json_object_object_add(spec, "resources", res);
    json_object_object_add(spec, "storageClassName", jstr(""));
    json_object_object_add(spec, "volumeMode", jstr("Filesystem"));
    json_object_object_add(spec, "volumeName", jstr(pv));
    json_object_object_add(pvc, "spec", spec);
    free(pv);
    return pvc;
}

static json_object *volume_extra_post(const bench_opts *o, long i, json_object *claim, long k,
                                      kc_ref *ref)
{
    if (k == 1) {
        *ref = (kc_ref){"", "v1", "persistentvolumes", NULL, NULL, NULL};
        return volume_pv(o, i, claim);
    }
    if (k == 2) {
        *ref = (kc_ref){"", "v1", "persistentvolumeclaims", o->ns, NULL, NULL};
        return volume_pvc(o, claim);
    }
    return NULL;
}

/* The agent's status of a made directory (vol_node.c): on a filesystem
 * without project quota or qgroups (the bench's pools), Unsupported and no
 * usedBytes. */
static void volume_resv_status(const bench_opts *o, long i, json_object *claim, json_object *st)
{
    (void)i;
    char *path = volume_path(o, claim);
    json_object_object_add(st, "phase", jstr("Ready"));
    json_object_object_add(st, "path", jstr(path));
    json_object_object_add(st, "quota", jstr("Unsupported"));
    json_object_object_add(st, "message", NULL);
    free(path);
}

static const claim_kind kinds[] = {
    {"ip", "ipclaims", "IPClaim", "IPPool", "ipnet", "network", "provisio.dev/network", ip_spec,
     ip_slot, NULL, ip_status, NULL, NULL, NULL, "allocated 10.0.0.1/8 from pool floor"},
    {"device", "deviceclaims", "DeviceClaim", "DevicePool", "devicepool", NULL, NULL, device_spec,
     device_slot, NULL, device_status, NULL, NULL, NULL,
     "Allocated dev0 of DevicePool floor on node node-a"},
    {"volume", "volumes", "Volume", "StoragePool", "storagepool", NULL, NULL, volume_spec,
     volume_slot, volume_resv_extra, volume_status, volume_extra_post, volume_resv_status,
     "persistentvolumeclaims",
     "PersistentVolumeClaim c-0 Bound to PersistentVolume vol-00000000-0000-0000-0000-000000000000 "
     "on node node-a"},
};

static kc_ref claims_ref(const bench_opts *o)
{
    kc_ref r = {"provisio.dev", "v1alpha1", o->kind->resource, o->ns, NULL, NULL};
    return r;
}

static char *claim_name(const bench_opts *o, long i)
{
    return xasprintf("%s-%ld", o->prefix, i);
}

/* The claim a user would apply: name, a run label, the kind's spec. */
static json_object *claim_body(const bench_opts *o, const char *name)
{
    json_object *c = json_object_new_object(), *meta = json_object_new_object(),
                *labels = json_object_new_object(), *spec = json_object_new_object();
    if (!c || !meta || !labels || !spec) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    json_object_object_add(c, "apiVersion", jstr("provisio.dev/v1alpha1"));
    json_object_object_add(c, "kind", jstr(o->kind->kind));
    json_object_object_add(meta, "name", jstr(name));
    json_object_object_add(labels, BENCH_LABEL_RUN, jstr(o->prefix));
    json_object_object_add(meta, "labels", labels);
    json_object_object_add(c, "metadata", meta);
    o->kind->spec(o, spec);
    json_object_object_add(c, "spec", spec);
    return c;
}

static const char *obj_str(json_object *o, const char *a, const char *b)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, a, &v))
        return NULL;
    if (b != NULL && !json_object_object_get_ex(v, b, &v))
        return NULL;
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* status.conditions[type=Ready].status == "True" */
static bool claim_ready(json_object *obj)
{
    json_object *status = NULL, *conds = NULL;
    if (!json_object_object_get_ex(obj, "status", &status) ||
        !json_object_object_get_ex(status, "conditions", &conds) ||
        !json_object_is_type(conds, json_type_array))
        return false;
    size_t n = json_object_array_length(conds);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(conds, i), *t = NULL, *s = NULL;
        if (json_object_object_get_ex(c, "type", &t) &&
            json_object_object_get_ex(c, "status", &s) &&
            !strcmp(json_object_get_string(t), "Ready"))
            return !strcmp(json_object_get_string(s), "True");
    }
    return false;
}

/* The claim index of "<prefix>-<i>", or -1. */
static long claim_index(const bench_opts *o, const char *name)
{
    size_t pl = strlen(o->prefix);
    if (name == NULL || strncmp(name, o->prefix, pl) != 0 || name[pl] != '-')
        return -1;
    char *end = NULL;
    errno = 0;
    long i = strtol(name + pl + 1, &end, 10);
    if (errno || end == name + pl + 1 || *end != '\0' || i < 0 || i >= o->n)
        return -1;
    return i;
}

static void ensure_namespace(kc_client *c, const char *ns)
{
    kc_ref r = {"", "v1", "namespaces", NULL, NULL, NULL};
    json_object *body = json_object_new_object(), *meta = json_object_new_object();
    if (!body || !meta) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    json_object_object_add(body, "apiVersion", jstr("v1"));
    json_object_object_add(body, "kind", jstr("Namespace"));
    json_object_object_add(meta, "name", jstr(ns));
    json_object_object_add(body, "metadata", meta);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_create(c, &r, body, NULL, NULL, &err);
    json_object_put(body);
    if (rc != 0 && rc != KC_ERR_ALREADY_EXISTS)
        die("create namespace", &err);
    kc_error_clear(&err);
}

/* ---- the watches ------------------------------------------------------------ */

/* status.phase == "Bound" (a PVC) */
static bool pvc_bound(json_object *obj)
{
    const char *phase = obj_str(obj, "status", "phase");
    return phase != NULL && !strcmp(phase, "Bound");
}

static void mark(watcher *w, long i)
{
    bench *b = w->b;
    pthread_mutex_lock(&b->mu);
    if (w->t[i] == 0) {
        w->t[i] = now_s();
        (*w->count)++;
        /* every mark wakes the waiters: --serial creators wait for theirs */
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

static bool all_in_state(watcher *w)
{
    pthread_mutex_lock(&w->b->mu);
    bool done = w->stop_at_n && *w->count >= w->b->o->n;
    pthread_mutex_unlock(&w->b->mu);
    return done;
}

static void set_rv(watcher *w, json_object *obj)
{
    const char *rv = obj_str(obj, "metadata", "resourceVersion");
    if (rv == NULL || !*rv)
        return;
    char *copy = strdup(rv);
    if (copy == NULL)
        return;
    free(w->rv);
    w->rv = copy;
}

static int on_event(kc_event_type type, json_object *obj, void *user)
{
    watcher *w = user;
    set_rv(w, obj);
    if (type != KC_EVENT_ADDED && type != KC_EVENT_MODIFIED)
        return 0;
    long i = claim_index(w->b->o, obj_str(obj, "metadata", "name"));
    if (i < 0)
        return 0;
    w->events++;
    if (w->in_state == NULL)
        return 0; /* the floor's observer only: stopped when the chains are done */
    if (w->in_state(obj))
        mark(w, i);
    return all_in_state(w) ? 1 : 0;
}

/* After a 410: read the namespace once, take what is in the state now, go
 * on from there. */
static int relist(watcher *w, kc_error *err)
{
    json_object *list = NULL;
    int rc = kc_list_all(w->b->client, &w->ref, NULL, &list, err);
    if (rc != 0)
        return rc;
    json_object *items = NULL;
    if (w->in_state && json_object_object_get_ex(list, "items", &items)) {
        size_t n = json_object_array_length(items);
        for (size_t k = 0; k < n; k++) {
            json_object *it = json_object_array_get_idx(items, k);
            long i = claim_index(w->b->o, obj_str(it, "metadata", "name"));
            if (i >= 0 && w->in_state(it))
                mark(w, i);
        }
    }
    set_rv(w, list);
    json_object_put(list);
    w->relists++;
    return 0;
}

static void *watch_main(void *arg)
{
    watcher *w = arg;
    for (;;) {
        kc_list_opts lo = {0};
        lo.resource_version = w->rv;
        lo.allow_watch_bookmarks = true;
        lo.timeout_seconds = 1800;
        kc_error_clear(&w->err);
        int rc = kc_watch_run(w->watch, &w->ref, &lo, on_event, w, &w->err);
        if (rc == 1 || rc == KC_ERR_STOPPED) {
            w->rc = rc == 1 ? 0 : rc;
            return NULL;
        }
        if (rc == KC_ERR_GONE)
            rc = relist(w, &w->err);
        if (rc != 0 && rc != KC_OK) {
            fprintf(stderr, "bench_claims: watch %s: %s; again in 0.5 s\n", w->ref.resource,
                    w->err.message ? w->err.message : kc_strerror(rc));
            usleep(500000);
        }
        if (all_in_state(w)) {
            w->rc = 0;
            return NULL;
        }
    }
}

/* Start watching ref from "now": every event after this list reaches it,
 * however late the watch connects. in_state NULL: count events only. */
static void start_watch(bench *b, watcher *w, kc_ref ref, bool (*in_state)(json_object *),
                        double *t, long *count, bool stop_at_n)
{
    memset(w, 0, sizeof *w);
    w->b = b;
    w->ref = ref;
    w->in_state = in_state;
    w->t = t;
    w->count = count;
    w->stop_at_n = stop_at_n;
    kc_list_opts lo = {0};
    lo.limit = 1;
    json_object *list = NULL;
    kc_error err = KC_ERROR_INIT;
    if (kc_list(b->client, &w->ref, &lo, &list, &err) != 0)
        die("list before the watch", &err);
    set_rv(w, list);
    json_object_put(list);
    if (kc_watch_new(b->client, 0, &w->watch, &err) != 0)
        die("watch", &err);
    if (pthread_create(&w->th, NULL, watch_main, w) != 0) {
        fputs("bench_claims: pthread_create failed\n", stderr);
        exit(1);
    }
}

static void stop_watch(watcher *w)
{
    kc_watch_stop(w->watch);
    pthread_join(w->th, NULL);
    kc_watch_free(w->watch);
    w->watch = NULL;
    free(w->rv);
    w->rv = NULL;
    kc_error_clear(&w->err);
}

/* ---- claims mode: the creators ------------------------------------------- */

/* POST one claim; a create that failed in transit is tried again (a 409
 * AlreadyExists then means the first one got through). 0 or the kc_status. */
static int create_claim(bench *b, long i, json_object **out)
{
    kc_ref r = claims_ref(b->o);
    char *name = claim_name(b->o, i);
    json_object *body = claim_body(b->o, name);
    kc_error err = KC_ERROR_INIT;
    int rc = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = kc_create(b->client, &r, body, NULL, out, &err);
        if (rc == 0 || (rc == KC_ERR_ALREADY_EXISTS && attempt > 0)) {
            rc = 0;
            break;
        }
        if (rc != KC_ERR_TRANSPORT && rc != KC_ERR_TIMEOUT && rc != KC_ERR_INTERNAL &&
            rc != KC_ERR_SERVICE_UNAVAILABLE && rc != KC_ERR_SERVER_TIMEOUT)
            break;
    }
    if (rc != 0)
        note_error(b, "create", i, &err);
    kc_error_clear(&err);
    json_object_put(body);
    free(name);
    return rc;
}

/* --serial: block until claim i is Ready (or the run's timeout passed). */
static void wait_ready(bench *b, long i)
{
    double deadline = b->t_start[i] + b->o->timeout_s;
    pthread_mutex_lock(&b->mu);
    while (b->t_ready[i] == 0 && now_s() < deadline) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 1;
        pthread_cond_timedwait(&b->cv, &b->mu, &dl);
    }
    pthread_mutex_unlock(&b->mu);
}

static void *creator_main(void *arg)
{
    bench *b = arg;
    for (;;) {
        long i = atomic_fetch_add(&b->next, 1);
        if (i >= b->o->n)
            return NULL;
        b->t_start[i] = now_s();
        int rc = create_claim(b, i, NULL);
        b->t_created[i] = now_s();
        if (rc == 0) {
            atomic_fetch_add(&b->created, 1);
            if (b->o->serial)
                wait_ready(b, i);
        } else {
            atomic_fetch_add(&b->create_failed, 1);
            /* it will never be Ready: stop waiting for it */
            pthread_mutex_lock(&b->mu);
            b->ready++;
            if (b->ready >= b->o->n)
                pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
        }
    }
}

/* ---- floor mode ----------------------------------------------------------- */

/* How many of `total` writes fall to chain i when spread evenly over n. */
static long share(long total, long i, long n)
{
    return (long)(((__int128)total * (i + 1)) / n - ((__int128)total * i) / n);
}

static char *utc_in(int seconds)
{
    time_t t = time(NULL) + seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return xasprintf("%s", buf);
}

static char *utc_now(void)
{
    return utc_in(0);
}

/* The Reservation the operator would POST for claim i (same shape as
 * rec_reserve.c's), for the kind's slot of chain i. Its name goes to *name. */
static json_object *reservation_body(const bench *b, long i, json_object *claim, char **name)
{
    const claim_kind *k = b->o->kind;
    char *in_name = NULL;
    char *slot = k->slot(i, claim, &in_name);
    /* the scope (IPPool: the network) of the floor is named as its pool */
    const char *scope = b->o->pool;
    *name = xasprintf("%s.%s.%s", k->prefix, scope, in_name);
    json_object *r = new_obj(), *meta = new_obj(), *labels = new_obj(), *spec = new_obj(),
                *pool = new_obj(), *cl = new_obj();
    json_object_object_add(r, "apiVersion", jstr("provisio.dev/v1alpha1"));
    json_object_object_add(r, "kind", jstr("Reservation"));
    json_object_object_add(meta, "name", jstr(*name));
    json_object_object_add(labels, "provisio.dev/pool-kind", jstr(k->pool_kind));
    json_object_object_add(labels, "provisio.dev/pool", jstr(b->o->pool));
    if (k->scope_key) {
        json_object_object_add(labels, k->scope_label, jstr(scope));
        json_object_object_add(spec, k->scope_key, jstr(scope));
    }
    json_object_object_add(meta, "labels", labels);
    if (k->resv_extra)
        k->resv_extra(b->o, i, labels, spec);
    json_object_object_add(r, "metadata", meta);
    json_object_object_add(pool, "kind", jstr(k->pool_kind));
    json_object_object_add(pool, "name", jstr(b->o->pool));
    json_object_object_add(spec, "pool", pool);
    json_object_object_add(spec, "slot", jstr(slot));
    json_object_object_add(cl, "kind", jstr(k->kind));
    json_object_object_add(cl, "namespace", jstr(b->o->ns));
    json_object_object_add(cl, "name", jstr(obj_str(claim, "metadata", "name")));
    json_object_object_add(cl, "uid", jstr(obj_str(claim, "metadata", "uid")));
    json_object_object_add(spec, "claim", cl);
    json_object_object_add(r, "spec", spec);
    free(slot);
    free(in_name);
    return r;
}

/* A core/v1 Event about the claim, as rec_events would write it. */
static json_object *event_body(const bench *b, json_object *claim, long k, char **name)
{
    const char *cname = obj_str(claim, "metadata", "name");
    *name = xasprintf("%s.%lx", cname, k);
    char *ts = utc_now();
    json_object *e = json_object_new_object(), *meta = json_object_new_object(),
                *inv = json_object_new_object(), *src = json_object_new_object();
    if (!e || !meta || !inv || !src) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    json_object_object_add(e, "apiVersion", jstr("v1"));
    json_object_object_add(e, "kind", jstr("Event"));
    json_object_object_add(meta, "name", jstr(*name));
    json_object_object_add(meta, "namespace", jstr(b->o->ns));
    json_object_object_add(e, "metadata", meta);
    json_object_object_add(inv, "apiVersion", jstr("provisio.dev/v1alpha1"));
    json_object_object_add(inv, "kind", jstr(b->o->kind->kind));
    json_object_object_add(inv, "namespace", jstr(b->o->ns));
    json_object_object_add(inv, "name", jstr(cname));
    json_object_object_add(inv, "uid", jstr(obj_str(claim, "metadata", "uid")));
    json_object_object_add(e, "involvedObject", inv);
    json_object_object_add(e, "reason", jstr("Allocated"));
    json_object_object_add(e, "message", jstr(b->o->kind->event_message));
    json_object_object_add(e, "type", jstr("Normal"));
    json_object_object_add(src, "component", jstr(EVENT_COMPONENT));
    json_object_object_add(e, "source", src);
    json_object_object_add(e, "reportingComponent", jstr(EVENT_COMPONENT));
    json_object_object_add(e, "reportingInstance", jstr("bench"));
    json_object_object_add(e, "firstTimestamp", jstr(ts));
    json_object_object_add(e, "lastTimestamp", jstr(ts));
    json_object_object_add(e, "count", json_object_new_int(1));
    free(ts);
    return e;
}

/* The status the operator writes for a Ready claim. PUT step of steps: the
 * ones before the last say Ready=False, reason Provisioning, their step in
 * the message (as the operator's Pending / Provisioning / Binding statuses
 * come before Ready): each PUT changes the object, as each of the
 * operator's does. (Identical PUTs would be no-ops for the API server: no
 * etcd write, no watch event.) */
static void set_ready_status(const bench_opts *o, json_object *claim, long i, long step, long steps)
{
    char *ts = utc_now();
    json_object *st = new_obj(), *conds = json_object_new_array(), *gen = NULL, *meta = NULL;
    if (conds == NULL) {
        fputs("bench_claims: out of memory\n", stderr);
        exit(1);
    }
    int64_t g = 1;
    if (json_object_object_get_ex(claim, "metadata", &meta) &&
        json_object_object_get_ex(meta, "generation", &gen))
        g = json_object_get_int64(gen);
    json_object_object_add(st, "observedGeneration", json_object_new_int64(g));
    o->kind->status(o, i, claim, st, conds, g, ts);
    if (step + 1 < steps) {
        json_object *ready = json_object_array_get_idx(conds, 0); /* add_condition: Ready first */
        const char *m = obj_str(ready, "message", NULL);
        char *msg = xasprintf("step %ld: %s", step + 1, m ? m : "");
        json_object_object_add(ready, "status", jstr("False"));
        json_object_object_add(ready, "reason", jstr("Provisioning"));
        json_object_object_add(ready, "message", jstr(msg));
        free(msg);
    }
    json_object_object_add(st, "conditions", conds);
    json_object_object_add(claim, "status", st);
    free(ts);
}

/* Count one write; on failure note it. Returns rc. */
static int floor_write(bench *b, int rc, const char *what, long i, kc_error *err)
{
    atomic_fetch_add(&b->writes, 1);
    if (rc != 0) {
        atomic_fetch_add(&b->write_failed, 1);
        note_error(b, what, i, err);
    }
    kc_error_clear(err);
    return rc;
}

/* One claim's writes, in the operator's order, each from the last answer. */
static void floor_chain(bench *b, long i)
{
    const bench_opts *o = b->o;
    json_object *claim = NULL;
    b->t_start[i] = now_s();
    int rc = create_claim(b, i, &claim);
    atomic_fetch_add(&b->writes, 1);
    b->t_created[i] = now_s();
    if (rc != 0 || claim == NULL) {
        atomic_fetch_add(&b->write_failed, 1);
        atomic_fetch_add(&b->create_failed, 1);
        json_object_put(claim);
        return;
    }
    atomic_fetch_add(&b->created, 1);
    const char *cname0 = obj_str(claim, "metadata", "name");
    char *cname = xasprintf("%s", cname0 ? cname0 : "?");
    kc_error err = KC_ERROR_INIT;
    char *resv_name = NULL;

    long posts = share(o->posts, i, o->n);
    for (long k = 0; k < posts; k++) {
        char *name = NULL;
        if (k == 0) {
            kc_ref r = {"provisio.dev", "v1alpha1", "reservations", NULL, NULL, NULL};
            json_object *body = reservation_body(b, i, claim, &name);
            rc = kc_create(b->client, &r, body, NULL, NULL, &err);
            json_object_put(body);
            if (floor_write(b, rc, "reservation POST", i, &err) == 0)
                resv_name = name, name = NULL;
        } else {
            kc_ref r = {0};
            json_object *body =
                o->kind->extra_post ? o->kind->extra_post(o, i, claim, k, &r) : NULL;
            if (body != NULL) { /* an object of the domain: the PV, the PVC */
                rc = kc_create(b->client, &r, body, NULL, NULL, &err);
                json_object_put(body);
                if (floor_write(b, rc, r.resource, i, &err) == 0 && o->kind->bound_resource &&
                    !strcmp(r.resource, o->kind->bound_resource))
                    atomic_fetch_add(&b->bound_made, 1);
                free(name);
                continue;
            }
            kc_ref er = {"", "v1", "events", o->ns, NULL, NULL};
            body = event_body(b, claim, k, &name);
            rc = kc_create(b->client, &er, body, NULL, NULL, &err);
            json_object_put(body);
            floor_write(b, rc, "event POST", i, &err);
        }
        free(name);
    }

    /* The node agents' PATCHes: a merge patch of the Reservation's status
     * (the directory made), or of a label on it. */
    long apatches = share(o->agent_patches, i, o->n);
    for (long k = 0; k < apatches; k++) {
        if (resv_name == NULL) {
            atomic_fetch_add(&b->skipped_agent_patches, 1);
            continue;
        }
        kc_ref r = {"provisio.dev", "v1alpha1", "reservations", NULL, resv_name, NULL};
        json_object *patch = new_obj(), *st = new_obj();
        if (o->kind->resv_status) {
            r.subresource = "status";
            o->kind->resv_status(o, i, claim, st);
            if (k > 0) /* a change, as each of the agents' patches is */
                json_object_object_add(st, "usedBytes", json_object_new_int64(4096 * k));
            json_object_object_add(patch, "status", st);
        } else {
            json_object *meta = new_obj();
            char *step = xasprintf("%ld", k + 1);
            json_object_object_add(st, FLOOR_LABEL_STEP, jstr(step));
            json_object_object_add(meta, "labels", st);
            json_object_object_add(patch, "metadata", meta);
            free(step);
        }
        rc = kc_patch(b->client, &r, KC_PATCH_MERGE, patch, NULL, NULL, &err);
        json_object_put(patch);
        floor_write(b, rc, "reservation status PATCH", i, &err);
    }

    kc_ref cref = claims_ref(o);
    cref.name = cname;
    long patches = share(o->patches, i, o->n);
    for (long k = 0; k < patches; k++) {
        json_object *patch = json_object_new_object(), *meta = json_object_new_object(),
                    *labels = json_object_new_object();
        if (!patch || !meta || !labels) {
            fputs("bench_claims: out of memory\n", stderr);
            exit(1);
        }
        char *step = xasprintf("%ld", k + 1);
        const char *rv = obj_str(claim, "metadata", "resourceVersion");
        json_object_object_add(labels, FLOOR_LABEL_STEP, jstr(step));
        json_object_object_add(meta, "labels", labels);
        if (rv != NULL)
            json_object_object_add(meta, "resourceVersion", jstr(rv));
        json_object_object_add(patch, "metadata", meta);
        json_object *out = NULL;
        rc = kc_patch(b->client, &cref, KC_PATCH_MERGE, patch, NULL, &out, &err);
        json_object_put(patch);
        free(step);
        if (floor_write(b, rc, "claim PATCH", i, &err) == 0 && out != NULL) {
            json_object_put(claim);
            claim = out;
        } else {
            json_object_put(out);
        }
    }

    long puts_ = share(o->puts, i, o->n);
    kc_ref sref = cref;
    sref.subresource = "status";
    for (long k = 0; k < puts_; k++) {
        set_ready_status(o, claim, i, k, puts_);
        json_object *out = NULL;
        rc = kc_update(b->client, &sref, claim, NULL, &out, &err);
        if (floor_write(b, rc, "claim status PUT", i, &err) == 0 && out != NULL) {
            json_object_put(claim);
            claim = out;
        } else {
            json_object_put(out);
        }
    }

    long deletes = share(o->deletes, i, o->n);
    for (long k = 0; k < deletes; k++) {
        if (resv_name == NULL) {
            atomic_fetch_add(&b->skipped_deletes, 1);
            continue;
        }
        kc_ref r = {"provisio.dev", "v1alpha1", "reservations", NULL, resv_name, NULL};
        rc = kc_delete(b->client, &r, NULL, NULL, &err);
        floor_write(b, rc, "reservation DELETE", i, &err);
        free(resv_name);
        resv_name = NULL;
    }

    b->t_ready[i] = now_s();
    free(resv_name);
    free(cname);
    json_object_put(claim);
}

static void *floor_main(void *arg)
{
    bench *b = arg;
    for (;;) {
        long i = atomic_fetch_add(&b->next, 1);
        if (i >= b->o->n)
            return NULL;
        floor_chain(b, i);
    }
}

/* ---- cleanup mode --------------------------------------------------------- */

/* DELETE a collection (deletecollection) with a label selector; 0 or rc. */
static int delete_collection(kc_client *c, const kc_ref *r, const char *selector, kc_error *err)
{
    kc_list_opts lo = {0};
    lo.label_selector = selector;
    char *path = NULL;
    int rc = kc_path(r, &lo, false, &path, err);
    if (rc != 0)
        return rc;
    rc = kc_request_raw(c, "DELETE", path, NULL, NULL, 0, NULL, NULL, err);
    free(path);
    return rc;
}

/* Items left matching the selector (one page of 1: remainingItemCount + 1). */
static long count_left(kc_client *c, const kc_ref *r, const char *selector)
{
    kc_list_opts lo = {0};
    lo.label_selector = selector;
    lo.limit = 1;
    json_object *list = NULL, *items = NULL, *meta = NULL, *rem = NULL;
    kc_error err = KC_ERROR_INIT;
    if (kc_list(c, r, &lo, &list, &err) != 0) {
        kc_error_clear(&err);
        return -1;
    }
    long n = 0;
    if (json_object_object_get_ex(list, "items", &items))
        n = (long)json_object_array_length(items);
    if (json_object_object_get_ex(list, "metadata", &meta) &&
        json_object_object_get_ex(meta, "remainingItemCount", &rem))
        n += (long)json_object_get_int64(rem);
    json_object_put(list);
    return n;
}

/* What a floor run leaves: a collection and the selector of its items. */
typedef struct leftover {
    const char *what;
    kc_ref ref;
    char *selector;
} leftover;

static int run_cleanup(kc_client *c, const bench_opts *o)
{
    leftover l[4] = {
        {"reservations",
         {"provisio.dev", "v1alpha1", "reservations", NULL, NULL, NULL},
         xasprintf("provisio.dev/pool=%s", o->pool)},
        {"claims", claims_ref(o), xasprintf("%s=%s", BENCH_LABEL_RUN, o->prefix)},
    };
    size_t nl = 2;
    if (o->kind->extra_post) { /* volume: its PVCs, and its PVs (cluster-scoped) */
        l[nl++] = (leftover){"persistentvolumeclaims",
                             {"", "v1", "persistentvolumeclaims", o->ns, NULL, NULL},
                             xasprintf("%s=%s", BENCH_LABEL_RUN, o->prefix)};
        l[nl++] = (leftover){"persistentvolumes",
                             {"", "v1", "persistentvolumes", NULL, NULL, NULL},
                             xasprintf("%s=%s", VOLUME_FLOOR_POOL_LABEL, o->pool)};
    }
    double t0 = now_s();
    int rc = 0;
    for (;;) {
        /* a deletecollection of thousands may outlast the server's request
         * timeout (504): whatever it did stays done, so just go again. A PV
         * goes once kube-controller-manager saw its PVC go (pv-protection). */
        for (size_t k = 0; k < nl; k++) {
            kc_error err = KC_ERROR_INIT;
            if (delete_collection(c, &l[k].ref, l[k].selector, &err) != 0)
                fprintf(stderr, "bench_claims: delete %s: %s\n", l[k].what, err.message);
            kc_error_clear(&err);
        }
        long left[4] = {0}, total = 0;
        for (size_t k = 0; k < nl; k++) {
            left[k] = count_left(c, &l[k].ref, l[k].selector);
            total += left[k] < 0 ? 1 : left[k];
        }
        if (total == 0)
            break;
        if (now_s() - t0 > o->timeout_s) {
            fprintf(stderr, "bench_claims: cleanup:");
            for (size_t k = 0; k < nl; k++)
                fprintf(stderr, " %ld %s", left[k], l[k].what);
            fprintf(stderr, " left\n");
            rc = 1;
            break;
        }
        sleep(1);
    }
    fprintf(stderr, "cleanup of %s / pool %s: %.1f s\n", o->ns, o->pool, now_s() - t0);
    printf("RESULT mode=cleanup wall_s=%.2f ok=%d\n", now_s() - t0, rc == 0);
    for (size_t k = 0; k < nl; k++)
        free(l[k].selector);
    return rc;
}

/* ---- figures ------------------------------------------------------------- */

typedef struct figures {
    long done;
    double wall, p50, p99, max, c50, c99;
} figures;

static figures compute(const bench *b)
{
    long n = b->o->n;
    double *lat = xcalloc((size_t)n, sizeof *lat), *cl = xcalloc((size_t)n, sizeof *cl);
    double first = 0, last = 0;
    figures f = {0};
    long nc = 0;
    for (long i = 0; i < n; i++) {
        if (b->t_start[i] != 0 && (first == 0 || b->t_start[i] < first))
            first = b->t_start[i];
        if (b->t_created[i] != 0 && b->t_start[i] != 0)
            cl[nc++] = b->t_created[i] - b->t_start[i];
        if (b->t_ready[i] == 0 || b->t_start[i] == 0)
            continue;
        lat[f.done++] = b->t_ready[i] - b->t_start[i];
        if (b->t_ready[i] > last)
            last = b->t_ready[i];
    }
    qsort(lat, (size_t)f.done, sizeof *lat, bench_cmp_double);
    qsort(cl, (size_t)nc, sizeof *cl, bench_cmp_double);
    f.wall = f.done ? last - first : 0;
    f.p50 = bench_pct(lat, f.done, 50) * 1e3;
    f.p99 = bench_pct(lat, f.done, 99) * 1e3;
    f.max = f.done ? lat[f.done - 1] * 1e3 : 0;
    f.c50 = bench_pct(cl, nc, 50) * 1e3;
    f.c99 = bench_pct(cl, nc, 99) * 1e3;
    free(lat);
    free(cl);
    return f;
}

static void write_latencies(const bench *b, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench_claims: %s: %s\n", path, strerror(errno));
        return;
    }
    double first = 0;
    for (long i = 0; i < b->o->n; i++)
        if (b->t_start[i] != 0 && (first == 0 || b->t_start[i] < first))
            first = b->t_start[i];
    fputs("# index start_ms created_ms ready_ms (ms since the first POST; ready -1: never)\n", f);
    for (long i = 0; i < b->o->n; i++)
        fprintf(f, "%ld %.3f %.3f %.3f\n", i, (b->t_start[i] - first) * 1e3,
                (b->t_created[i] - first) * 1e3,
                b->t_ready[i] ? (b->t_ready[i] - first) * 1e3 : -1.0);
    fclose(f);
}

/* ---- main ----------------------------------------------------------------- */

static void usage(void)
{
    fputs("usage: bench_claims claims|floor|cleanup --namespace NS --pool NAME [-n N] [-t T]\n"
          "         [--kind ip|device|volume] [--resource R] [--size Q] [--prefix P]\n"
          "         [--timeout S] [--latencies FILE] [--kubeconfig F]\n"
          "         [--serial]   (claims)\n"
          "         [--posts X --patches Y --puts Z --deletes D --agent-patches A]   (floor)\n",
          stderr);
    exit(2);
}

static long num_arg(const char *s)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        usage();
    return v;
}

/* A quantity of bytes as --size takes it: digits and an optional binary or
 * decimal suffix (Ki Mi Gi Ti, k M G T); -1 when it is not one. */
static int64_t size_bytes(const char *s)
{
    static const struct {
        const char *suffix;
        int64_t mult;
    } units[] = {{"", 1},           {"Ki", 1LL << 10}, {"Mi", 1LL << 20},
                 {"Gi", 1LL << 30}, {"Ti", 1LL << 40}, {"k", 1000},
                 {"M", 1000000},    {"G", 1000000000}, {"T", 1000000000000}};
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v <= 0)
        return -1;
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
        if (!strcmp(end, units[k].suffix))
            return v <= INT64_MAX / units[k].mult ? (int64_t)v * units[k].mult : -1;
    return -1;
}

static void parse_args(int argc, char **argv, bench_opts *o)
{
    if (argc < 2)
        usage();
    if (!strcmp(argv[1], "claims"))
        o->mode = MODE_CLAIMS;
    else if (!strcmp(argv[1], "floor"))
        o->mode = MODE_FLOOR;
    else if (!strcmp(argv[1], "cleanup"))
        o->mode = MODE_CLEANUP;
    else
        usage();
    o->n = 1000;
    o->threads = 16;
    o->prefix = "c";
    o->timeout_s = 900;
    o->posts = o->patches = o->puts = -1;
    o->kind = &kinds[0];
    o->resource_name = "bench.provisio.dev/dev";
    o->size = "1Mi";
    static const struct option lo[] = {
        {"namespace", required_argument, NULL, 'N'},
        {"pool", required_argument, NULL, 'p'},
        {"prefix", required_argument, NULL, 'P'},
        {"timeout", required_argument, NULL, 'T'},
        {"latencies", required_argument, NULL, 'L'},
        {"kubeconfig", required_argument, NULL, 'k'},
        {"posts", required_argument, NULL, 1},
        {"patches", required_argument, NULL, 2},
        {"puts", required_argument, NULL, 3},
        {"deletes", required_argument, NULL, 4},
        {"serial", no_argument, NULL, 5},
        {"kind", required_argument, NULL, 6},
        {"resource", required_argument, NULL, 7},
        {"size", required_argument, NULL, 8},
        {"agent-patches", required_argument, NULL, 9},
        {NULL, 0, NULL, 0},
    };
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "n:t:", lo, NULL)) != -1) {
        switch (ch) {
        case 'n':
            o->n = num_arg(optarg);
            break;
        case 't':
            o->threads = (int)num_arg(optarg);
            break;
        case 'N':
            o->ns = optarg;
            break;
        case 'p':
            o->pool = optarg;
            break;
        case 'P':
            o->prefix = optarg;
            break;
        case 'T':
            o->timeout_s = (double)num_arg(optarg);
            break;
        case 'L':
            o->latencies = optarg;
            break;
        case 'k':
            o->kubeconfig = optarg;
            break;
        case 1:
            o->posts = num_arg(optarg);
            break;
        case 2:
            o->patches = num_arg(optarg);
            break;
        case 3:
            o->puts = num_arg(optarg);
            break;
        case 4:
            o->deletes = num_arg(optarg);
            break;
        case 5:
            o->serial = true;
            break;
        case 6:
            o->kind = NULL;
            for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
                if (!strcmp(optarg, kinds[k].name))
                    o->kind = &kinds[k];
            if (o->kind == NULL)
                usage();
            break;
        case 7:
            o->resource_name = optarg;
            break;
        case 8:
            o->size = optarg;
            break;
        case 9:
            o->agent_patches = num_arg(optarg);
            break;
        default:
            usage();
        }
    }
    if (optind != argc || !o->ns || !o->pool || o->n < 1 || o->threads < 1)
        usage();
    o->size_bytes = size_bytes(o->size);
    if (o->size_bytes < 0)
        usage();
    if (o->posts < 0)
        o->posts = o->n;
    if (o->patches < 0)
        o->patches = o->n;
    if (o->puts < 0)
        o->puts = o->n;
}

static void run_threads(bench *b, void *(*fn)(void *))
{
    pthread_t *th = xcalloc((size_t)b->o->threads, sizeof *th);
    for (int k = 0; k < b->o->threads; k++)
        if (pthread_create(&th[k], NULL, fn, b) != 0) {
            fputs("bench_claims: pthread_create failed\n", stderr);
            exit(1);
        }
    for (int k = 0; k < b->o->threads; k++)
        pthread_join(th[k], NULL);
    free(th);
}

/* Wait until *count (under mu) reaches target, at most until t0 + the
 * timeout, with a progress line every 5 s; false when timed out. */
static bool wait_count(bench *b, const long *count, long target, double t0, const char *made,
                       const atomic_long *nmade, const char *state)
{
    bool timed_out = false;
    double last_note = now_s();
    pthread_mutex_lock(&b->mu);
    while (*count < target) {
        double left = b->o->timeout_s - (now_s() - t0), step = left < 5 ? (left > 0 ? left : 0) : 5;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        double nsec = (double)dl.tv_nsec + step * 1e9;
        dl.tv_sec += (time_t)(nsec / 1e9);
        dl.tv_nsec = (long)(nsec - (double)(time_t)(nsec / 1e9) * 1e9);
        pthread_cond_timedwait(&b->cv, &b->mu, &dl);
        if (*count >= target)
            break;
        if (now_s() - last_note >= 5) {
            last_note = now_s();
            fprintf(stderr, "  %6.1f s: %ld %s, %ld %s\n", now_s() - t0, atomic_load(nmade), made,
                    *count, state);
        }
        if (now_s() - t0 >= b->o->timeout_s) {
            timed_out = true;
            break;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return !timed_out;
}

static int run_claims(bench *b)
{
    const bench_opts *o = b->o;
    start_watch(b, &b->claims_w, claims_ref(o), claim_ready, b->t_ready, &b->ready, true);

    double t0 = now_s();
    pthread_t *th = xcalloc((size_t)o->threads, sizeof *th);
    for (int k = 0; k < o->threads; k++)
        if (pthread_create(&th[k], NULL, creator_main, b) != 0) {
            fputs("bench_claims: pthread_create failed\n", stderr);
            exit(1);
        }

    /* Wait for every claim, with a progress line every 5 s. */
    bool timed_out = !wait_count(b, &b->ready, o->n, t0, "created", &b->created, "ready");
    for (int k = 0; k < o->threads; k++)
        pthread_join(th[k], NULL);
    free(th);
    long events = b->claims_w.events, relists = b->claims_w.relists;
    stop_watch(&b->claims_w);

    figures f = compute(b);
    long cf = atomic_load(&b->create_failed);
    fprintf(stderr,
            "claims: n=%ld threads=%d: %ld Ready in %.2f s (%.0f claims/s); create->Ready "
            "p50 %.1f ms p99 %.1f ms max %.1f ms; POST p50 %.1f ms p99 %.1f ms; "
            "%ld create failures; %.2f watch events/claim; %ld relists%s\n",
            o->n, o->threads, f.done, f.wall, f.wall > 0 ? (double)f.done / f.wall : 0, f.p50,
            f.p99, f.max, f.c50, f.c99, cf, (double)events / (double)o->n, relists,
            timed_out ? " (TIMED OUT)" : "");
    if (b->first_error[0])
        fprintf(stderr, "  first error: %s\n", b->first_error);
    printf("RESULT mode=claims n=%ld threads=%d ready=%ld wall_s=%.3f rate=%.1f p50_ms=%.1f "
           "p99_ms=%.1f max_ms=%.1f post_p50_ms=%.1f post_p99_ms=%.1f failed=%ld "
           "events_per_claim=%.2f timed_out=%d\n",
           o->n, o->threads, f.done, f.wall, f.wall > 0 ? (double)f.done / f.wall : 0, f.p50, f.p99,
           f.max, f.c50, f.c99, cf, (double)events / (double)o->n, timed_out);
    if (o->latencies)
        write_latencies(b, o->latencies);
    return (f.done == o->n && cf == 0) ? 0 : 1;
}

static int run_floor(bench *b)
{
    const bench_opts *o = b->o;
    /* The same observer as the claims run (its watch of the namespace's
     * IPClaims), so the instrument's cost to the API server is on both
     * sides of the ratio. */
    start_watch(b, &b->claims_w, claims_ref(o), NULL, NULL, NULL, false);
    const char *bres = o->kind->bound_resource;
    if (bres) {
        kc_ref r = {"", "v1", bres, o->ns, NULL, NULL};
        start_watch(b, &b->bound_w, r, pvc_bound, b->t_bound, &b->bound, false);
    }
    double t0 = now_s();
    run_threads(b, floor_main);
    figures f = compute(b);
    /* Volume: until kube-controller-manager bound every PVC the chains made. */
    double bound_s = 0, bound_p50 = 0, bound_p99 = 0;
    long bound = 0, made = atomic_load(&b->bound_made);
    bool bound_all = true;
    if (bres) {
        bound_all = wait_count(b, &b->bound, made, t0, "PVCs made", &b->bound_made, "Bound");
        pthread_mutex_lock(&b->mu);
        bound = b->bound;
        double first = 0, last = 0, *lat = xcalloc((size_t)o->n, sizeof *lat);
        long nl = 0;
        for (long i = 0; i < o->n; i++) {
            if (b->t_start[i] != 0 && (first == 0 || b->t_start[i] < first))
                first = b->t_start[i];
            if (b->t_bound[i] > last)
                last = b->t_bound[i];
            if (b->t_bound[i] != 0 && b->t_start[i] != 0)
                lat[nl++] = b->t_bound[i] - b->t_start[i];
        }
        pthread_mutex_unlock(&b->mu);
        bound_s = last > first ? last - first : 0;
        /* each chain's start (its Volume POST) to its PVC Bound */
        qsort(lat, (size_t)nl, sizeof *lat, bench_cmp_double);
        bound_p50 = bench_pct(lat, nl, 50) * 1e3;
        bound_p99 = bench_pct(lat, nl, 99) * 1e3;
        free(lat);
        stop_watch(&b->bound_w);
    }
    long events = b->claims_w.events;
    stop_watch(&b->claims_w);
    long wf = atomic_load(&b->write_failed), w = atomic_load(&b->writes);
    fprintf(stderr,
            "floor: n=%ld threads=%d: %ld writes (%ld claim POST, %ld other POST, %ld PATCH, "
            "%ld PUT, %ld DELETE, %ld agent PATCH) in %.2f s (%.0f chains/s, %.0f writes/s); "
            "chain p50 %.1f ms p99 %.1f ms; %ld failed writes, %ld deletes and %ld agent patches "
            "skipped; %.2f watch events/claim\n",
            o->n, o->threads, w, o->n, o->posts, o->patches, o->puts, o->deletes, o->agent_patches,
            f.wall, f.wall > 0 ? (double)f.done / f.wall : 0, f.wall > 0 ? (double)w / f.wall : 0,
            f.p50, f.p99, wf, atomic_load(&b->skipped_deletes),
            atomic_load(&b->skipped_agent_patches), (double)events / (double)o->n);
    if (bres)
        fprintf(stderr,
                "floor: %ld of %ld %s Bound by kube-controller-manager %.2f s after the first "
                "POST (chain start -> Bound p50 %.1f ms p99 %.1f ms)%s\n",
                bound, made, bres, bound_s, bound_p50, bound_p99, bound_all ? "" : " (TIMED OUT)");
    if (b->first_error[0])
        fprintf(stderr, "  first error: %s\n", b->first_error);
    printf("RESULT mode=floor n=%ld threads=%d done=%ld writes=%ld wall_s=%.3f rate=%.1f "
           "p50_ms=%.1f p99_ms=%.1f failed=%ld",
           o->n, o->threads, f.done, w, f.wall, f.wall > 0 ? (double)f.done / f.wall : 0, f.p50,
           f.p99, wf);
    if (bres)
        printf(" bound_made=%ld bound=%ld bound_s=%.3f bound_p50_ms=%.1f bound_p99_ms=%.1f", made,
               bound, bound_s, bound_p50, bound_p99);
    printf("\n");
    if (o->latencies)
        write_latencies(b, o->latencies);
    return wf == 0 && bound_all ? 0 : 1;
}

int main(int argc, char **argv)
{
    bench_opts o = {0};
    parse_args(argc, argv, &o);

    kc_config_opts co = {0};
    co.kubeconfig = o.kubeconfig;
    co.no_in_cluster = true;
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    if (kc_config_load(&co, &cfg, &err) != 0)
        die("kubeconfig", &err);
    kc_client_opts cop = {0};
    cop.request_timeout_ms = 300000; /* a deletecollection of 10,000 takes a while */
    cop.user_agent = "provisio-bench/" PROVISIO_VERSION;
    kc_client *c = NULL;
    if (kc_client_new(cfg, &cop, &c, &err) != 0)
        die("client", &err);

    int rc;
    if (o.mode == MODE_CLEANUP) {
        rc = run_cleanup(c, &o);
    } else {
        ensure_namespace(c, o.ns);
        bench *b = xcalloc(1, sizeof *b);
        b->o = &o;
        b->client = c;
        b->t_start = xcalloc((size_t)o.n, sizeof *b->t_start);
        b->t_created = xcalloc((size_t)o.n, sizeof *b->t_created);
        b->t_ready = xcalloc((size_t)o.n, sizeof *b->t_ready);
        b->t_bound = xcalloc((size_t)o.n, sizeof *b->t_bound);
        pthread_mutex_init(&b->mu, NULL);
        pthread_cond_init(&b->cv, NULL);
        rc = o.mode == MODE_CLAIMS ? run_claims(b) : run_floor(b);
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
        free(b->t_bound);
        free(b->t_start);
        free(b->t_created);
        free(b->t_ready);
        free(b);
    }
    kc_client_free(c);
    kc_config_free(cfg);
    return rc;
}
