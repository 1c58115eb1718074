/*
 * manager - the operator's run mode: controller-runtime's Manager in C.
 *
 * manager_main is what `provisio [flags]` runs (main.c routes every command
 * line without a subcommand here); agent_main, below, the node agent. In
 * order it:
 *
 *   1. parses the kubebuilder flags (flags.h) and sets the log level;
 *   2. loads the client config (--kubeconfig / --context, KUBECONFIG,
 *      in-cluster in a pod, ~/.kube/config) and makes the shared kc_client,
 *      whose request hook feeds rest_client_requests_total{code,method,host};
 *   3. registers controller-runtime's metric families (met_cr_register) in
 *      the default registry;
 *   4. makes the shared informer factory and calls every domain's setup
 *      function (rec_env.h) so it registers informers and controllers;
 *   5. serves /metrics on --metrics-bind-address and /healthz, /readyz on
 *      --health-probe-bind-address (/readyz has one check, "informers", that
 *      passes once every informer of the factory has synced);
 *   6. starts the informers on every replica (a standby keeps warm caches);
 *   7. without --leader-elect starts the controllers' workers as soon as
 *      their caches synced; with it, runs leader election (leader.h) on a
 *      thread of its own and runs workers only while leading;
 *   8. waits for SIGTERM / SIGINT, then shuts down (below).
 *
 * Leadership. The Lease is --leader-election-id in
 * --leader-election-namespace, else the namespace of the pod's service
 * account (/var/run/secrets/kubernetes.io/serviceaccount/namespace, or under
 * $PROVISIO_SERVICEACCOUNT_DIR), else "default". The identity is "<hostname>_<uuid>". When the
 * lease is lost (renewals failed for the renew deadline, or someone else holds it) the workers are
 * stopped at once, "leader election lost" is logged and the process exits with status 1 after a
 * quick cleanup, as controller-runtime does: the Deployment restarts it as a fresh candidate, which
 * is the safest way to drop any state built while leading.
 *
 * Shutdown on SIGTERM / SIGINT (exit status 0):
 *   - workers stop: no new reconcile starts, reconciles in flight finish
 *     (bounded: 5 s after the signal; past that the process logs and exits
 *     with status 1 *without* releasing the Lease, which then expires --
 *     releasing it while a reconcile still runs would let a second leader
 *     start);
 *   - the Lease is released (holder cleared, leaseDurationSeconds 1) so a
 *     standby takes over within about one retry period;
 *   - informers and the HTTP servers stop, everything is freed.
 *   The whole shutdown is bounded by 10 s (then exit status 1); a second
 *   signal during shutdown exits at once with status 1. SIGPIPE is ignored.
 *
 * A failing reconcile never ends the process: the controller retries it
 * with per-key backoff (controller.h) and the manager logs one JSON line
 * per failure with controller, namespace, name and reconcileID.
 *
 * Threading: manager_main runs on the process' main thread and must be
 * called before any other thread exists (it blocks SIGTERM/SIGINT for every
 * thread it starts and reads them through a signalfd). It is called once per
 * process.
 */
#ifndef PROVISIO_MANAGER_H
#define PROVISIO_MANAGER_H

/*
 * Run the operator with argv (argv[0] is the program name, then flags).
 * Returns the process exit status: 0 after a clean shutdown on a signal (or
 * for --help / --version), 1 on a runtime failure or a lost lease, 2 for a
 * bad command line.
 */
int manager_main(int argc, char **argv);

/*
 * Run the node agent (`provisio agent ...`, API.md "The node agent") with
 * argv from "agent" on (argv[0] == "agent", then flags). The same run as
 * manager_main with these differences: the agent's flags (flags.h: no
 * leader election, --node-name required, --host-root), no leader election
 * (every agent works at once, on its own node), the agent's own domain
 * setups (none yet), and two start-up checks before them: --host-root is a
 * directory and --node-name names an existing Node (one GET nodes/NODE),
 * else exit status 1. It serves /healthz, /readyz and /metrics and stops on
 * SIGTERM / SIGINT with exit status 0, as the operator does. Same return
 * values and threading rules as manager_main.
 */
int agent_main(int argc, char **argv);

/*
 * The namespace of the leader-election Lease (and of the operator):
 * `flag` when non-NULL and non-empty, else the trimmed content of
 * <sa_dir>/namespace when it exists and is non-empty (sa_dir NULL =
 * $PROVISIO_SERVICEACCOUNT_DIR when set and non-empty, else
 * KC_DEFAULT_SA_DIR, as kc_config does), else "default". *out is malloc'd
 * (caller frees). 0 or KC_ERR_NOMEM. Any thread.
 */
int mgr_lease_namespace(const char *flag, const char *sa_dir, char **out);

/*
 * The host label of rest_client_requests_total for a server URL, as
 * client-go reports it: the URL's host[:port] ("https://127.0.0.1:6443/x"
 * -> "127.0.0.1:6443"). *out malloc'd (caller frees). 0, KC_ERR_NOMEM or
 * KC_ERR_INVALID_ARG (NULL server). Any thread.
 */
int mgr_rest_host(const char *server, char **out);

#endif
