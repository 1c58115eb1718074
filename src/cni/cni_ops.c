/*
 * cni_ops - see cni_ops.h. One process serves one command: the client and
 * its config live for the call, nothing is cached on the node.
 */
#include "cni_ops.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cni_names.h"
#include "cni_result.h"
#include "kc_client.h"
#include "pv_clock.h"
#include "pv_json.h"

#define GROUP "provisio.dev"
#define VERSION "v1alpha1"

typedef struct ops {
    const cni_env *env;
    const cni_conf *conf;
    kc_config *cfg;
    kc_client *client;
    const char *ns;  /* borrowed from env, conf or cfg */
    char node[64];   /* label value of the node name */
    double deadline; /* pv_clock_monotonic() time an ADD must end by */
    char names[CNI_MAX_POOLS][CNI_NAMES_CLAIM_MAX];
} ops;

static int nomem(cni_error *err)
{
    return cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: out of memory");
}

/* A kc_ failure as a CNI error; what says what was being done. */
static int api_error(const ops *o, int rc, const kc_error *kerr, const char *what, cni_error *err)
{
    const char *server = o->cfg ? kc_config_server(o->cfg) : "?";
    const char *detail = kerr->message ? kerr->message : kc_strerror(rc);
    switch (rc) {
    case KC_ERR_NOMEM:
        return nomem(err);
    case KC_ERR_UNAUTHORIZED:
    case KC_ERR_FORBIDDEN:
        return cni_error_set(err, CNI_ERR_API_REFUSED, detail,
                             "the API server at %s refused to %s (%s): check the credentials "
                             "of the kubeconfig and that its user may get, create, delete, "
                             "list and watch ipclaims and get ippools (RBAC)",
                             server, what, kerr->reason ? kerr->reason : kc_strerror(rc));
    case KC_ERR_NOT_FOUND:
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, detail,
                             "the API server at %s answered NotFound to %s: is the namespace "
                             "there, and are provisio's CRDs installed (kubectl get crd "
                             "ipclaims.provisio.dev)?",
                             server, what);
    case KC_ERR_INVALID:
    case KC_ERR_BAD_REQUEST:
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, detail,
                             "the API server at %s refused to %s: %s", server, what, detail);
    case KC_ERR_CONFIG:
    case KC_ERR_AUTH_PLUGIN:
    case KC_ERR_IO:
        return cni_error_set(err, CNI_ERR_INVALID_CONFIG, detail,
                             "the kubeconfig cannot be used to %s: %s", what, detail);
    default:
        return cni_error_set(err, CNI_ERR_TRY_AGAIN, detail,
                             "cannot %s: the API server at %s did not answer usefully (%s); "
                             "try again later, and check that it is reachable from this node",
                             what, server, kc_strerror(rc));
    }
}

