/*
 * inf_map - string-keyed open-addressing hash map (see inf_map.h).
 *
 * Invariants: cap is 0 or a power of two; len <= cap * 3/4 after every insert;
 * every key sits in the probe run that starts at its home slot (hash & mask)
 * with no empty slot in between. Deletion keeps that true by shifting later
 * members of the run back into the hole (backward-shift deletion) instead of
 * leaving tombstones, so lookups never degrade with churn.
 */
#include "inf_map.h"

#include <stdlib.h>
#include <string.h>

#include "kc_error.h"

#define INF_MAP_MIN_CAP 8

uint64_t inf_map_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    /* FNV's low bits are weak for short keys; mix before masking. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void inf_map_init(inf_map *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void inf_map_close(inf_map *m)
{
    if (m == NULL)
        return;
    free(m->slots);
    inf_map_init(m);
}

static size_t find_slot(const inf_map *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    while (m->slots[i].key != NULL) {
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i; /* the empty slot ending the run */
}

void *inf_map_get(const inf_map *m, const char *key)
{
    if (m->len == 0)
        return NULL;
    size_t i = find_slot(m, key, inf_map_hash(key));
    return m->slots[i].key != NULL ? m->slots[i].value : NULL;
}

static int grow_to(inf_map *m, size_t new_cap)
{
    inf_map_slot *slots = calloc(new_cap, sizeof(*slots));
    if (slots == NULL)
        return KC_ERR_NOMEM;
    size_t mask = new_cap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        if (m->slots[j].key == NULL)
            continue;
        size_t i = (size_t)m->slots[j].hash & mask;
        while (slots[i].key != NULL)
            i = (i + 1) & mask;
        slots[i] = m->slots[j];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = new_cap;
    return KC_OK;
}

int inf_map_reserve(inf_map *m, size_t extra)
{
    size_t need = m->len + extra;
    size_t cap = m->cap ? m->cap : INF_MAP_MIN_CAP;
    while (need > cap / 4 * 3) {
        if (cap > SIZE_MAX / 2 / sizeof(inf_map_slot))
            return KC_ERR_NOMEM;
        cap *= 2;
    }
    if (cap == m->cap)
        return KC_OK;
    return grow_to(m, cap);
}

int inf_map_put(inf_map *m, const char *key, void *value)
{
    uint64_t h = inf_map_hash(key);
    if (m->len > 0) {
        size_t i = find_slot(m, key, h);
        if (m->slots[i].key != NULL) {
            m->slots[i].key = key;
            m->slots[i].value = value;
            return KC_OK;
        }
    }
    int rc = inf_map_reserve(m, 1);
    if (rc != KC_OK)
        return rc;
    size_t i = find_slot(m, key, h);
    m->slots[i].key = key;
    m->slots[i].value = value;
    m->slots[i].hash = h;
    m->len++;
    return KC_OK;
}

void *inf_map_remove(inf_map *m, const char *key)
{
    if (m->len == 0)
        return NULL;
    size_t mask = m->cap - 1;
    size_t hole = find_slot(m, key, inf_map_hash(key));
    if (m->slots[hole].key == NULL)
        return NULL;
    void *value = m->slots[hole].value;
    /* Shift later members of the run back unless that would move one before
     * its home slot. */
    size_t j = hole;
    for (;;) {
        j = (j + 1) & mask;
        if (m->slots[j].key == NULL)
            break;
        size_t home = (size_t)m->slots[j].hash & mask;
        /* May move j into hole iff home is not cyclically in (hole, j]. */
        bool home_between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!home_between) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].key = NULL;
    m->slots[hole].value = NULL;
    m->len--;
    return value;
}

bool inf_map_next(const inf_map *m, size_t *pos, const char **key, void **value)
{
    for (size_t i = *pos; i < m->cap; i++) {
        if (m->slots[i].key != NULL) {
            if (key)
                *key = m->slots[i].key;
            if (value)
                *value = m->slots[i].value;
            *pos = i + 1;
            return true;
        }
    }
    *pos = m->cap;
    return false;
}
