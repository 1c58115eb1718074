/* provisio entry point (replaced by the CLI/manager work). */
#include <stdio.h>

int main(void)
{
    fputs("provisio " PROVISIO_VERSION "\n", stdout);
    return 0;
}
