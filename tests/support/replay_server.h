/*
 * replay_server - a small HTTPS/1.1 server on 127.0.0.1 that plays back
 * scripted answers, for unit tests of the REST client (and of anything built
 * on it). curl's own test suite serves canned responses the same way.
 *
 * At start it makes a fresh CA and a server certificate for 127.0.0.1 and
 * localhost (plus "replay.test" and "kubernetes.default.svc" for
 * tls-server-name tests), listens on an ephemeral port, and serves each
 * accepted connection on its own thread, with keep-alive (several requests
 * per connection), so tests can count connections to check reuse.
 *
 * Answers come from a script: each request takes the first entry, in push
 * order, that still has uses left and whose method and path prefix match
 * (NULL matches anything, so entries without a matcher are simply "next in
 * order"). A request nothing matches gets 404 with a Status body naming it.
 * An answer can be sent with Content-Length or chunked in pieces of given
 * sizes with pauses between them (to split watch events at awkward places),
 * cut off abruptly after some bytes, or held open (a watch on which nothing
 * happens) until the client goes away or the server stops.
 *
 * Every request is recorded (method, target = path and query as sent,
 * headers, body, connection number, client certificate CN).
 *
 * Threading: rs_push and the accessors may be called from any thread while
 * the server runs. Recorded requests stay valid until rs_stop. The server
 * sets SIGPIPE to SIG_IGN for the process (a client that goes away must not
 * kill the test).
 */
#ifndef PROVISIO_REPLAY_SERVER_H
#define PROVISIO_REPLAY_SERVER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct rs_server rs_server;

typedef struct rs_opts {
    bool require_client_cert; /* ask for a client certificate signed by the server's CA */
} rs_opts;

typedef struct rs_response {
    const char *method;      /* match: "GET"...; NULL = any */
    const char *path_prefix; /* match: prefix of path+query; NULL = any */
    int status;              /* 0 = 200 */
    const char *headers;     /* extra header lines, each ending in "\r\n"; NULL = none */
    const char *body;        /* NULL = empty */
    size_t body_len;         /* 0 = strlen(body) */
    bool chunked;            /* Transfer-Encoding: chunked (implied by chunks or hold) */
    const size_t *chunks;    /* sizes of the chunks; the rest of the body goes in one more */
    size_t nchunks;
    int chunk_delay_ms; /* pause before every chunk but the first */
    int delay_ms;       /* pause before answering at all */
    bool cut;           /* close the TCP connection abruptly after cut_after body bytes */
    size_t cut_after;
    bool hold;  /* after the body, keep the stream open until the client leaves */
    bool close; /* Connection: close after this answer */
    int times;  /* how many requests this entry answers: 0 = 1, -1 = forever */
} rs_response;

typedef struct rs_request {
    char *method;
    char *target; /* path and query as received */
    size_t nheaders;
    char **header_names;
    char **header_values;
    char *body; /* NUL-terminated; body_len bytes */
    size_t body_len;
    int conn_id;     /* 1 for the first accepted connection, ... */
    char *client_cn; /* CN of the client certificate, or NULL */
} rs_request;

/* Start a server (opts may be NULL). NULL on failure. */
rs_server *rs_start(const rs_opts *opts);

/* Stop the server, join its threads, free everything it recorded. NULL is a no-op. */
void rs_stop(rs_server *s);

int rs_port(const rs_server *s);

/* "https://127.0.0.1:<port>"; borrowed for the life of the server. */
const char *rs_url(const rs_server *s);

/* The CA certificate (PEM) that signed the server certificate; borrowed. */
const char *rs_ca_pem(const rs_server *s);

/* Add a scripted answer (copied). */
void rs_push(rs_server *s, const rs_response *r);

/* Shorthand: answer the next request (any method and path) with status and body. */
void rs_push_simple(rs_server *s, int status, const char *body);

/* Scripted answers with uses left (entries with times = -1 count as one). */
size_t rs_pending(rs_server *s);

size_t rs_request_count(rs_server *s);

/* The i-th request received (0-based); borrowed until rs_stop; NULL if none yet. */
const rs_request *rs_request_at(rs_server *s, size_t i);

/* Wait until at least n requests arrived; false on timeout. */
bool rs_wait_requests(rs_server *s, size_t n, int timeout_ms);

/* First value of a header (case-insensitive name) or NULL. */
const char *rs_header(const rs_request *r, const char *name);

/* TCP connections accepted so far. */
int rs_connections(rs_server *s);

/* A client certificate and key (PEM, malloc'd) signed by the server's CA. 0 ok. */
int rs_issue_client_cert(rs_server *s, const char *cn, char **cert_pem, char **key_pem);

/* A CA certificate (PEM, malloc'd) unrelated to any server: for wrong-CA tests. */
char *rs_unrelated_ca_pem(void);

/* A loopback port nothing listens on (bound and released; good enough for tests). */
int rs_closed_port(void);

typedef struct rs_kubeconfig_opts {
    const char *server;          /* NULL = rs_url(s) */
    const char *ca_pem;          /* NULL = the server's CA */
    bool no_ca;                  /* write no certificate-authority-data */
    bool insecure;               /* insecure-skip-tls-verify: true */
    const char *tls_server_name; /* tls-server-name, or NULL */
    const char *user_yaml;       /* lines of the user entry, indented 4 spaces; NULL = {} */
} rs_kubeconfig_opts;

/* A kubeconfig document for the server (malloc'd), for kc_config_from_yaml. */
char *rs_kubeconfig(const rs_server *s, const rs_kubeconfig_opts *o);

#endif
