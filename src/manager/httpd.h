/*
 * httpd - the manager's plain-HTTP endpoints: /healthz, /readyz, /metrics.
 *
 * One httpd_server is one listening socket served by libwebsockets on its
 * own service thread, as controller-runtime runs its probe server and its
 * metrics server: create one with probes=true for --health-probe-bind-address
 * and one with a registry for --metrics-bind-address (both in one server is
 * fine too). Several servers can run in one process.
 *
 * Endpoints (same bodies and codes as controller-runtime's pkg/healthz and
 * promhttp):
 *   GET /healthz, /readyz    200 "ok" when every check passes; 500 with the
 *                            verbose listing otherwise. "?verbose" lists every
 *                            check ("[+]name ok", "[-]name failed: reason
 *                            withheld", sorted by name) then "healthz check
 *                            passed"/"healthz check failed". "?exclude=name"
 *                            skips a check. No checks registered: a "ping"
 *                            check that always passes.
 *   GET /healthz/<name>      one check: 200 "ok" or 500 "internal server
 *                            error: <why>"; 404 for an unknown name.
 *   GET /metrics             the registry in text format 0.0.4
 *                            (Content-Type: text/plain; version=0.0.4; charset=utf-8)
 *   anything else            404 "404 page not found"
 * HEAD gets the same status and headers without a body.
 *
 * Ephemeral ports: a bind address with port 0 (":0", "127.0.0.1:0") asks the
 * kernel for a free port; lws 4.1 supports port 0 and reports the port it
 * bound through lws_get_vhost_listen_port(), which httpd_start returns. Tests
 * rely on this.
 *
 * Errors: int returns are 0 or a negative kc_status.
 */
#ifndef PROVISIO_HTTPD_H
#define PROVISIO_HTTPD_H

#include "metrics.h"

#include <stdbool.h>

typedef struct httpd_server httpd_server;

/*
 * A check: return 0 when healthy. On failure return nonzero and optionally
 * set *why to a malloc'd reason (httpd frees it); the reason is only shown
 * on the single-check path /healthz/<name>, never in the aggregate listing
 * (which is public). Checks run on the server's service thread while it
 * handles a request: they must be quick, must not block on the network and
 * must be safe to call concurrently with the rest of the program.
 */
typedef int (*httpd_check_fn)(void *ud, char **why);

typedef struct httpd_options {
    met_registry *metrics; /* serve /metrics from this registry (borrowed); NULL: 404 */
    bool probes;           /* serve /healthz and /readyz */
} httpd_options;

/* A new stopped server, or NULL when out of memory. opts is copied. */
httpd_server *httpd_new(const httpd_options *opts);

/*
 * Register a named check (AddHealthzCheck / AddReadyzCheck). name is copied;
 * ud is borrowed until httpd_free. Names are unique per endpoint
 * (KC_ERR_INVALID_ARG for a duplicate or a name with '/'). Any thread, any
 * time, also while running.
 */
int httpd_add_healthz_check(httpd_server *s, const char *name, httpd_check_fn fn, void *ud);
int httpd_add_readyz_check(httpd_server *s, const char *name, httpd_check_fn fn, void *ud);

/*
 * Bind to addr (controller-runtime's syntax: ":8081" all interfaces,
 * "127.0.0.1:8080", "[::1]:8080", "localhost:8080"; "0" disables the server)
 * and start the service thread. *out_port (may be NULL) receives the bound
 * port, which differs from the one asked for only when that was 0; it is 0
 * when the server is disabled. Returns KC_ERR_INVALID_ARG for a bad address
 * or a server already running, KC_ERR_TRANSPORT when the address cannot be
 * bound (in use, not local), KC_ERR_NOMEM. Call from the owning thread.
 */
int httpd_start(httpd_server *s, const char *addr, int *out_port);

/* True between a successful httpd_start (not disabled) and httpd_stop. */
bool httpd_running(const httpd_server *s);

/*
 * Stop serving: close the listener and connections and join the service
 * thread (returns within milliseconds; a check in progress finishes first).
 * A stopped or never-started server is fine. The server may be started
 * again. Call from the thread that started it.
 */
void httpd_stop(httpd_server *s);

/* Stop if needed and free. NULL is a no-op. */
void httpd_free(httpd_server *s);

/*
 * Split a bind address: *host is a malloc'd host (NULL for all interfaces),
 * *port the port; port -1 means disabled ("0"). Exposed for tests.
 */
int httpd_parse_bind_address(const char *addr, char **host, int *port);

#endif
