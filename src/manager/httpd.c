/*
 * httpd - /healthz, /readyz and /metrics over libwebsockets (see httpd.h).
 *
 * Each server owns one lws context with one explicitly created vhost (so we
 * get the vhost pointer and can ask it for the port it bound, which is how
 * port 0 works) and one service thread that loops on lws_service until
 * `stopping` is set. httpd_stop sets the flag and calls lws_cancel_service,
 * the one lws call that is safe from another thread; it wakes the loop
 * through lws' cancel pipe, so a stop that races the loop's check is never
 * lost. After the join the context is destroyed on the stopping thread:
 * nothing else touches it any more.
 *
 * A request is answered whole: the handler builds the body in memory
 * (bodies are small: probe listings and a few hundred metric lines), writes
 * the headers from LWS_CALLBACK_HTTP and the body in chunks from
 * LWS_CALLBACK_HTTP_WRITEABLE, then completes the transaction so keep-alive
 * connections can send the next request. The per-connection state holds the
 * pending body and is freed on completion or close.
 *
 * Checks live in two name-sorted arrays under one mutex; they are run with
 * the mutex held (so a check cannot be freed or moved while it runs), which
 * only delays a concurrent httpd_add_*_check.
 *
 * lws writes its own log lines through a global hook; we route errors and
 * warnings into log.h (logger "lws") once per process and drop the rest.
 */
#include "httpd.h"

#include "kc_error.h"
#include "pv_strbuf.h"
#include "log.h"

#include <libwebsockets.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- types ------------------------------------------------------------- */

typedef struct check {
    char *name;
    httpd_check_fn fn;
    void *ud;
} check;

typedef struct check_list {
    check *v;
    size_t n, cap;
} check_list;

struct httpd_server {
    httpd_options opts;
    pthread_mutex_t mu; /* guards healthz, readyz */
    check_list healthz;
    check_list readyz;

    /* Owned by the thread that calls start/stop. */
    struct lws_context *ctx;
    pthread_t thread;
    bool running;
    int port;
    char *iface;
    atomic_bool stopping;
};

/* A response being sent on one connection (lws per-session data). */
typedef struct session {
    char *body;
    size_t len, off;
} session;

/* ---- lws logging --------------------------------------------------------- */

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    char *copy = malloc(n + 1);
    if (!copy)
        return;
    memcpy(copy, line, n);
    copy[n] = '\0';
    log_write(level & LLL_ERR ? PLOG_ERROR : PLOG_INFO, "lws", copy, NULL);
    free(copy);
}

static void lws_log_setup(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}

static pthread_once_t g_lws_log_once = PTHREAD_ONCE_INIT;

/* ---- checks -------------------------------------------------------------- */

static int add_check(httpd_server *s, check_list *l, const char *name, httpd_check_fn fn, void *ud)
{
    if (!s || !name || !*name || strchr(name, '/') || !fn)
        return KC_ERR_INVALID_ARG;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    size_t at = 0;
    while (at < l->n && strcmp(l->v[at].name, name) < 0)
        at++;
    if (at < l->n && strcmp(l->v[at].name, name) == 0) {
        rc = KC_ERR_INVALID_ARG;
        goto out;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        check *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) {
            rc = KC_ERR_NOMEM;
            goto out;
        }
        l->v = nv;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        rc = KC_ERR_NOMEM;
        goto out;
    }
    memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof *l->v);
    l->v[at] = (check){copy, fn, ud};
    l->n++;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int httpd_add_healthz_check(httpd_server *s, const char *name, httpd_check_fn fn, void *ud)
{
    return s ? add_check(s, &s->healthz, name, fn, ud) : KC_ERR_INVALID_ARG;
}

int httpd_add_readyz_check(httpd_server *s, const char *name, httpd_check_fn fn, void *ud)
{
    return s ? add_check(s, &s->readyz, name, fn, ud) : KC_ERR_INVALID_ARG;
}

