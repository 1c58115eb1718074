/*
 * e2e - what the end-to-end tests (tests/e2e/test_*.c) share: the admin
 * client of the control plane the ctest fixture started (hack/kube-local),
 * a namespace of its own per test, kubectl and hack/kube-local as
 * subprocesses, the CRDs of crds/, ServiceAccounts and their tokens, and
 * waiting with a deadline.
 *
 * Environment (set by tests/CMakeLists.txt, or by hand from DIR/env):
 *   KUBECONFIG           admin kubeconfig of the control plane
 *   PROVISIO_KUBE_DIR    the control-plane directory (restart, compact)
 *   PATH                 with the control plane's kubectl first (or KUBECTL)
 *   PROVISIO_SOURCE_DIR  the source tree (crds/, hack/kube-local)
 *
 * Failing: functions documented as "asserts" end the test with a criterion
 * assertion when the cluster or a subprocess misbehaves, so a test reads as a
 * list of steps. Criterion assertions may only run on the test's own thread:
 * call those functions from the test function (or its .init/.fini), never
 * from a thread the test started. The others return a status and may be
 * called from any thread.
 *
 * Ownership: every char * returned is malloc'd and freed by the caller;
 * json_object * returned are new references (json_object_put).
 */
#ifndef PROVISIO_E2E_H
#define PROVISIO_E2E_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "kc_config.h"

/* ---- environment ---------------------------------------------------------- */

/* PROVISIO_SOURCE_DIR, else the source tree this was built from. Borrowed. */
const char *e2e_source_dir(void);
/* PROVISIO_KUBE_DIR, or NULL when unset. Borrowed. */
const char *e2e_kube_dir(void);

/* ---- subprocesses --------------------------------------------------------- */

typedef struct e2e_proc {
    int status; /* exit code; 128+N when killed by signal N; -1 when it could not run */
    char *out;  /* everything written to stdout, NUL-terminated (never NULL after a run) */
    char *err;  /* everything written to stderr, likewise */
} e2e_proc;

/*
 * Run argv[0] (looked up in PATH) with argv, input (may be NULL: /dev/null)
 * on its stdin, and capture stdout and stderr. Killed (SIGKILL) after
 * timeout_s seconds (<= 0: 120 s). Returns p->status. Any thread.
 */
int e2e_run(e2e_proc *p, const char *input, double timeout_s, const char *const argv[]);
void e2e_proc_free(e2e_proc *p);

/* kubectl (or $KUBECTL) with the NULL-terminated arguments. Any thread. */
int e2e_kubectl(e2e_proc *p, const char *input, ...) __attribute__((sentinel));
/* Same, asserts exit 0 (the message shows stderr) and returns stdout (caller frees). */
char *e2e_kubectl_ok(const char *input, ...) __attribute__((sentinel));

/*
 * hack/kube-local COMMAND $PROVISIO_KUBE_DIR ("restart-apiserver",
 * "compact"). Asserts PROVISIO_KUBE_DIR is set and the command exits 0;
 * returns its stdout (caller frees).
 */
char *e2e_kube_local(const char *command);

/* ---- clients -------------------------------------------------------------- */

/* Load the admin config from KUBECONFIG (never in-cluster). Asserts. */
kc_config *e2e_config_load(void);
/* A client with default options for cfg. Asserts. */
kc_client *e2e_client_new(kc_config *cfg);

/* A kubeconfig (YAML text) for the cluster of admin (server, CA, tls-server-name)
 * that authenticates with bearer token, namespace ns (may be NULL). Asserts. */
char *e2e_kubeconfig_for_token(kc_config *admin, const char *token, const char *ns);

/* ---- per-test context ----------------------------------------------------- */

#define E2E_LABEL_KEY "provisio-e2e"
#define E2E_MAX_CLUSTER_KINDS 8

typedef struct e2e_ctx {
    kc_config *cfg;    /* admin, from KUBECONFIG */
    kc_client *client; /* over cfg */
    char *ns;          /* this test's namespace, created by e2e_setup */
    /* Cluster-scoped resources (plural, with group: "ippools.provisio.dev")
     * whose objects labelled E2E_LABEL_KEY=<ns> e2e_teardown deletes. */
    const char *cluster_kinds[E2E_MAX_CLUSTER_KINDS];
    int ncluster_kinds;
} e2e_ctx;

/*
 * Load the admin client and create a fresh namespace named
 * "<prefix>-<unique suffix>" (prefix a DNS label of at most 40 chars).
 * Asserts.
 */
void e2e_setup(e2e_ctx *t, const char *prefix);
/*
 * Delete the namespace (without waiting for the namespace controller) and the
 * labelled cluster-scoped objects, free the client and config. Best effort,
 * never asserts: safe in .fini after a failed test, and on a zeroed ctx.
 */
void e2e_teardown(e2e_ctx *t);
/* Have e2e_teardown delete objects of this cluster-scoped resource labelled
 * E2E_LABEL_KEY=<ns>. resource is borrowed (use a literal). */
void e2e_cleanup_cluster_scoped(e2e_ctx *t, const char *resource);

/* A name nobody else uses: "<prefix>-<pid>-<counter>-<random>", DNS label. */
char *e2e_unique_name(const char *prefix);

/* ---- CRDs ----------------------------------------------------------------- */

/*
 * kubectl apply --server-side --force-conflicts -f <source>/crds/, then wait
 * (60 s) until every CRD of crds/ is Established. Asserts.
 */
void e2e_apply_crds(void);

/* ---- waiting -------------------------------------------------------------- */

double e2e_now(void); /* monotonic seconds */
void e2e_sleep(double seconds);

typedef bool (*e2e_cond_fn)(void *arg);
/* Call cond every interval_s until it returns true (-> true) or timeout_s passes
 * (-> false; cond is called once more at the deadline). Any thread. */
bool e2e_wait_until(double timeout_s, double interval_s, e2e_cond_fn cond, void *arg);

/* Poll `kubectl auth can-i VERB RESOURCE -n NS --as USER` until yes (true) or timeout. */
bool e2e_wait_can_i(const char *user, const char *verb, const char *resource, const char *ns,
                    double timeout_s);

/* ---- ServiceAccounts ------------------------------------------------------ */

/* kubectl create serviceaccount NAME -n NS. Asserts. */
void e2e_sa_create(const char *ns, const char *name);
/* kubectl create token NAME -n NS --duration=1h: the token, trimmed. Asserts. */
char *e2e_sa_token(const char *ns, const char *name);
/* "system:serviceaccount:<ns>:<name>" */
char *e2e_sa_user(const char *ns, const char *name);

/* ---- JSON ----------------------------------------------------------------- */

/* Parse the printf-formatted JSON text. Asserts it parses. */
json_object *e2e_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * The member at a '.'-separated path of object keys and array indices
 * ("metadata.name", "status.conditions.0.type"), or NULL. Borrowed.
 */
json_object *e2e_get(json_object *o, const char *path);
/* Same, when it is a string. Borrowed. */
const char *e2e_str(json_object *o, const char *path);
/* metadata.resourceVersion as a number (0 when absent or not numeric). Kubernetes
 * says resource versions are opaque; etcd's are revisions, so tests of ordering
 * may compare them. */
unsigned long long e2e_rv(json_object *o);

#endif