/* ---- JSON reading ------------------------------------------------------- */

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *str_at(json_object *o, const char *a, const char *b)
{
    json_object *v = member(member(o, a), b);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* The Ready condition of obj's status, or NULL. */
static json_object *ready_condition(json_object *obj)
{
    json_object *conds = member(member(obj, "status"), "conditions");
    if (!conds || !json_object_is_type(conds, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(conds); i++) {
        json_object *c = json_object_array_get_idx(conds, i);
        json_object *t = member(c, "type");
        if (t && json_object_is_type(t, json_type_string) &&
            strcmp(json_object_get_string(t), "Ready") == 0)
            return c;
    }
    return NULL;
}

static const char *cond_str(json_object *c, const char *key)
{
    json_object *v = member(c, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* ---- setup -------------------------------------------------------------- */

static int ops_open(ops *o, cni_error *err)
{
    kc_error kerr = KC_ERROR_INIT;
    kc_config_opts copts = {.kubeconfig = o->conf->kubeconfig};
    int rc = kc_config_load(&copts, &o->cfg, &kerr);
    if (rc != KC_OK) {
        if (rc == KC_ERR_NOMEM)
            rc = nomem(err);
        else if (o->conf->kubeconfig)
            rc = cni_error_set(err, CNI_ERR_INVALID_CONFIG, kerr.message,
                               "ipam.kubeconfig %s cannot be used: %s", o->conf->kubeconfig,
                               kerr.message ? kerr.message : kc_strerror(rc));
        else
            rc = cni_error_set(err, CNI_ERR_INVALID_CONFIG, kerr.message,
                               "no kubeconfig found (ipam.kubeconfig is not set; KUBECONFIG, "
                               "in-cluster and ~/.kube/config gave: %s): set ipam.kubeconfig "
                               "in the network configuration",
                               kerr.message ? kerr.message : kc_strerror(rc));
        kc_error_clear(&kerr);
        return rc;
    }
    long req_ms = (long)(o->conf->request_timeout_s * 1000.0);
    kc_client_opts co = {
        .connect_timeout_ms = req_ms, /* a TLS handshake on a loaded server included */
        .request_timeout_ms = req_ms,
        .max_retries = 2,
        .user_agent = "provisio-cni/" PROVISIO_VERSION,
    };
    rc = kc_client_new(o->cfg, &co, &o->client, &kerr);
    if (rc != KC_OK)
        rc = api_error(o, rc, &kerr, "set up the client", err);
    kc_error_clear(&kerr);
    if (rc)
        return rc;
    o->ns = o->env->pod_namespace ? o->env->pod_namespace
            : o->conf->namespace_ ? o->conf->namespace_
                                  : kc_config_namespace(o->cfg);
    return 0;
}

static int resolve_node(ops *o, cni_error *err)
{
    char host[256] = "";
    const char *node = o->conf->node_name;
    if (!node) {
        if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
            return cni_error_set(err, CNI_ERR_INVALID_CONFIG, NULL,
                                 "cannot read this host's name: set ipam.nodeName");
        for (char *p = host; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        node = host;
    }
    return cni_names_label_value(node, o->node) ? 0 : nomem(err);
}

static int claim_names(ops *o, cni_error *err)
{
    for (size_t i = 0; i < o->conf->n_pools; i++)
        if (!cni_names_claim(o->conf->name, o->env->container_id, o->env->ifname, i, o->names[i]))
            return nomem(err);
    return 0;
}

static kc_ref claim_ref(const ops *o, const char *name)
{
    return (kc_ref){.group = GROUP,
                    .version = VERSION,
                    .resource = "ipclaims",
                    .namespace_ = o->ns,
                    .name = name};
}

/* ---- ADD ---------------------------------------------------------------- */

static json_object *claim_body(const ops *o, size_t i)
{
    char net[64], cid[64];
    if (!cni_names_label_value(o->conf->name, net) ||
        !cni_names_container_label(o->env->container_id, cid))
        return NULL;
    json_object *b = json_object_new_object();
    bool ok = pv_json_add_str(b, "apiVersion", GROUP "/" VERSION) &&
              pv_json_add_str(b, "kind", "IPClaim");
    json_object *md = ok ? pv_json_add_child(b, "metadata") : NULL;
    ok = md && pv_json_add_str(md, "name", o->names[i]) && pv_json_add_str(md, "namespace", o->ns);
    json_object *labels = ok ? pv_json_add_child(md, "labels") : NULL;
    ok = labels && pv_json_add_str(labels, CNI_LABEL_MANAGED_BY, CNI_MANAGED_BY) &&
         pv_json_add_str(labels, CNI_LABEL_NODE, o->node) &&
         pv_json_add_str(labels, CNI_LABEL_CNI_NETWORK, net) &&
         pv_json_add_str(labels, CNI_LABEL_CONTAINER, cid) &&
         pv_json_add_str(labels, CNI_LABEL_NETWORK, o->conf->network);
    json_object *ann = ok ? pv_json_add_child(md, "annotations") : NULL;
    ok = ann && pv_json_add_str(ann, CNI_ANN_CONTAINER, o->env->container_id) &&
         pv_json_add_str(ann, CNI_ANN_IFNAME, o->env->ifname) &&
         pv_json_add_str(ann, CNI_ANN_CNI_NETWORK, o->conf->name);
    if (ok && o->env->pod_uid && o->env->pod_name) {
        /* The garbage collector deletes the claim with its Pod: a DEL that
         * never comes (node lost, runtime crash) frees the address too. */
        json_object *refs = json_object_new_array();
        ok = pv_json_add(md, "ownerReferences", refs);
        json_object *ref = ok ? json_object_new_object() : NULL;
        if (ok && (!ref || json_object_array_add(refs, ref) != 0)) {
            json_object_put(ref);
            ok = false;
        }
        ok = ok && pv_json_add_str(ref, "apiVersion", "v1") &&
             pv_json_add_str(ref, "kind", "Pod") &&
             pv_json_add_str(ref, "name", o->env->pod_name) &&
             pv_json_add_str(ref, "uid", o->env->pod_uid);
    }
    json_object *spec = ok ? pv_json_add_child(b, "spec") : NULL;
    ok = spec && pv_json_add_str(spec, "pool", o->conf->pools[i]);
    if (!ok) {
        json_object_put(b);
        return NULL;
    }
    return b;
}

typedef enum verdict { V_PENDING, V_READY, V_FAILED, V_GONE } verdict;

/* What obj (an IPClaim) says about the ADD; on V_FAILED err is set. */
static verdict judge(const ops *o, json_object *obj, const char *name, cni_error *err)
{
    json_object *c = ready_condition(obj);
    if (!c)
        return V_PENDING;
    const char *st = cond_str(c, "status"), *reason = cond_str(c, "reason");
    const char *msg = cond_str(c, "message");
    if (strcmp(st, "True") == 0)
        return str_at(obj, "status", "address") ? V_READY : V_PENDING;
    int code = 0;
    if (!strcmp(reason, "PoolNotFound") || !strcmp(reason, "InvalidSpec"))
        code = CNI_ERR_INVALID_CONFIG;
    else if (!strcmp(reason, "PoolExhausted") || !strcmp(reason, "PoolTerminating"))
        code = CNI_ERR_TRY_AGAIN;
    if (!code)
        return V_PENDING;
    cni_error_set(err, code, msg, "IPClaim %s/%s cannot get an address: %s: %s", o->ns, name,
                  reason, msg);
    return V_FAILED;
}

typedef struct watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    double deadline;
    kc_watch *w;
} watchdog;

static void *watchdog_main(void *arg)
{
    watchdog *d = arg;
    struct timespec at = pv_clock_timespec(d->deadline);
    pthread_mutex_lock(&d->mu);
    while (!d->done)
        if (pthread_cond_timedwait(&d->cv, &d->mu, &at) != 0)
            break;
    bool stop = !d->done;
    pthread_mutex_unlock(&d->mu);
    if (stop)
        kc_watch_stop(d->w);
    return NULL;
}

typedef struct wait_state {
    const ops *o;
    const char *name;
    json_object *last; /* owned: the newest object seen */
    verdict v;
    cni_error *err;
} wait_state;

static int on_event(kc_event_type type, json_object *obj, void *user)
{
    wait_state *s = user;
    if (type == KC_EVENT_BOOKMARK)
        return 0;
    json_object_put(s->last);
    s->last = json_object_get(obj);
    s->v = type == KC_EVENT_DELETED ? V_GONE : judge(s->o, obj, s->name, s->err);
    return s->v == V_PENDING ? 0 : 1;
}

static int timeout_error(const ops *o, const char *name, json_object *last, const char *api_err,
                         cni_error *err)
{
    json_object *c = ready_condition(last);
    return cni_error_set(err, CNI_ERR_TRY_AGAIN, api_err,
                         "IPClaim %s/%s was not Ready within %.1f s (ipam.timeout)%s%s%s%s%s: is "
                         "the provisio operator running (kubectl get ipclaim -n %s %s)?",
                         o->ns, name, o->conf->timeout_s, c ? "; last: " : "",
                         c ? cond_str(c, "reason") : "", c ? ": " : "",
                         c ? cond_str(c, "message") : "",
                         api_err ? "; the API server answered badly meanwhile" : "", o->ns, name);
}

/*
 * After the watch broke or its start was too old: read the claim anew.
 * Returns 0 (s updated, or a retryable failure kept in *api_err for the
 * timeout message) or a CNI error.
 */
static int reread(wait_state *s, char **api_err, cni_error *err)
{
    kc_error kerr = KC_ERROR_INIT;
    json_object *fresh = NULL;
    kc_ref one = claim_ref(s->o, s->name);
    int rc = 0, krc = kc_get(s->o->client, &one, &fresh, &kerr);
    if (krc == KC_OK) {
        json_object_put(s->last);
        s->last = fresh;
        s->v = judge(s->o, s->last, s->name, err);
    } else if (krc == KC_ERR_NOT_FOUND) {
        s->v = V_GONE;
    } else if (kc_status_is_retryable(krc)) {
        free(*api_err);
        *api_err = kerr.message ? strdup(kerr.message) : NULL;
    } else {
        rc = api_error(s->o, krc, &kerr, "read the IPClaim", err);
    }
    kc_error_clear(&kerr);
    return rc;
}

/*
 * Wait until the claim *obj (owned; replaced by newer versions) is Ready.
 * The watch starts at the version already seen, so no change is missed. A
 * watch that breaks on a loaded or restarting API server (transport errors,
 * timeouts, 429, 5xx) is opened again after a short pause: only the
 * deadline ends the wait.
 */
static int wait_ready(const ops *o, const char *name, json_object **obj, kc_watch *w,
                      cni_error *err)
{
    wait_state s = {.o = o, .name = name, .last = *obj, .err = err};
    s.v = judge(o, s.last, name, err);
    kc_ref ref = claim_ref(o, NULL);
    char field[CNI_NAMES_CLAIM_MAX + 20];
    snprintf(field, sizeof(field), "metadata.name=%s", name);
    char *api_err = NULL;
    int rc = 0;
    while (s.v == V_PENDING && !rc) {
        double left = o->deadline - pv_clock_monotonic();
        if (left <= 0) {
            rc = timeout_error(o, name, s.last, api_err, err);
            break;
        }
        const char *rv = str_at(s.last, "metadata", "resourceVersion");
        char *rv_copy = rv ? strdup(rv) : NULL;
        if (rv && !rv_copy) {
            rc = nomem(err);
            break;
        }
        kc_list_opts lo = {.field_selector = field,
                           .resource_version = rv_copy,
                           .timeout_seconds = (long)ceil(left)};
        kc_error kerr = KC_ERROR_INIT;
        int wrc = kc_watch_run(w, &ref, &lo, on_event, &s, &kerr);
        free(rv_copy);
        if (wrc == KC_ERR_STOPPED) {
            rc = timeout_error(o, name, s.last, api_err, err);
        } else if (wrc == KC_ERR_GONE) {
            rc = reread(&s, &api_err, err);
        } else if (wrc < 0 && kc_status_is_retryable(wrc)) {
            free(api_err);
            api_err = kerr.message ? strdup(kerr.message) : NULL;
            pv_clock_sleep(left < 0.2 ? left : 0.2, NULL);
            rc = reread(&s, &api_err, err);
        } else if (wrc < 0) {
            rc = api_error(o, wrc, &kerr, "watch the IPClaim", err);
        }
        /* wrc == KC_OK: the server ended the stream; watch again. */
        kc_error_clear(&kerr);
    }
    free(api_err);
    *obj = s.last;
    if (rc)
        return rc;
    if (s.v == V_FAILED)
        return -err->code;
    if (s.v == V_GONE)
        return cni_error_set(err, CNI_ERR_TRY_AGAIN, NULL,
                             "IPClaim %s/%s was deleted while ADD waited for it (a DEL or the "
                             "Pod's deletion came first); try again",
                             o->ns, name);
    return 0;
}

/*
 * Create claim i, or take the one a previous ADD of this attachment made.
 * One being deleted (a DEL just before this ADD) is waited out first.
 * *created says whether this call made it.
 */
static int create_claim(ops *o, size_t i, json_object **out, bool *created, cni_error *err)
{
    json_object *body = claim_body(o, i);
    if (!body)
        return nomem(err);
    kc_ref ref = claim_ref(o, o->names[i]), coll = claim_ref(o, NULL);
    int rc = 0;
    *out = NULL;
    *created = false;
    while (!rc) {
        kc_error kerr = KC_ERROR_INIT;
        int krc = kc_create(o->client, &coll, body, NULL, out, &kerr);
        if (krc == KC_OK) {
            *created = true;
        } else if (krc == KC_ERR_ALREADY_EXISTS) {
            kc_error_clear(&kerr);
            krc = kc_get(o->client, &ref, out, &kerr);
            if (krc == KC_OK && member(member(*out, "metadata"), "deletionTimestamp")) {
                json_object_put(*out);
                *out = NULL;
                if (pv_clock_monotonic() >= o->deadline)
                    rc = cni_error_set(err, CNI_ERR_TRY_AGAIN, NULL,
                                       "IPClaim %s/%s of this attachment is still being deleted "
                                       "after %.1f s (ipam.timeout); try again",
                                       o->ns, o->names[i], o->conf->timeout_s);
                else
                    pv_clock_sleep(0.05, NULL);
                kc_error_clear(&kerr);
                continue;
            }
            if (krc == KC_ERR_NOT_FOUND) { /* deleted in between: create again */
                kc_error_clear(&kerr);
                continue;
            }
            if (krc != KC_OK)
                rc = api_error(o, krc, &kerr, "read the existing IPClaim", err);
        } else if (kc_status_is_retryable(krc) && pv_clock_monotonic() + 0.2 < o->deadline) {
            /* A loaded or restarting API server: POST again (by name, so a
             * first POST that landed after all answers AlreadyExists). */
            kc_error_clear(&kerr);
            pv_clock_sleep(0.2, NULL);
            continue;
        } else {
            rc = api_error(o, krc, &kerr, "create the IPClaim", err);
        }
        kc_error_clear(&kerr);
        break;
    }
    json_object_put(body);
    return rc;
}

static void delete_quietly(const ops *o, const char *name)
{
    kc_error kerr = KC_ERROR_INIT;
    kc_ref ref = claim_ref(o, name);
    kc_delete(o->client, &ref, NULL, NULL, &kerr);
    kc_error_clear(&kerr);
}

static int cmd_add(ops *o, char **out, cni_error *err)
{
    size_t n = o->conf->n_pools;
    json_object *objs[CNI_MAX_POOLS] = {0};
    bool created[CNI_MAX_POOLS] = {0};
    const char *names[CNI_MAX_POOLS];
    kc_watch *w = NULL;
    watchdog d = {.done = false, .deadline = o->deadline};
    pthread_t th;
    bool th_started = false;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        names[i] = o->names[i];
        rc = create_claim(o, i, &objs[i], &created[i], err);
    }
    if (!rc) {
        kc_error kerr = KC_ERROR_INIT;
        if (kc_watch_new(o->client, 0, &w, &kerr) != KC_OK)
            rc = nomem(err);
        kc_error_clear(&kerr);
    }
    if (!rc) {
        d.w = w;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&d.mu, NULL);
        pthread_cond_init(&d.cv, &ca);
        pthread_condattr_destroy(&ca);
        th_started = pthread_create(&th, NULL, watchdog_main, &d) == 0;
        if (!th_started)
            rc = cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: cannot start a thread");
    }
    for (size_t i = 0; i < n && !rc; i++)
        rc = wait_ready(o, names[i], &objs[i], w, err);
    if (th_started) {
        pthread_mutex_lock(&d.mu);
        d.done = true;
        pthread_cond_signal(&d.cv);
        pthread_mutex_unlock(&d.mu);
        pthread_join(th, NULL);
    }
    if (d.w) {
        pthread_mutex_destroy(&d.mu);
        pthread_cond_destroy(&d.cv);
    }
    kc_watch_free(w);
    if (!rc) {
        json_object *statuses[CNI_MAX_POOLS];
        for (size_t i = 0; i < n; i++)
            statuses[i] = member(objs[i], "status");
        rc = cni_result_encode(o->conf->cni_version, statuses, names, n, out, err);
    }
    if (rc) {
        /* Nothing stays held for an ADD that failed. */
        for (size_t i = 0; i < n; i++)
            if (created[i])
                delete_quietly(o, o->names[i]);
    }
    for (size_t i = 0; i < n; i++)
        json_object_put(objs[i]);
    return rc;
}

/* ---- DEL, CHECK --------------------------------------------------------- */

static int cmd_del(ops *o, cni_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < o->conf->n_pools && !rc; i++) {
        kc_error kerr = KC_ERROR_INIT;
        kc_ref ref = claim_ref(o, o->names[i]);
        int krc = kc_delete(o->client, &ref, NULL, NULL, &kerr);
        if (krc != KC_OK && krc != KC_ERR_NOT_FOUND)
            rc = api_error(o, krc, &kerr, "delete the IPClaim", err);
        kc_error_clear(&kerr);
    }
    return rc;
}

static int cmd_check(ops *o, cni_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < o->conf->n_pools && !rc; i++) {
        kc_error kerr = KC_ERROR_INIT;
        kc_ref ref = claim_ref(o, o->names[i]);
        json_object *obj = NULL;
        int krc = kc_get(o->client, &ref, &obj, &kerr);
        const char *addr = str_at(obj, "status", "address");
        json_object *c = ready_condition(obj);
        if (krc == KC_ERR_NOT_FOUND)
            rc = cni_error_set(err, CNI_ERR_UNKNOWN_CONTAINER, NULL,
                               "no IPClaim %s/%s for this attachment (pool %s): it was deleted "
                               "or the ADD never ran",
                               o->ns, o->names[i], o->conf->pools[i]);
        else if (krc != KC_OK)
            rc = api_error(o, krc, &kerr, "read the IPClaim", err);
        else if (!c || strcmp(cond_str(c, "status"), "True") || !addr)
            rc = cni_error_set(err, CNI_ERR_CHECK_MISMATCH, NULL,
                               "IPClaim %s/%s holds no address now (%s: %s)", o->ns, o->names[i],
                               c ? cond_str(c, "reason") : "no Ready condition",
                               c ? cond_str(c, "message") : "");
        else if (!cni_result_has_address(o->conf->prev_result, addr))
            rc = cni_error_set(err, CNI_ERR_CHECK_MISMATCH, NULL,
                               "IPClaim %s/%s holds %s, which prevResult does not list", o->ns,
                               o->names[i], addr);
        kc_error_clear(&kerr);
        json_object_put(obj);
    }
    return rc;
}

