/*
 * provisio-cni - the CNI IPAM plugin of provisio (API.md "CNI:
 * provisio-cni"). The runtime (or the plugin delegating IPAM, such as
 * bridge) runs it once per command: CNI_* in the environment, the network
 * configuration on stdin; the result, or an error object, on stdout; exit
 * status 0 or 1. Nothing is written to stdout but that one JSON text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cni_config.h"
#include "cni_error.h"
#include "cni_ops.h"
#include "pv_strbuf.h"

extern char **environ;

/* Read all of stdin, at most CNI_MAX_CONFIG_BYTES (+1 to notice more). */
static int read_stdin(pv_strbuf *b, cni_error *err)
{
    b->max = CNI_MAX_CONFIG_BYTES + 1;
    for (;;) {
        if (!pv_strbuf_reserve(b, 64 * 1024))
            break;
        ssize_t n = read(STDIN_FILENO, b->p + b->len, 64 * 1024);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cni_error_set(err, CNI_ERR_IO, strerror(errno),
                                 "cannot read the network configuration from stdin");
        if (n == 0)
            return 0;
        if (b->len + (size_t)n > b->max) {
            b->too_large = true;
            break;
        }
        b->len += (size_t)n;
        b->p[b->len] = '\0';
    }
    if (b->too_large)
        return cni_error_set(err, CNI_ERR_DECODE, NULL,
                             "the network configuration on stdin is more than %d bytes",
                             CNI_MAX_CONFIG_BYTES);
    return cni_error_set(err, CNI_ERR_INTERNAL, NULL, "provisio-cni: out of memory");
}

static void print_error(const cni_error *e, const char *version)
{
    char *text = cni_error_encode(e, version);
    if (text)
        printf("%s\n", text);
    else
        printf("{\"code\":%d,\"msg\":\"provisio-cni: out of memory\"}\n", CNI_ERR_INTERNAL);
    /* Runtimes log stderr; a person running the plugin by hand reads it. */
    fprintf(stderr, "provisio-cni: %s\n", e->msg ? e->msg : "error");
    free(text);
}

int main(int argc, char **argv)
{
    (void)argv;
    cni_error err = CNI_ERROR_INIT;
    cni_env env = {0};
    cni_conf conf = {0};
    pv_strbuf in = {0};
    char *out = NULL;
    if (argc > 1) {
        fprintf(stderr,
                "provisio-cni %s: a CNI IPAM plugin (CNI 1.1: ADD, DEL, CHECK, STATUS, "
                "GC, VERSION); run by a container runtime with CNI_* in the environment "
                "and the network configuration on stdin. See provisio's README.\n",
                PROVISIO_VERSION);
        return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 1 : 0;
    }
    int rc = cni_env_parse(environ, &env, &err);
    if (!rc)
        rc = read_stdin(&in, &err);
    if (!rc)
        rc = cni_conf_parse(in.p ? in.p : "", in.len, env.command, &conf, &err);
    if (!rc)
        rc = cni_ops_run(&env, &conf, &out, &err);
    if (rc)
        print_error(&err, conf.cni_version);
    else if (out && (printf("%s\n", out) < 0 || fflush(stdout) != 0))
        rc = -CNI_ERR_IO;
    free(out);
    pv_strbuf_free(&in);
    cni_conf_free(&conf);
    cni_env_free(&env);
    cni_error_clear(&err);
    return rc ? 1 : 0;
}
