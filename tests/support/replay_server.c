/*
 * replay_server - scripted HTTPS/1.1 answers on loopback (see the header).
 *
 * Threads: one accept thread, and one thread per accepted connection. They
 * share the script and the record of requests under s->mu; everything else
 * a connection thread touches is its own. Every blocking wait (poll for the
 * next request, pauses between chunks, a held stream) runs in steps of at
 * most POLL_STEP_MS and checks s->stopping, so rs_stop returns promptly.
 * Sockets also carry a receive timeout so a client stuck half-way through a
 * TLS record cannot hang a thread forever.
 *
 * Certificates are made at start with the OpenSSL API (P-256 keys): a CA, and
 * a server certificate it signs. Nothing is written to disk.
 */
#include "replay_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define POLL_STEP_MS 20
#define MAX_HEAD_BYTES (1 << 20)

typedef struct rs_entry {
    rs_response r; /* strings and chunks owned (copied) */
    int left;      /* uses left; -1 = forever */
} rs_entry;

typedef struct rs_conn {
    struct rs_conn *next;
    pthread_t thread;
    rs_server *s;
    int fd;
    int id;
} rs_conn;

struct rs_server {
    int listen_fd;
    int port;
    char url[64];
    pthread_t accept_thread;
    volatile int stopping; /* read with __atomic builtins */

    SSL_CTX *ctx;
    EVP_PKEY *ca_key;
    X509 *ca;
    char *ca_pem;
    long next_serial;

    pthread_mutex_t mu; /* guards everything below */
    rs_entry *entries;
    size_t nentries, cap_entries;
    rs_request **reqs;
    size_t nreqs, cap_reqs;
    int nconns;
    rs_conn *conns;
};

static bool stopping(rs_server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) != 0;
}