/* ---- STATUS ------------------------------------------------------------- */

static int pool_status(ops *o, const char *pool, cni_error *err)
{
    kc_error kerr = KC_ERROR_INIT;
    kc_ref ref = {.group = GROUP, .version = VERSION, .resource = "ippools", .name = pool};
    json_object *obj = NULL;
    int krc = kc_get(o->client, &ref, &obj, &kerr);
    int rc = 0;
    json_object *c = ready_condition(obj);
    json_object *avail = member(member(obj, "status"), "available");
    if (krc == KC_ERR_NOT_FOUND)
        rc = cni_error_set(err, CNI_ERR_NOT_AVAILABLE, NULL,
                           "IPPool %s does not exist: create it or fix the pool of the network "
                           "configuration",
                           pool);
    else if (krc != KC_OK) {
        cni_error tmp = CNI_ERROR_INIT;
        api_error(o, krc, &kerr, "read the IPPool", &tmp);
        rc = cni_error_set(err, CNI_ERR_NOT_AVAILABLE, tmp.details, "%s", tmp.msg);
        cni_error_clear(&tmp);
    } else if (!c || strcmp(cond_str(c, "status"), "True"))
        rc = cni_error_set(err, CNI_ERR_NOT_AVAILABLE, NULL, "IPPool %s is not Ready (%s: %s)",
                           pool, c ? cond_str(c, "reason") : "no Ready condition yet",
                           c ? cond_str(c, "message") : "is the provisio operator running?");
    else if (avail && json_object_is_type(avail, json_type_int) &&
             json_object_get_int64(avail) <= 0)
        rc = cni_error_set(err, CNI_ERR_NOT_AVAILABLE, NULL,
                           "IPPool %s is exhausted: no address available (kubectl get ippool "
                           "%s); free some or widen the pool",
                           pool, pool);
    kc_error_clear(&kerr);
    json_object_put(obj);
    return rc;
}

