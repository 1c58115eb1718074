/*
 * sanitizer_probe: a program that makes the sanitizers report, to show that
 * tests/e2e/sanitized fails a test when any process it started printed a
 * report. `sanitizer_probe leak` leaks a block (LeakSanitizer at exit),
 * `sanitizer_probe overflow` reads past a heap block (AddressSanitizer),
 * `sanitizer_probe shift` shifts by too much (UBSan), and with no argument it
 * exits 0 without any report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "leak") == 0) {
        char *volatile p = malloc(64);
        p[0] = 1;
        p = NULL;
        return 0;
    }
    if (strcmp(what, "overflow") == 0) {
        char *p = calloc(1, 8);
        volatile char c = p[argc + 8];
        free(p);
        return c;
    }
    if (strcmp(what, "shift") == 0) {
        volatile int n = 40 + argc;
        volatile int v = 1 << n;
        return v;
    }
    puts("sanitizer_probe: nothing to report");
    return 0;
}