static void sleep_ms_interruptible(rs_server *s, int ms)
{
    while (ms > 0 && !stopping(s)) {
        int step = ms < POLL_STEP_MS ? ms : POLL_STEP_MS;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* ---- certificates -------------------------------------------------------- */

static EVP_PKEY *new_key(void)
{
    return EVP_EC_gen("P-256");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

typedef enum { CERT_CA, CERT_SERVER, CERT_CLIENT } cert_kind;

/* issuer/issuer_key NULL: self-signed. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, cert_kind kind, X509 *issuer,
                      EVP_PKEY *issuer_key, long serial)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    bool ok = X509_set_version(x, 2) && ASN1_INTEGER_set(X509_get_serialNumber(x), serial) &&
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
              X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400L) && X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                          (const unsigned char *)"provisio tests", -1, -1, 0);
    ok = ok &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    ok = ok && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : x;
    ok = ok && add_ext(x, iss, NID_subject_key_identifier, "hash") == 0;
    ok = ok && add_ext(x, iss, NID_authority_key_identifier, "keyid:always") == 0;
    switch (kind) {
    case CERT_CA:
        ok = ok && add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE") == 0;
        ok = ok && add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
        break;
    case CERT_SERVER:
        ok = ok && add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") == 0;
        ok = ok && add_ext(x, iss, NID_key_usage, "critical,digitalSignature") == 0;
        ok = ok && add_ext(x, iss, NID_ext_key_usage, "serverAuth") == 0;
        ok = ok && add_ext(x, iss, NID_subject_alt_name,
                           "IP:127.0.0.1,DNS:localhost,DNS:replay.test,"
                           "DNS:kubernetes.default.svc") == 0;
        break;
    case CERT_CLIENT:
        ok = ok && add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") == 0;
        ok = ok && add_ext(x, iss, NID_key_usage, "critical,digitalSignature") == 0;
        ok = ok && add_ext(x, iss, NID_ext_key_usage, "clientAuth") == 0;
        break;
    }
    ok = ok && X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static char *bio_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n < 0)
        return NULL;
    char *out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    return out;
}

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    char *out = PEM_write_bio_X509(b, x) ? bio_string(b) : NULL;
    BIO_free(b);
    return out;
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    char *out = PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) ? bio_string(b) : NULL;
    BIO_free(b);
    return out;
}

char *rs_unrelated_ca_pem(void)
{
    EVP_PKEY *k = new_key();
    if (!k)
        return NULL;
    X509 *ca = new_cert(k, "unrelated test CA", CERT_CA, NULL, NULL, 1);
    char *pem = ca ? cert_pem(ca) : NULL;
    X509_free(ca);
    EVP_PKEY_free(k);
    return pem;
}

int rs_issue_client_cert(rs_server *s, const char *cn, char **cert_out, char **key_out)
{
    *cert_out = *key_out = NULL;
    EVP_PKEY *k = new_key();
    if (!k)
        return -1;
    pthread_mutex_lock(&s->mu);
    long serial = ++s->next_serial;
    pthread_mutex_unlock(&s->mu);
    X509 *x = new_cert(k, cn, CERT_CLIENT, s->ca, s->ca_key, serial);
    if (x) {
        *cert_out = cert_pem(x);
        *key_out = key_pem(k);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    if (!*cert_out || !*key_out) {
        free(*cert_out);
        free(*key_out);
        *cert_out = *key_out = NULL;
        return -1;
    }
    return 0;
}

/* ---- script and record --------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void rs_push(rs_server *s, const rs_response *r)
{
    rs_entry e = {0};
    e.r = *r;
    e.r.method = dup_or_null(r->method);
    e.r.path_prefix = dup_or_null(r->path_prefix);
    e.r.headers = dup_or_null(r->headers);
    size_t blen = r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0;
    char *body = malloc(blen + 1);
    if (!body)
        abort();
    if (blen)
        memcpy(body, r->body, blen);
    body[blen] = '\0';
    e.r.body = body;
    e.r.body_len = blen;
    if (r->nchunks) {
        size_t *ch = malloc(r->nchunks * sizeof(*ch));
        if (!ch)
            abort();
        memcpy(ch, r->chunks, r->nchunks * sizeof(*ch));
        e.r.chunks = ch;
    }
    e.left = r->times == 0 ? 1 : r->times;
    pthread_mutex_lock(&s->mu);
    if (s->nentries == s->cap_entries) {
        size_t cap = s->cap_entries ? s->cap_entries * 2 : 16;
        rs_entry *ne = realloc(s->entries, cap * sizeof(*ne));
        if (!ne)
            abort();
        s->entries = ne;
        s->cap_entries = cap;
    }
    s->entries[s->nentries++] = e;
    pthread_mutex_unlock(&s->mu);
}

void rs_push_simple(rs_server *s, int status, const char *body)
{
    rs_response r = {.status = status, .body = body};
    rs_push(s, &r);
}

size_t rs_pending(rs_server *s)
{
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nentries; i++)
        if (s->entries[i].left != 0)
            n++;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t rs_request_count(rs_server *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->nreqs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

const rs_request *rs_request_at(rs_server *s, size_t i)
{
    pthread_mutex_lock(&s->mu);
    const rs_request *r = i < s->nreqs ? s->reqs[i] : NULL;
    pthread_mutex_unlock(&s->mu);
    return r;
}

bool rs_wait_requests(rs_server *s, size_t n, int timeout_ms)
{
    for (int waited = 0;; waited += 5) {
        if (rs_request_count(s) >= n)
            return true;
        if (waited >= timeout_ms)
            return false;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

const char *rs_header(const rs_request *r, const char *name)
{
    for (size_t i = 0; r && i < r->nheaders; i++)
        if (!strcasecmp(r->header_names[i], name))
            return r->header_values[i];
    return NULL;
}

int rs_connections(rs_server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->nconns;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int rs_port(const rs_server *s)
{
    return s->port;
}

const char *rs_url(const rs_server *s)
{
    return s->url;
}

const char *rs_ca_pem(const rs_server *s)
{
    return s->ca_pem;
}

static void request_free(rs_request *r)
{
    if (!r)
        return;
    free(r->method);
    free(r->target);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->header_names[i]);
        free(r->header_values[i]);
    }
    free(r->header_names);
    free(r->header_values);
    free(r->body);
    free(r->client_cn);
    free(r);
}

static void record(rs_server *s, rs_request *r)
{
    pthread_mutex_lock(&s->mu);
    if (s->nreqs == s->cap_reqs) {
        size_t cap = s->cap_reqs ? s->cap_reqs * 2 : 64;
        rs_request **nr = realloc(s->reqs, cap * sizeof(*nr));
        if (!nr)
            abort();
        s->reqs = nr;
        s->cap_reqs = cap;
    }
    s->reqs[s->nreqs++] = r;
    pthread_mutex_unlock(&s->mu);
}

/* The entry answering r, with its use counted; a copy of its fields (borrowed strings). */
static bool pick(rs_server *s, const rs_request *r, rs_response *out)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nentries; i++) {
        rs_entry *e = &s->entries[i];
        if (e->left == 0)
            continue;
        if (e->r.method && strcmp(e->r.method, r->method) != 0)
            continue;
        if (e->r.path_prefix && strncmp(r->target, e->r.path_prefix, strlen(e->r.path_prefix)))
            continue;
        if (e->left > 0)
            e->left--;
        *out = e->r; /* entries' strings live until rs_stop */
        found = true;
        break;
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* ---- one connection ------------------------------------------------------ */

typedef struct conn_io {
    rs_server *s;
    SSL *ssl;
    int fd;
    char *buf;
    size_t len, cap;
} conn_io;

/* Read more bytes into io->buf. 1 ok, 0 EOF/error/stop. */
static int read_more(conn_io *io)
{
    if (SSL_pending(io->ssl) == 0) {
        for (;;) {
            if (stopping(io->s))
                return 0;
            struct pollfd p = {io->fd, POLLIN, 0};
            int n = poll(&p, 1, POLL_STEP_MS);
            if (n > 0)
                break;
            if (n < 0 && errno != EINTR)
                return 0;
        }
    }
    if (io->cap - io->len < 16384) {
        size_t cap = io->cap ? io->cap * 2 : 32768;
        char *nb = realloc(io->buf, cap);
        if (!nb)
            return 0;
        io->buf = nb;
        io->cap = cap;
    }
    int n = SSL_read(io->ssl, io->buf + io->len, (int)(io->cap - io->len - 1));
    if (n <= 0)
        return 0;
    io->len += (size_t)n;
    io->buf[io->len] = '\0';
    return 1;
}

static bool write_all(conn_io *io, const char *p, size_t n)
{
    while (n > 0) {
        int w = SSL_write(io->ssl, p, (int)n);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void consume(conn_io *io, size_t n)
{
    memmove(io->buf, io->buf + n, io->len - n);
    io->len -= n;
    if (io->buf)
        io->buf[io->len] = '\0';
}

static char *trim_dup(const char *p, size_t n)
{
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
        n--;
    return strndup(p, n);
}

/* Parse the request head (in io->buf, head_len bytes incl. the blank line). */
static rs_request *parse_head(const char *head, size_t head_len)
{
    rs_request *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    const char *end = head + head_len;
    const char *eol = strstr(head, "\r\n");
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2) {
        request_free(r);
        return NULL;
    }
    r->method = strndup(head, (size_t)(sp1 - head));
    r->target = strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    const char *line = eol + 2;
    while (line < end) {
        const char *le = strstr(line, "\r\n");
        if (!le || le == line)
            break;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon) {
            char **nn = realloc(r->header_names, (r->nheaders + 1) * sizeof(char *));
            if (nn)
                r->header_names = nn;
            char **nv = realloc(r->header_values, (r->nheaders + 1) * sizeof(char *));
            if (nv)
                r->header_values = nv;
            if (!nn || !nv)
                abort();
            r->header_names[r->nheaders] = trim_dup(line, (size_t)(colon - line));
            r->header_values[r->nheaders] = trim_dup(colon + 1, (size_t)(le - colon - 1));
            r->nheaders++;
        }
        line = le + 2;
    }
    return r;
}

/* Read the body per Content-Length or chunked encoding. false on error. */
static bool read_body(conn_io *io, rs_request *r)
{
    const char *te = rs_header(r, "Transfer-Encoding");
    const char *cl = rs_header(r, "Content-Length");
    if (te && strcasestr(te, "chunked")) {
        char *body = NULL;
        size_t blen = 0;
        for (;;) {
            char *eol;
            while (!(eol = strstr(io->buf ? io->buf : "", "\r\n")))
                if (!read_more(io))
                    goto fail;
            size_t size = strtoul(io->buf, NULL, 16);
            size_t hdr = (size_t)(eol - io->buf) + 2;
            while (io->len < hdr + size + 2)
                if (!read_more(io))
                    goto fail;
            char *nb = realloc(body, blen + size + 1);
            if (!nb)
                goto fail;
            body = nb;
            memcpy(body + blen, io->buf + hdr, size);
            blen += size;
            body[blen] = '\0';
            consume(io, hdr + size + 2);
            if (size == 0)
                break; /* (trailers are not supported: curl sends none) */
        }
        r->body = body ? body : strdup("");
        r->body_len = blen;
        return r->body != NULL;
    fail:
        free(body);
        return false;
    }
    size_t n = cl ? strtoul(cl, NULL, 10) : 0;
    while (io->len < n)
        if (!read_more(io))
            return false;
    r->body = malloc(n + 1);
    if (!r->body)
        return false;
    memcpy(r->body, io->buf, n);
    r->body[n] = '\0';
    r->body_len = n;
    consume(io, n);
    return true;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

typedef enum { SENT_KEEP, SENT_CLOSE, SENT_ABORT } sent_how;

/* Wait until the client closes its side (or the server stops). */
static void hold_open(conn_io *io)
{
    char sink[4096];
    while (!stopping(io->s)) {
        struct pollfd p = {io->fd, POLLIN, 0};
        int n = poll(&p, 1, POLL_STEP_MS);
        if (n < 0 && errno != EINTR)
            return;
        if (n > 0) {
            if (p.revents & (POLLHUP | POLLERR))
                return;
            if (SSL_read(io->ssl, sink, sizeof(sink)) <= 0)
                return;
        }
    }
}

static sent_how send_response(conn_io *io, const rs_response *resp, bool client_close)
{
    int status = resp->status ? resp->status : 200;
    bool chunked = resp->chunked || resp->nchunks > 0 || resp->hold;
    bool close_after = resp->close || client_close;
    char *head = NULL;
    bool has_ct = resp->headers && strcasestr(resp->headers, "content-type:");
    char lenhdr[64];
    if (chunked)
        snprintf(lenhdr, sizeof(lenhdr), "Transfer-Encoding: chunked\r\n");
    else
        snprintf(lenhdr, sizeof(lenhdr), "Content-Length: %zu\r\n", resp->body_len);
    if (asprintf(&head, "HTTP/1.1 %d %s\r\n%s%s%s%s\r\n", status, reason_phrase(status),
                 has_ct ? "" : "Content-Type: application/json\r\n",
                 resp->headers ? resp->headers : "", lenhdr,
                 close_after ? "Connection: close\r\n" : "") < 0)
        return SENT_ABORT;
    if (resp->delay_ms)
        sleep_ms_interruptible(io->s, resp->delay_ms);
    bool ok = write_all(io, head, strlen(head));
    free(head);
    if (!ok)
        return SENT_ABORT;

    size_t total = resp->body_len;
    size_t limit = resp->cut && resp->cut_after < total ? resp->cut_after : total;
    size_t sent = 0;
    if (!chunked) {
        if (!write_all(io, resp->body, limit))
            return SENT_ABORT;
        if (resp->cut)
            return SENT_ABORT;
        return close_after ? SENT_CLOSE : SENT_KEEP;
    }
    for (size_t i = 0; sent < limit; i++) {
        size_t piece = i < resp->nchunks ? resp->chunks[i] : limit - sent;
        if (piece == 0)
            continue;
        if (piece > limit - sent)
            piece = limit - sent;
        if (i > 0 && resp->chunk_delay_ms)
            sleep_ms_interruptible(io->s, resp->chunk_delay_ms);
        if (stopping(io->s))
            return SENT_ABORT;
        char *frame = malloc(piece + 32);
        if (!frame)
            return SENT_ABORT;
        int h = snprintf(frame, 32, "%zx\r\n", piece);
        memcpy(frame + h, resp->body + sent, piece);
        memcpy(frame + h + piece, "\r\n", 2);
        ok = write_all(io, frame, (size_t)h + piece + 2);
        free(frame);
        if (!ok)
            return SENT_ABORT;
        sent += piece;
    }
    if (resp->cut)
        return SENT_ABORT;
    if (resp->hold) {
        hold_open(io);
        return SENT_ABORT;
    }
    if (!write_all(io, "0\r\n\r\n", 5))
        return SENT_ABORT;
    return close_after ? SENT_CLOSE : SENT_KEEP;
}

static char *peer_cn(SSL *ssl)
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (!peer)
        return NULL;
    char cn[256];
    int n =
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)sizeof(cn));
    X509_free(peer);
    return n > 0 ? strdup(cn) : NULL;
}

static void *conn_main(void *arg)
{
    rs_conn *c = arg;
    rs_server *s = c->s;
    conn_io io = {.s = s, .fd = c->fd};
    bool abort_conn = true;
    io.ssl = SSL_new(s->ctx);
    if (!io.ssl || !SSL_set_fd(io.ssl, c->fd) || SSL_accept(io.ssl) != 1)
        goto out;
    char *cn = peer_cn(io.ssl);
    for (;;) {
        char *hend;
        while (!(hend = io.buf ? strstr(io.buf, "\r\n\r\n") : NULL)) {
            if (io.len > MAX_HEAD_BYTES || !read_more(&io)) {
                abort_conn = io.len > 0;
                goto done;
            }
        }
        size_t head_len = (size_t)(hend - io.buf) + 4;
        rs_request *r = parse_head(io.buf, head_len);
        if (!r)
            goto done;
        consume(&io, head_len);
        r->conn_id = c->id;
        r->client_cn = dup_or_null(cn);
        const char *expect = rs_header(r, "Expect");
        if (expect && !strcasecmp(expect, "100-continue") &&
            !write_all(&io, "HTTP/1.1 100 Continue\r\n\r\n", 25)) {
            request_free(r);
            goto done;
        }
        if (!read_body(&io, r)) {
            request_free(r);
            goto done;
        }
        const char *conn_hdr = rs_header(r, "Connection");
        bool client_close = conn_hdr && !strcasecmp(conn_hdr, "close");
        rs_response resp;
        char *nomatch = NULL;
        if (!pick(s, r, &resp)) {
            if (asprintf(&nomatch,
                         "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                         "\"message\":\"replay: no scripted response for %s %s\","
                         "\"reason\":\"NotFound\",\"code\":404}",
                         r->method, r->target) < 0)
                nomatch = NULL;
            memset(&resp, 0, sizeof(resp));
            resp.status = 404;
            resp.body = nomatch ? nomatch : "";
            resp.body_len = strlen(resp.body);
        }
        record(s, r); /* after pick: a test that saw the request sees its answer chosen */
        sent_how how = send_response(&io, &resp, client_close);
        free(nomatch);
        if (how == SENT_ABORT) {
            abort_conn = true;
            break;
        }
        if (how == SENT_CLOSE) {
            abort_conn = false;
            break;
        }
    }
done:
    free(cn);
out:
    if (io.ssl) {
        if (!abort_conn)
            SSL_shutdown(io.ssl);
        SSL_free(io.ssl);
    }
    if (abort_conn) {
        /* An abrupt end: RST rather than FIN, like a peer that died. */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    free(io.buf);
    ERR_clear_error();
    return NULL;
}

static void *accept_main(void *arg)
{
    rs_server *s = arg;
    while (!stopping(s)) {
        struct pollfd p = {s->listen_fd, POLLIN, 0};
        int n = poll(&p, 1, POLL_STEP_MS);
        if (n <= 0)
            continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        rs_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        c->id = ++s->nconns;
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->mu);
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            /* Leave it on the list with no thread: rs_stop skips the join. */
            close(fd);
            c->fd = -1;
        }
    }
    return NULL;
}