static int cmd_status(ops *o, cni_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < o->conf->n_pools && !rc; i++)
        rc = pool_status(o, o->conf->pools[i], err);
    return rc;
}

/* ---- GC ----------------------------------------------------------------- */

typedef struct gc_state {
    char (*valid)[CNI_NAMES_CLAIM_MAX]; /* base names of the valid attachments */
    size_t n_valid;
    char **stale; /* "namespace/name" of the claims to delete, owned */
    size_t n_stale, cap_stale;
    bool oom;
} gc_state;

/* Collects the stale claims; they are deleted once the list is read. */
static int gc_item(json_object *item, void *user)
{
    gc_state *g = user;
    const char *name = str_at(item, "metadata", "name");
    const char *ns = str_at(item, "metadata", "namespace");
    bool keep = !name || !ns || strncmp(name, "cni-", 4) != 0 || strlen(name) < CNI_NAMES_BASE_LEN;
    for (size_t i = 0; !keep && i < g->n_valid; i++)
        keep = strncmp(name, g->valid[i], CNI_NAMES_BASE_LEN) == 0;
    if (!keep && g->n_stale == g->cap_stale) {
        size_t cap = g->cap_stale ? 2 * g->cap_stale : 16;
        char **p = realloc(g->stale, cap * sizeof(*p));
        if (p) {
            g->stale = p;
            g->cap_stale = cap;
        }
    }
    if (!keep &&
        (g->n_stale == g->cap_stale || asprintf(&g->stale[g->n_stale], "%s/%s", ns, name) < 0))
        g->oom = true;
    else if (!keep)
        g->n_stale++;
    json_object_put(item);
    return g->oom ? KC_ERR_NOMEM : KC_OK;
}