static void free_checks(check_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- requests ------------------------------------------------------------ */

typedef struct response {
    unsigned int status;
    const char *content_type;
    bool nosniff;
    pv_strbuf body;
} response;

/* The query of the request: "verbose" present, "exclude" values. */
typedef struct query {
    bool verbose;
    char **exclude;
    bool *exclude_used;
    size_t nexclude;
    bool oom;
} query;

static void query_free(query *q)
{
    for (size_t i = 0; i < q->nexclude; i++)
        free(q->exclude[i]);
    free(q->exclude);
    free(q->exclude_used);
}

static void query_read(struct lws *wsi, query *q)
{
    memset(q, 0, sizeof *q);
    for (int idx = 0;; idx++) {
        int len = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, idx);
        if (len <= 0)
            break;
        char *arg = malloc((size_t)len + 1);
        if (!arg) {
            q->oom = true;
            return;
        }
        if (lws_hdr_copy_fragment(wsi, arg, len + 1, WSI_TOKEN_HTTP_URI_ARGS, idx) < 0) {
            free(arg);
            break;
        }
        char *eq = strchr(arg, '=');
        size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (klen == 7 && memcmp(arg, "verbose", 7) == 0) {
            q->verbose = true;
        } else if (klen == 7 && memcmp(arg, "exclude", 7) == 0 && eq) {
            char **ne = realloc(q->exclude, (q->nexclude + 1) * sizeof *ne);
            if (ne)
                q->exclude = ne;
            bool *nu = realloc(q->exclude_used, (q->nexclude + 1) * sizeof *nu);
            if (nu)
                q->exclude_used = nu;
            char *v = strdup(eq + 1);
            if (!ne || !nu || !v) {
                free(v);
                free(arg);
                q->oom = true;
                return;
            }
            q->exclude[q->nexclude] = v;
            q->exclude_used[q->nexclude] = false;
            q->nexclude++;
        }
        free(arg);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The aggregated /healthz or /readyz answer (controller-runtime's format). */
static void serve_aggregate(httpd_server *s, check_list *l, const query *q, response *r)
{
    pv_strbuf verbose = {0};
    bool failed = false;
    pthread_mutex_lock(&s->mu);
    if (l->n == 0)
        pv_strbuf_add(&verbose, "[+]ping ok\n");
    for (size_t i = 0; i < l->n; i++) {
        const check *c = &l->v[i];
        bool excluded = false;
        for (size_t j = 0; j < q->nexclude; j++) {
            if (strcmp(q->exclude[j], c->name) == 0) {
                q->exclude_used[j] = true;
                excluded = true;
            }
        }
        pv_strbuf_add(&verbose, "[");
        if (excluded) {
            pv_strbuf_add(&verbose, "+]");
            pv_strbuf_add(&verbose, c->name);
            pv_strbuf_add(&verbose, " excluded: ok\n");
            continue;
        }
        char *why = NULL;
        int rc = c->fn(c->ud, &why);
        if (rc != 0) {
            log_write(PLOG_DEBUG, "healthz", "healthz check failed", "checker", c->name, "error",
                      why ? why : "", NULL);
            failed = true;
        }
        free(why);
        pv_strbuf_add(&verbose, rc ? "-]" : "+]");
        pv_strbuf_add(&verbose, c->name);
        pv_strbuf_add(&verbose, rc ? " failed: reason withheld\n" : " ok\n");
    }
    pthread_mutex_unlock(&s->mu);

    /* Excludes that matched nothing, sorted, each quoted. */
    char **unknown = q->nexclude ? calloc(q->nexclude, sizeof *unknown) : NULL;
    size_t nunknown = 0;
    for (size_t j = 0; unknown && j < q->nexclude; j++) {
        bool dup = false;
        for (size_t k = 0; k < nunknown; k++)
            dup = dup || strcmp(unknown[k], q->exclude[j]) == 0;
        if (!q->exclude_used[j] && !dup)
            unknown[nunknown++] = q->exclude[j];
    }
    if (nunknown) {
        qsort(unknown, nunknown, sizeof *unknown, cmp_str);
        pv_strbuf_add(&verbose, "warn: some health checks cannot be excluded: no matches for ");
        for (size_t k = 0; k < nunknown; k++) {
            if (k)
                pv_strbuf_add(&verbose, ",");
            pv_strbuf_add(&verbose, "\"");
            pv_strbuf_add(&verbose, unknown[k]);
            pv_strbuf_add(&verbose, "\"");
        }
        pv_strbuf_add(&verbose, "\n");
    }
    free(unknown);

    r->status = failed ? 500 : 200;
    r->nosniff = true;
    if (!failed && !q->verbose) {
        pv_strbuf_add(&r->body, "ok");
    } else {
        if (verbose.p)
            pv_strbuf_add(&r->body, verbose.p);
        pv_strbuf_add(&r->body, failed ? "healthz check failed\n" : "healthz check passed\n");
    }
    if (verbose.oom)
        r->body.oom = true;
    pv_strbuf_free(&verbose);
}

/* /healthz/<name>: one check, with its reason. */
static void serve_single(httpd_server *s, check_list *l, const char *name, response *r)
{
    bool found = false;
    int rc = 0;
    char *why = NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].name, name) == 0) {
            found = true;
            rc = l->v[i].fn(l->v[i].ud, &why);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (!found && l->n == 0 && strcmp(name, "ping") == 0)
        found = true; /* the implicit ping check */
    r->nosniff = true;
    if (!found) {
        r->status = 404;
        pv_strbuf_add(&r->body, "404 page not found\n");
    } else if (rc) {
        r->status = 500;
        pv_strbuf_add(&r->body, "internal server error: ");
        pv_strbuf_add(&r->body, why ? why : "check failed");
        pv_strbuf_add(&r->body, "\n");
    } else {
        r->status = 200;
        pv_strbuf_add(&r->body, "ok");
    }
    free(why);
}

static void serve_probe(httpd_server *s, check_list *l, const char *rest, struct lws *wsi,
                        response *r)
{
    if (*rest == '\0' || strcmp(rest, "/") == 0) {
        query q;
        query_read(wsi, &q);
        if (q.oom)
            r->body.oom = true;
        else
            serve_aggregate(s, l, &q, r);
        query_free(&q);
    } else {
        serve_single(s, l, rest + 1, r);
    }
}

static void route(httpd_server *s, struct lws *wsi, const char *path, response *r)
{
    r->content_type = "text/plain; charset=utf-8";
    if (s->opts.probes && strncmp(path, "/healthz", 8) == 0 &&
        (path[8] == '\0' || path[8] == '/')) {
        serve_probe(s, &s->healthz, path + 8, wsi, r);
        return;
    }
    if (s->opts.probes && strncmp(path, "/readyz", 7) == 0 && (path[7] == '\0' || path[7] == '/')) {
        serve_probe(s, &s->readyz, path + 7, wsi, r);
        return;
    }
    if (s->opts.metrics && strcmp(path, "/metrics") == 0) {
        char *text = NULL;
        size_t len = 0;
        if (met_render(s->opts.metrics, &text, &len) != 0) {
            r->body.oom = true;
            return;
        }
        r->status = 200;
        r->content_type = MET_CONTENT_TYPE;
        /* Adopt the rendered text as the body without copying. */
        r->body.p = text;
        r->body.len = len;
        r->body.cap = len + 1;
        return;
    }
    r->status = 404;
    r->nosniff = true;
    pv_strbuf_add(&r->body, "404 page not found\n");
}

/* ---- lws glue ------------------------------------------------------------ */

static void session_clear(session *ss)
{
    free(ss->body);
    ss->body = NULL;
    ss->len = ss->off = 0;
}

/* Write the status line and headers. Returns nonzero to drop the connection. */
static int write_headers(struct lws *wsi, const response *r, size_t len)
{
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = &buf[LWS_PRE], *p = start, *end = &buf[sizeof buf - 1];
    if (lws_add_http_common_headers(wsi, r->status, r->content_type, (lws_filepos_t)len, &p, end))
        return 1;
    static const char nosniff[] = "nosniff";
    if (r->nosniff && lws_add_http_header_by_name(
                          wsi, (const unsigned char *)"x-content-type-options:",
                          (const unsigned char *)nosniff, (int)sizeof nosniff - 1, &p, end))
        return 1;
    return lws_finalize_write_http_header(wsi, start, &p, end);
}

#define CHUNK 16384

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    session *ss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        httpd_server *s = lws_context_user(lws_get_context(wsi));
        session_clear(ss);
        char *uri = NULL;
        int urilen = 0;
        int method = lws_http_get_uri_and_method(wsi, &uri, &urilen);
        response r = {0};
        route(s, wsi, in ? (const char *)in : "/", &r);
        if (r.body.oom) {
            pv_strbuf_free(&r.body);
            r = (response){.status = 500, .content_type = "text/plain; charset=utf-8"};
            pv_strbuf_add(&r.body, "out of memory\n");
            if (r.body.oom)
                return -1;
        }
        if (write_headers(wsi, &r, r.body.len)) {
            pv_strbuf_free(&r.body);
            return -1;
        }
        if (method == LWSHUMETH_HEAD || r.body.len == 0) {
            pv_strbuf_free(&r.body);
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        ss->body = pv_strbuf_take(&r.body, &ss->len); /* not oom, so never NULL */
        ss->off = 0;
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!ss || !ss->body)
            break;
        unsigned char buf[LWS_PRE + CHUNK];
        size_t n = ss->len - ss->off;
        if (n > CHUNK)
            n = CHUNK;
        memcpy(buf + LWS_PRE, ss->body + ss->off, n);
        bool last = ss->off + n == ss->len;
        int w = lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        if (w < 0 || (size_t)w < n)
            return -1;
        ss->off += n;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        session_clear(ss);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
        if (ss)
            session_clear(ss);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols g_protocols[] = {
    {"http", callback_http, sizeof(session), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- bind addresses ------------------------------------------------------ */

int httpd_parse_bind_address(const char *addr, char **host, int *port)
{
    if (!addr || !host || !port)
        return KC_ERR_INVALID_ARG;
    *host = NULL;
    *port = 0;
    if (strcmp(addr, "0") == 0) {
        *port = -1;
        return 0;
    }
    const char *colon;
    const char *hs = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return KC_ERR_INVALID_ARG;
        hs = addr + 1;
        hlen = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return KC_ERR_INVALID_ARG; /* no port, or an unbracketed IPv6 address */
        hlen = (size_t)(colon - addr);
    }
    const char *ps = colon + 1;
    if (*ps == '\0' || strlen(ps) > 5)
        return KC_ERR_INVALID_ARG;
    int p = 0;
    for (const char *c = ps; *c; c++) {
        if (*c < '0' || *c > '9')
            return KC_ERR_INVALID_ARG;
        p = p * 10 + (*c - '0');
    }
    if (p > 65535)
        return KC_ERR_INVALID_ARG;
    if (hlen > 0) {
        *host = malloc(hlen + 1);
        if (!*host)
            return KC_ERR_NOMEM;
        memcpy(*host, hs, hlen);
        (*host)[hlen] = '\0';
    }
    *port = p;
    return 0;
}

/*
 * The numeric address lws should bind for host (an IP literal stays as is,
 * a name such as "localhost" resolves to its first address, as Go's
 * net.Listen does). *is_v4 tells which family it is.
 */
static int resolve_host(const char *host, char **numeric, bool *is_v4)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return KC_ERR_INVALID_ARG;
    /* Prefer IPv4 like Go's "tcp" network does for names such as localhost. */
    struct addrinfo *pick = res;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    char tmp[INET6_ADDRSTRLEN];
    const void *a = pick->ai_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
    *is_v4 = pick->ai_family == AF_INET;
    bool ok = inet_ntop(pick->ai_family, a, tmp, sizeof tmp) != NULL;
    freeaddrinfo(res);
    if (!ok)
        return KC_ERR_INVALID_ARG;
    *numeric = strdup(tmp);
    return *numeric ? 0 : KC_ERR_NOMEM;
}

/* ---- lifecycle ----------------------------------------------------------- */

httpd_server *httpd_new(const httpd_options *opts)
{
    httpd_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (opts)
        s->opts = *opts;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->stopping, false);
    return s;
}