/* ---- life cycle ---------------------------------------------------------- */

rs_server *rs_start(const rs_opts *opts)
{
    signal(SIGPIPE, SIG_IGN);
    rs_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->listen_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    EVP_PKEY *srv_key = NULL;
    X509 *srv = NULL;

    s->ca_key = new_key();
    srv_key = new_key();
    if (!s->ca_key || !srv_key)
        goto fail;
    s->ca = new_cert(s->ca_key, "provisio replay CA", CERT_CA, NULL, NULL, 1);
    s->next_serial = 1;
    if (!s->ca)
        goto fail;
    srv = new_cert(srv_key, "replay.test", CERT_SERVER, s->ca, s->ca_key, ++s->next_serial);
    s->ca_pem = cert_pem(s->ca);
    if (!srv || !s->ca_pem)
        goto fail;

    s->ctx = SSL_CTX_new(TLS_server_method());
    if (!s->ctx || SSL_CTX_use_certificate(s->ctx, srv) != 1 ||
        SSL_CTX_use_PrivateKey(s->ctx, srv_key) != 1)
        goto fail;
    SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
    if (opts && opts->require_client_cert) {
        X509_STORE *store = SSL_CTX_get_cert_store(s->ctx);
        if (X509_STORE_add_cert(store, s->ca) != 1 || SSL_CTX_add_client_CA(s->ctx, s->ca) != 1)
            goto fail;
        SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    X509_free(srv);
    srv = NULL;
    EVP_PKEY_free(srv_key);
    srv_key = NULL;

    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0)
        goto fail;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t alen = sizeof(a);
    if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(s->listen_fd, 128) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) != 0)
        goto fail;
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof(s->url), "https://127.0.0.1:%d", s->port);
    if (pthread_create(&s->accept_thread, NULL, accept_main, s) != 0)
        goto fail;
    return s;
