/*
 * kc_config - where the API server is and how to prove who we are.
 *
 * Loaded the way kubectl and controller-runtime do it:
 *   1. an explicit kubeconfig path (--kubeconfig), else
 *   2. KUBECONFIG: a ':'-separated list of files merged in order (the first
 *      file to set a map key or current-context wins, as in clientcmd), else
 *   3. in-cluster config when KUBERNETES_SERVICE_HOST is set, else
 *   4. ~/.kube/config.
 * (This is controller-runtime's GetConfig order; kubectl itself never tries
 * in-cluster before ~/.kube/config. The choice is noted in the README.)
 *
 * Credentials: client certificate/key (file or -data), a bearer token, a
 * tokenFile (re-read when the file changes), or a client.authentication.k8s.io
 * ExecCredential plugin (run with the documented environment, cached until
 * expirationTimestamp, run again on expiry or after kc_config_invalidate_credentials).
 * In-cluster: the service-account token (re-read when it changes: projected
 * tokens rotate), ca.crt and namespace under a directory: opts->sa_dir (or
 * kc_config_in_cluster's sa_dir) when given, else $PROVISIO_SERVICEACCOUNT_DIR
 * when set and non-empty (to run outside a pod as a service account: tests,
 * local runs), else /var/run/secrets/kubernetes.io/serviceaccount.
 *
 * Secrets are kept in memory and handed to curl as blobs: nothing is written
 * to disk, and nothing here logs a secret.
 *
 * Thread safety: a loaded kc_config is immutable except for the credential
 * cache, which kc_config_bearer_token / kc_config_invalidate_credentials guard
 * with an internal mutex. It may be shared by any number of threads.
 */
#ifndef PROVISIO_KC_CONFIG_H
#define PROVISIO_KC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "kc_error.h"

typedef struct kc_config kc_config;

#define KC_DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/* Environment variable naming the service-account dir when none is passed. */
#define KC_SA_DIR_ENV "PROVISIO_SERVICEACCOUNT_DIR"

typedef struct kc_config_opts {
    const char *kubeconfig; /* explicit path (--kubeconfig); NULL to search */
    const char *context;    /* context name; NULL for current-context */
    const char *namespace_; /* overrides the context's namespace; NULL to keep */
    const char *sa_dir;     /* in-cluster SA dir; NULL = $KC_SA_DIR_ENV, else the default */
    bool no_in_cluster;     /* never fall back to in-cluster config */
} kc_config_opts;

/* Bytes owned by the config (not NUL-terminated necessarily; len says). */
typedef struct kc_blob {
    const unsigned char *data;
    size_t len;
} kc_blob;

/* TLS material, borrowed from the config for as long as it lives. */
typedef struct kc_tls {
    kc_blob ca;              /* PEM; len 0 = system trust store */
    kc_blob client_cert;     /* PEM; len 0 = none */
    kc_blob client_key;      /* PEM; len 0 = none */
    bool insecure;           /* insecure-skip-tls-verify: only when the kubeconfig says so */
    const char *server_name; /* tls-server-name, or NULL */
} kc_tls;

/* Load per the order above. *out is owned by the caller (kc_config_free). */
int kc_config_load(const kc_config_opts *opts, kc_config **out, kc_error *err);

/* Load in-cluster config only. sa_dir NULL = $KC_SA_DIR_ENV, else KC_DEFAULT_SA_DIR. */
int kc_config_in_cluster(const char *sa_dir, kc_config **out, kc_error *err);

/* Load from one in-memory kubeconfig document (tests, --kubeconfig=-). */
int kc_config_from_yaml(const char *yaml, size_t len, const char *context, kc_config **out,
                        kc_error *err);

void kc_config_free(kc_config *cfg);

/* Borrowed accessors, valid for the life of cfg. */
const char *kc_config_server(const kc_config *cfg); /* "https://host:port", no trailing '/' */
const char *
kc_config_namespace(const kc_config *cfg);           /* context/in-cluster namespace or "default" */
const char *kc_config_context(const kc_config *cfg); /* context name, "" in-cluster */
const char *kc_config_proxy_url(const kc_config *cfg); /* proxy-url or NULL */
bool kc_config_is_in_cluster(const kc_config *cfg);
void kc_config_tls(const kc_config *cfg, kc_tls *out);

/*
 * The bearer token to send now, or NULL in *token when the config
 * authenticates by client certificate only. *token is a newly allocated copy
 * the caller frees. Re-reads a token file whose mtime/size changed and runs an
 * exec plugin whose cached credential is missing or expired (a plugin may
 * return a client certificate instead: see kc_config_exec_cert). Thread-safe.
 */
int kc_config_bearer_token(kc_config *cfg, char **token, kc_error *err);

/*
 * Client certificate/key returned by an exec plugin (clientCertificateData /
 * clientKeyData), refreshed like the token. Owned copies the caller frees;
 * both NULL when the plugin returned none. Thread-safe.
 */
int kc_config_exec_cert(kc_config *cfg, char **cert_pem, char **key_pem, kc_error *err);

/*
 * Forget cached credentials after the server answered 401, so the next
 * kc_config_bearer_token re-reads the token file / re-runs the exec plugin.
 * Returns true when there was something to refresh (so a retry makes sense).
 * Thread-safe.
 */
bool kc_config_invalidate_credentials(kc_config *cfg);

#endif