static void *service_main(void *arg)
{
    httpd_server *s = arg;
    while (!atomic_load(&s->stopping)) {
        if (lws_service(s->ctx, 0) < 0)
            break;
    }
    return NULL;
}

int httpd_start(httpd_server *s, const char *addr, int *out_port)
{
    if (out_port)
        *out_port = 0;
    if (!s || s->running)
        return KC_ERR_INVALID_ARG;
    char *host = NULL;
    int port;
    int rc = httpd_parse_bind_address(addr, &host, &port);
    if (rc)
        return rc;
    if (port < 0)
        return 0; /* disabled */

    char *iface = NULL;
    bool is_v4 = false;
    if (host) {
        rc = resolve_host(host, &iface, &is_v4);
        free(host);
        if (rc)
            return rc;
    }

    pthread_once(&g_lws_log_once, lws_log_setup);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (is_v4)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.user = s;
    /* A handful of probes and scrapes at a time; keep lws' tables small. */
    info.fd_limit_per_thread = 64;
    info.server_string = "provisio";
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        free(iface);
        return KC_ERR_NOMEM;
    }

    struct lws_context_creation_info vinfo;
    memset(&vinfo, 0, sizeof vinfo);
    vinfo.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (is_v4)
        vinfo.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    vinfo.port = port;
    vinfo.iface = iface;
    vinfo.protocols = g_protocols;
    vinfo.vhost_name = "provisio";
    vinfo.server_string = "provisio";
    struct lws_vhost *vh = lws_create_vhost(s->ctx, &vinfo);
    int bound = vh ? lws_get_vhost_listen_port(vh) : 0;
    if (!vh || bound <= 0) {
        log_write(PLOG_ERROR, "httpd", "cannot listen", "address", addr, NULL);
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        free(iface);
        return KC_ERR_TRANSPORT;
    }

    atomic_store(&s->stopping, false);
    if (pthread_create(&s->thread, NULL, service_main, s) != 0) {
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        free(iface);
        return KC_ERR_NOMEM;
    }
    s->iface = iface;
    s->port = bound;
    s->running = true;
    if (out_port)
        *out_port = bound;
    return 0;
}

bool httpd_running(const httpd_server *s)
{
    return s && s->running;
}

void httpd_stop(httpd_server *s)
{
    if (!s || !s->running)
        return;
    atomic_store(&s->stopping, true);
    lws_cancel_service(s->ctx);
    pthread_join(s->thread, NULL);
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
    free(s->iface);
    s->iface = NULL;
    s->port = 0;
    s->running = false;
}

void httpd_free(httpd_server *s)
{
    if (!s)
        return;
    httpd_stop(s);
    free_checks(&s->healthz);
    free_checks(&s->readyz);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
