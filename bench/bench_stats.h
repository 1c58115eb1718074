/*
 * bench_stats - the figures the benchmark programs share: a qsort comparator
 * for doubles and the nearest-rank percentile of a sorted array.
 */
#ifndef PROVISIO_BENCH_STATS_H
#define PROVISIO_BENCH_STATS_H

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n); 0 when n is 0. */
static inline double bench_pct(const double *v, long n, double p)
{
    if (n <= 0)
        return 0;
    long k = (long)(p / 100.0 * (double)n + 0.999999) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

#endif