fail:
    X509_free(srv);
    EVP_PKEY_free(srv_key);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    SSL_CTX_free(s->ctx);
    X509_free(s->ca);
    EVP_PKEY_free(s->ca_key);
    free(s->ca_pem);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

void rs_stop(rs_server *s)
{
    if (!s)
        return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    pthread_join(s->accept_thread, NULL);
    close(s->listen_fd);
    /* No new connections now: join the ones there are. */
    rs_conn *c = s->conns;
    while (c) {
        rs_conn *next = c->next;
        if (c->fd >= 0)
            pthread_join(c->thread, NULL);
        free(c);
        c = next;
    }
    for (size_t i = 0; i < s->nentries; i++) {
        rs_response *r = &s->entries[i].r;
        free((char *)r->method);
        free((char *)r->path_prefix);
        free((char *)r->headers);
        free((char *)r->body);
        free((size_t *)r->chunks);
    }
    free(s->entries);
    for (size_t i = 0; i < s->nreqs; i++)
        request_free(s->reqs[i]);
    free(s->reqs);
    SSL_CTX_free(s->ctx);
    X509_free(s->ca);
    EVP_PKEY_free(s->ca_key);
    free(s->ca_pem);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int rs_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd); /* never listened: connecting is refused */
    return port;
}

/* ---- kubeconfig ---------------------------------------------------------- */

