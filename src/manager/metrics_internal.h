/*
 * metrics_internal - what metrics.c (registry, families, values),
 * metrics_text.c (text exposition) and metrics_process.c (process and
 * controller-runtime metrics) share: the registry's types. Not part of the
 * manager's contract: no other module includes this header.
 */
#ifndef PROVISIO_METRICS_INTERNAL_H
#define PROVISIO_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

typedef struct met_child {
    const struct met_vec *vec; /* owning family (bounds of a histogram) */
    uint64_t hash;
    char **values;              /* nlabels copies, registration order */
    _Atomic uint64_t val;       /* counter/gauge value or histogram sum, as double bits */
    _Atomic uint64_t buckets[]; /* histogram only: nbounds + 1 (last is +Inf) */
} met_child;

struct met_vec {
    char *name;
    char *help;
    met_type type;
    size_t nlabels;
    char **labels;  /* registration order */
    size_t *order;  /* label indices sorted by label name (output order) */
    double *bounds; /* histogram upper bounds without +Inf */
    size_t nbounds;

    pthread_rwlock_t lock; /* guards slots, nslots, children, nchildren */
    met_child **slots;     /* open addressing, power-of-two size */
    size_t nslots;
    met_child **children; /* creation order, for rendering */
    size_t nchildren, capchildren;
};

typedef struct collector {
    void (*fn)(void *ud);
    void *ud;
    void (*free_ud)(void *ud); /* NULL: ud is borrowed */
} collector;

struct met_registry {
    pthread_mutex_t mu; /* guards everything below; held during render */
    met_vec **fams;     /* sorted by name */
    size_t nfams, capfams;
    collector *collectors;
    size_t ncollectors, capcollectors;
};

/* The double whose bits are u (values are kept as atomic bits). */
double metrics_bitsd(uint64_t u);
/* Add a collector; when free_ud is set, r owns ud from now on (also on failure). */
int metrics_add_collector(met_registry *r, void (*fn)(void *ud), void *ud,
                          void (*free_ud)(void *ud));

#endif