static int gc_list(ops *o, gc_state *g, const char *sel, cni_error *err)
{
    kc_ref ref = {.group = GROUP, .version = VERSION, .resource = "ipclaims"};
    kc_list_opts lo = {.label_selector = sel, .limit = 500};
    int rc = 0;
    char *cont = NULL;
    do {
        kc_error kerr = KC_ERROR_INIT;
        json_object *list = NULL;
        lo.continue_token = cont;
        int krc = kc_list_each(o->client, &ref, &lo, gc_item, g, &list, NULL, &kerr);
        free(cont);
        cont = NULL;
        const char *next = str_at(list, "metadata", "continue");
        if (krc != KC_OK)
            rc = api_error(o, krc, &kerr, "list this node's IPClaims", err);
        else if (next && *next && !(cont = strdup(next)))
            rc = nomem(err);
        json_object_put(list);
        kc_error_clear(&kerr);
    } while (!rc && cont);
    free(cont);
    return rc;
}

static int gc_delete(ops *o, gc_state *g, cni_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < g->n_stale; i++) {
        char *slash = strchr(g->stale[i], '/');
        *slash = '\0';
        kc_error kerr = KC_ERROR_INIT;
        kc_ref ref = {.group = GROUP,
                      .version = VERSION,
                      .resource = "ipclaims",
                      .namespace_ = g->stale[i],
                      .name = slash + 1};
        int krc = kc_delete(o->client, &ref, NULL, NULL, &kerr);
        if (krc != KC_OK && krc != KC_ERR_NOT_FOUND && !rc)
            rc = api_error(o, krc, &kerr, "delete a stale IPClaim", err);
        kc_error_clear(&kerr);
    }
    return rc;
}