static char *base64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

char *rs_kubeconfig(const rs_server *s, const rs_kubeconfig_opts *o)
{
    rs_kubeconfig_opts d = {0};
    if (!o)
        o = &d;
    char *ca64 = NULL;
    if (!o->no_ca) {
        ca64 = base64(o->ca_pem ? o->ca_pem : s->ca_pem);
        if (!ca64)
            return NULL;
    }
    char *ca_line = NULL, *sni_line = NULL, *out = NULL;
    if (asprintf(&ca_line, "    certificate-authority-data: %s\n", ca64 ? ca64 : "") < 0)
        ca_line = NULL;
    if (asprintf(&sni_line, "    tls-server-name: %s\n",
                 o->tls_server_name ? o->tls_server_name : "") < 0)
        sni_line = NULL;
    if (ca_line && sni_line &&
        asprintf(&out,
                 "apiVersion: v1\n"
                 "kind: Config\n"
                 "clusters:\n"
                 "- name: replay\n"
                 "  cluster:\n"
                 "    server: %s\n"
                 "%s%s%s"
                 "contexts:\n"
                 "- name: replay\n"
                 "  context:\n"
                 "    cluster: replay\n"
                 "    user: replay\n"
                 "    namespace: default\n"
                 "current-context: replay\n"
                 "users:\n"
                 "- name: replay\n"
                 "  user:%s%s",
                 o->server ? o->server : s->url, ca64 ? ca_line : "",
                 o->insecure ? "    insecure-skip-tls-verify: true\n" : "",
                 o->tls_server_name ? sni_line : "", o->user_yaml ? "\n" : " {}\n",
                 o->user_yaml ? o->user_yaml : "") < 0)
        out = NULL;
    free(ca_line);
    free(sni_line);
    free(ca64);
    return out;
}
