/* pv_assert - see pv_assert.h. Compiled in every build, so a Release
 * object can still link with a debug one. */
#include "pv_assert.h"

#include <stdio.h>
#include <stdlib.h>

void pv_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "provisio: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
