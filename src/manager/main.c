/*
 * provisio entry point: picks the mode from the first argument.
 *
 *   provisio get ... / provisio watch ...   the client tried by hand (cli.h)
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
 * says something about tcache_count (the user's choice, or our own exec).
 * If the exec fails the operator just runs with glibc's defaults.
 */
static void tune_malloc(char **argv)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (t != NULL && strstr(t, "glibc.malloc.tcache_count") != NULL)
        return;
    char *v = NULL;
    if (asprintf(&v, "%s%sglibc.malloc.tcache_count=0", t != NULL ? t : "",
                 t != NULL && *t ? ":" : "") < 0)
        return;
    char *old = t != NULL ? strdup(t) : NULL;
    if (setenv("GLIBC_TUNABLES", v, 1) == 0) {
        execv("/proc/self/exe", argv);
        /* Still here: put the environment back as it was. */
        if (old != NULL)
            setenv("GLIBC_TUNABLES", old, 1);
        else
            unsetenv("GLIBC_TUNABLES");
    }
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
    /* run mode: the operator (manager.h). */
    tune_malloc(argv);
    /*
     * glibc gives each thread that contends for malloc an arena of its own,
     * up to 8 per core; each keeps its free chunks, so ~30 threads (workers,
     * reflectors, dispatchers, the event sender) left ~0.6 MiB of free,
     * unreturnable memory in each of 16 arenas with 10,000 claims cached.
     * Two arenas: -3 MiB of RSS there, no measurable cost in bench/ (the
     * MALLOC_ARENA_MAX environment variable still overrides it). */
    if (getenv("MALLOC_ARENA_MAX") == NULL)
        (void)mallopt(M_ARENA_MAX, 2);
    return manager_main(argc, argv);
}
