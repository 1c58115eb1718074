/*
 * provisio entry point: picks the mode from the first argument.
 *
 *   provisio get ... / provisio watch ...   the client tried by hand (cli.h)
 *   provisio agent --node-name NODE ...     the node agent (manager.h)
 *   provisio version / provisio --version   prints "provisio <version>"
 *   anything else (no subcommand, flags)    the operator itself (run mode)
 *
 * Subcommands are recognised only as the very first argument, so every flag
 * the operator's Deployment passes (kubebuilder style, see flags.h) reaches
 * the run mode untouched.
 */
#include "cli.h"
#include "manager.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * glibc's per-thread caches (tcache: up to 7 free chunks of each small size
 * per thread) held ~5 MiB across the operator's ~35 threads with 10,000
 * claims cached, for no measurable speed (bench/). glibc reads that setting
 * only from GLIBC_TUNABLES at start-up, so the operator re-executes itself
 * once with glibc.malloc.tcache_count=0 added, unless GLIBC_TUNABLES already
 * says something about tcache_count (the user's choice).
 * If the exec fails the operator just runs with glibc's defaults.
 *
 * The same exec sets GNUTLS_NO_IMPLICIT_INIT=1: libcurl's LDAP support
 * loads GnuTLS, whose constructor otherwise initialises it (~0.6 MiB of
 * RSS) for nothing; provisio's TLS is OpenSSL's.
 *
 * Both variables matter to the loader only. The re-executed operator puts
 * the environment back as the user gave it (restore_env), so what it runs
 * (exec credential plugins) starts with the user's environment.
 */
#define MARK_REEXEC "PROVISIO_REEXEC"
#define MARK_OLD_TUNABLES "PROVISIO_OLD_GLIBC_TUNABLES"
#define MARK_SET_GNUTLS "PROVISIO_SET_GNUTLS_NO_IMPLICIT_INIT"

static void restore_env(void)
{
    const char *old = getenv(MARK_OLD_TUNABLES);
    if (old != NULL) {
        char *copy = strdup(old);
        if (copy != NULL) {
            (void)setenv("GLIBC_TUNABLES", copy, 1);
            free(copy);
        }
        (void)unsetenv(MARK_OLD_TUNABLES);
    } else {
        (void)unsetenv("GLIBC_TUNABLES");
    }
    if (getenv(MARK_SET_GNUTLS) != NULL) {
        (void)unsetenv("GNUTLS_NO_IMPLICIT_INIT");
        (void)unsetenv(MARK_SET_GNUTLS);
    }
    (void)unsetenv(MARK_REEXEC);
}

static void tune_malloc(char **argv)
{
    if (getenv(MARK_REEXEC) != NULL) { /* this is our own exec */
        restore_env();
        return;
    }
    const char *t = getenv("GLIBC_TUNABLES");
    if (t != NULL && strstr(t, "glibc.malloc.tcache_count") != NULL)
        return; /* the user's choice */
    char *v = NULL;
    if (asprintf(&v, "%s%sglibc.malloc.tcache_count=0", t != NULL ? t : "",
                 t != NULL && *t ? ":" : "") < 0)
        return;
    char *old = t != NULL ? strdup(t) : NULL;
    if (t != NULL && old == NULL) {
        free(v);
        return;
    }
    int ok = (old == NULL || setenv(MARK_OLD_TUNABLES, old, 1) == 0) &&
             setenv(MARK_REEXEC, "1", 1) == 0 && setenv("GLIBC_TUNABLES", v, 1) == 0;
    if (ok && getenv("GNUTLS_NO_IMPLICIT_INIT") == NULL &&
        setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 1) == 0)
        (void)setenv(MARK_SET_GNUTLS, "1", 1);
    if (ok)
        execv("/proc/self/exe", argv);
    /* Still here: put the environment back as it was. */
    restore_env();
    if (old != NULL)
        (void)setenv("GLIBC_TUNABLES", old, 1);
    free(old);
    free(v);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        const char *sub = argv[1];
        if (!strcmp(sub, "get") || !strcmp(sub, "watch"))
            return cli_main(argc - 1, argv + 1);
        if (!strcmp(sub, "version") || !strcmp(sub, "--version")) {
            fputs("provisio " PROVISIO_VERSION "\n", stdout);
            return 0;
        }
    }
    /* run mode: the operator or the node agent (manager.h). */
    tune_malloc(argv);
    /*
     * glibc gives each thread that contends for malloc an arena of its own,
     * up to 8 per core; each keeps its free chunks, so ~30 threads (workers,
     * reflectors, dispatchers, the event sender) left ~0.6 MiB of free,
     * unreturnable memory in each of 16 arenas with 10,000 claims cached.
     * One arena: about -4 MiB of RSS against glibc's default, -0.8 MiB against
     * two, and no measurable cost in bench/ (10,000 claims: same claims/s
     * and CPU seconds; the threads mostly wait on the network). The
     * MALLOC_ARENA_MAX environment variable still overrides it. */
    if (getenv("MALLOC_ARENA_MAX") == NULL)
        (void)mallopt(M_ARENA_MAX, 1);
    if (argc > 1 && !strcmp(argv[1], "agent"))
        return agent_main(argc - 1, argv + 1);
    return manager_main(argc, argv);
}