static int cmd_gc(ops *o, cni_error *err)
{
    const cni_conf *c = o->conf;
    gc_state g = {0};
    char net[64], *sel = NULL;
    int rc = 0;
    g.valid = calloc(c->n_valid ? c->n_valid : 1, sizeof(*g.valid));
    if (!g.valid || !cni_names_label_value(c->name, net) ||
        asprintf(&sel, "%s=%s,%s=%s,%s=%s", CNI_LABEL_MANAGED_BY, CNI_MANAGED_BY, CNI_LABEL_NODE,
                 o->node, CNI_LABEL_CNI_NETWORK, net) < 0) {
        sel = NULL;
        rc = nomem(err);
    }
    for (size_t i = 0; !rc && i < c->n_valid; i++) {
        if (!cni_names_claim(c->name, c->valid[i].container_id, c->valid[i].ifname, 0,
                             g.valid[g.n_valid]))
            rc = nomem(err);
        g.n_valid++;
    }
    if (!rc)
        rc = gc_list(o, &g, sel, err);
    if (!rc && g.oom)
        rc = nomem(err);
    if (!rc)
        rc = gc_delete(o, &g, err);
    for (size_t i = 0; i < g.n_stale; i++)
        free(g.stale[i]);
    free(g.stale);
    free(sel);
    free(g.valid);
    return rc;
}

