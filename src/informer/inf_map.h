/*
 * inf_map - a string-keyed hash map for the informer layer (store, work
 * queue): open addressing with linear probing and backward-shift deletion, so
 * there are no tombstones and it grows as needed (never "full").
 *
 * The map does not copy keys: a key passed to inf_map_put is borrowed and must
 * stay valid, unchanged, for as long as its entry is in the map. The usual
 * pattern is a value struct that holds its own key (a flexible array member)
 * and is inserted with that key.
 *
 * inf_map is a caller-owned struct: zero it (or inf_map_init) before use,
 * inf_map_close when done (frees the slots, not the values). Not thread-safe:
 * the owner serialises access (store and queue hold their own locks).
 */
#ifndef PROVISIO_INF_MAP_H
#define PROVISIO_INF_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct inf_map_slot {
    const char *key; /* NULL = empty slot */
    void *value;
    uint64_t hash;
} inf_map_slot;

typedef struct inf_map {
    inf_map_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t len;
} inf_map;

/* The hash the map uses (64-bit FNV-1a with a final mix). */
uint64_t inf_map_hash(const char *key);

void inf_map_init(inf_map *m);

/* Free the slot array; values are not touched. m may be NULL. */
void inf_map_close(inf_map *m);

/* The value for key, or NULL. */
void *inf_map_get(const inf_map *m, const char *key);

/*
 * Make room so that `extra` more inserts cannot fail. 0 or KC_ERR_NOMEM (then
 * the map is unchanged).
 */
int inf_map_reserve(inf_map *m, size_t extra);

/*
 * Insert key -> value, or replace the value of an existing key (then the map
 * keeps pointing at the new key pointer). 0 or KC_ERR_NOMEM (map unchanged).
 * Cannot fail after a successful inf_map_reserve covering it.
 */
int inf_map_put(inf_map *m, const char *key, void *value);

/* Remove key; returns its value, or NULL if it was absent. Never allocates. */
void *inf_map_remove(inf_map *m, const char *key);

/*
 * Iterate: start with *pos = 0; returns true with the next entry's key and
 * value (either out pointer may be NULL), false at the end. The map must not
 * be modified during an iteration.
 */
bool inf_map_next(const inf_map *m, size_t *pos, const char **key, void **value);

#endif
