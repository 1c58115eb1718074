/*
 * kc_config_internal - what kc_config.c (object, helpers, token files,
 * loading entry points, accessors), kc_config_kubeconfig.c (parsing and
 * merging kubeconfig files) and kc_config_exec.c (exec plugins,
 * credentials) share. Not part of the client's contract: no other module
 * includes this header.
 */
#ifndef PROVISIO_KC_CONFIG_INTERNAL_H
#define PROVISIO_KC_CONFIG_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "kc_config.h"
#include "kc_error.h"
#include "kc_yaml.h"

#define CONFIG_FILE_MAX ((size_t)64 << 20) /* kubeconfig, CA bundle, cert, key */
#define TOKEN_FILE_MAX ((size_t)1 << 20)
#define EXEC_STDOUT_MAX ((size_t)1 << 20)
#define EXEC_STDERR_KEPT ((size_t)400)
#define EXEC_TIMEOUT_SEC 120
#define EXPIRY_SKEW_SEC 10
#define EXEC_INFO_ENV "KUBERNETES_EXEC_INFO"
#define EXEC_CLUSTER_EXTENSION "client.authentication.k8s.io/exec"

/* A file holding a bearer token that may be rotated under us. */
typedef struct token_file {
    char *path;
    const char *what; /* "tokenFile" or "service-account token", for messages */
    char *token;      /* last good token (trimmed), or NULL */
    bool known;       /* the identity below is the file the token came from */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    bool stale; /* invalidated: read again even if unchanged */
} token_file;

typedef struct exec_plugin {
    char *command; /* as configured; made absolute when it contained a '/' */
    char **argv;   /* NULL-terminated; argv[0] is command */
    size_t argc;
    char **env; /* NULL-terminated "NAME=value": exec.env, then KUBERNETES_EXEC_INFO */
    size_t nenv;
    char *api_version;
    char *install_hint;
    /* cache, under kc_config.mu */
    bool have;
    char *token;
    char *cert;
    char *key;
    bool expires;
    time_t expiry;
} exec_plugin;

struct kc_config {
    char *server;
    char *namespace_;
    char *context;
    char *proxy_url;
    char *tls_server_name;
    bool in_cluster;
    bool insecure;
    unsigned char *ca;
    size_t ca_len;
    unsigned char *cert;
    size_t cert_len;
    unsigned char *key;
    size_t key_len;
    char *token;           /* static token from the kubeconfig, or NULL */
    token_file *tokenfile; /* tokenFile / in-cluster token, or NULL */
    exec_plugin *exec;     /* exec plugin, or NULL */
    pthread_mutex_t mu;
};

/* One parsed kubeconfig file of the list, in the order given. */
typedef struct source {
    char *name; /* the path as given, or "(in memory)" */
    char *dir;  /* absolute directory for relative paths */
    kc_yaml *doc;
} source;

typedef struct sources {
    source *v;
    size_t n;
    size_t cap;
} sources;

/* ---- small helpers (kc_config.c) ------------------------------------------ */

/* free(p) after wiping its n bytes; NULL is fine. */
void kc_config_wipe_free(void *p, size_t n);
/* free(s) after wiping it; NULL is fine. */
void kc_config_wipe_str(char *s);
/* Trim leading and trailing whitespace in place (strings.TrimSpace). */
void kc_config_trim_space(char *s);
/* Whole file (at most max bytes) into a new NUL-terminated buffer; 0 or an errno value (EFBIG). */
int kc_config_read_file(const char *path, size_t max, unsigned char **out, size_t *len);
/* strerror(e), with EFBIG as "file too large". */
const char *kc_config_errno_text(int e);
/* p when absolute, else dir/p; new string, or NULL when out of memory. */
char *kc_config_path_join(const char *dir, const char *p);
/* Absolute directory of path (relative paths are taken from the cwd). */
char *kc_config_abs_dir_of(const char *path);
/* Standard base64, whitespace ignored, '=' optional: 0, 1 for invalid input, KC_ERR_NOMEM. */
int kc_config_b64_decode(const char *in, size_t len, unsigned char **out, size_t *outlen);
/* "a, b, c" of the names of a string list; for messages. */
char *kc_config_join_names(const char *const *names, size_t n);
/* Put prefix in front of err's message (best effort: on failure the message stays). */
void kc_config_prefix_message(kc_error *err, const char *prefix);

/* ---- config object and token files (kc_config.c) -------------------------- */

/* A zeroed config with its mutex initialised, or NULL. */
kc_config *kc_config_new(void);
/* Drop the exec plugin's cached credential (wiping it). */
void kc_config_exec_clear_cache(exec_plugin *ex);
/* Make tf->token current (read again when changed or invalidated); caller holds cfg->mu. */
int kc_config_token_file_current(token_file *tf, kc_error *err);
/* A token file read once at load: failure to read it is a config error. */
int kc_config_token_file_new(const char *path, const char *what, token_file **out, kc_error *err);

/* ---- kubeconfig sources (kc_config_kubeconfig.c) -------------------------- */

/* Free every source and zero *ss. */
void kc_config_sources_free(sources *ss);
/* Parse text as one more source (taking ownership of name and dir). */
int kc_config_sources_add(sources *ss, const char *text, size_t len, char *name, char *dir,
                          kc_error *err);
/* Add the file at path; *missing is set (and nothing added) when it does not exist. */
int kc_config_sources_add_file(sources *ss, const char *path, bool *missing, kc_error *err);
/* *out = a copy of s (NULL for NULL s); KC_ERR_NOMEM when out of memory. */
int kc_config_dup_str(const char *s, char **out, kc_error *err);
/* Build the config of context (NULL or "": the first non-empty current-context). */
int kc_config_build_from_sources(const sources *ss, const char *context, kc_config **out,
                                 kc_error *err);

#endif
