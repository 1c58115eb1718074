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
    /* run mode: manager_main lands with the manager */
    fputs("provisio: the operator's run mode is not built yet; try 'provisio get --help', "
          "'provisio watch --help' or 'provisio version'\n",
          stderr);
    return 2;
}
