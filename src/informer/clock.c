/*
 * inf_clock - see clock.h. The real clock is CLOCK_MONOTONIC, which never
 * jumps with wall-clock changes, so durations computed from it are safe for
 * timeouts and backoff.
 */
#include "clock.h"

#include <time.h>

double inf_clock_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double inf_clock_now(const inf_clock *c)
{
    if (c == NULL || c->now == NULL)
        return inf_clock_monotonic();
    return c->now(c->user);
}