/* ---- dispatch ----------------------------------------------------------- */

int cni_ops_run(const cni_env *env, const cni_conf *conf, char **out, cni_error *err)
{
    *out = NULL;
    if (env->command == CNI_CMD_VERSION)
        return (*out = cni_result_version()) ? 0 : nomem(err);
    ops o = {.env = env, .conf = conf};
    o.deadline = pv_clock_monotonic() + conf->timeout_s;
    int rc = ops_open(&o, err);
    if (!rc)
        rc = resolve_node(&o, err);
    if (!rc && env->container_id)
        rc = claim_names(&o, err);
    if (!rc) {
        switch (env->command) {
        case CNI_CMD_ADD:
            rc = cmd_add(&o, out, err);
            break;
        case CNI_CMD_DEL:
            rc = cmd_del(&o, err);
            break;
        case CNI_CMD_CHECK:
            rc = cmd_check(&o, err);
            break;
        case CNI_CMD_STATUS:
            rc = cmd_status(&o, err);
            break;
        case CNI_CMD_GC:
            rc = cmd_gc(&o, err);
            break;
        default:
            rc = cni_error_set(err, CNI_ERR_INVALID_ENV, NULL, "unknown command");
        }
    }
    kc_client_free(o.client);
    kc_config_free(o.cfg);
    return rc;
}
