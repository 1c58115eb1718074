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

#include <stdio.h>
#include <string.h>

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
    /* run mode: the operator (manager.h) */
    return manager_main(argc, argv);
}
