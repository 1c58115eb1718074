/*
 * Unit tests of inf_map (src/informer/inf_map.c), the informer's string hash
 * map: random operations checked against a plain array, growth, and removal
 * in the middle of probe runs (backward-shift deletion).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inf_map.h"
#include "kc_error.h"

enum { N_KEYS = 3000 };

Test(inf_map, random_puts_and_removes_match_a_reference)
{
    static char keys[N_KEYS][24];
    static int present[N_KEYS];
    static int values[N_KEYS];
    for (int i = 0; i < N_KEYS; i++)
        snprintf(keys[i], sizeof(keys[i]), "ns-%d/obj-%d", i % 17, i);
    inf_map m;
    inf_map_init(&m);
    unsigned seed = 3;
    size_t live = 0;
    for (int step = 0; step < 200000; step++) {
        int i = (int)(rand_r(&seed) % N_KEYS);
        if (rand_r(&seed) % 3 == 0) {
            void *v = inf_map_remove(&m, keys[i]);
            cr_assert_eq(v, present[i] ? (void *)&values[i] : NULL, "remove %s", keys[i]);
            live -= present[i] ? 1 : 0;
            present[i] = 0;
        } else {
            cr_assert_eq(inf_map_put(&m, keys[i], &values[i]), KC_OK);
            live += present[i] ? 0 : 1;
            present[i] = 1;
        }
        cr_assert_eq(m.len, live);
    }
    for (int i = 0; i < N_KEYS; i++)
        cr_assert_eq(inf_map_get(&m, keys[i]), present[i] ? (void *)&values[i] : NULL);
    size_t pos = 0, seen = 0;
    const char *k;
    void *v;
    while (inf_map_next(&m, &pos, &k, &v)) {
        int i = (int)((int *)v - values);
        cr_assert(present[i]);
        cr_assert_eq(k, keys[i]);
        seen++;
    }
    cr_assert_eq(seen, live);
    cr_assert_leq(m.len * 4, m.cap * 3, "load factor above 3/4");
    inf_map_close(&m);
}

Test(inf_map, put_of_existing_key_replaces_value_without_growing)
{
    inf_map m;
    inf_map_init(&m);
    int a = 1, b = 2;
    char k1[] = "same", k2[] = "same";
    cr_assert_eq(inf_map_put(&m, k1, &a), KC_OK);
    cr_assert_eq(inf_map_put(&m, k2, &b), KC_OK);
    cr_assert_eq(m.len, 1);
    cr_assert_eq(inf_map_get(&m, "same"), &b);
    cr_assert_eq(inf_map_remove(&m, "same"), &b);
    cr_assert_null(inf_map_get(&m, "same"));
    cr_assert_null(inf_map_remove(&m, "same"));
    inf_map_close(&m);
    inf_map_close(NULL);
}

Test(inf_map, reserve_makes_later_puts_infallible_without_reallocating)
{
    inf_map m;
    inf_map_init(&m);
    cr_assert_eq(inf_map_reserve(&m, 1000), KC_OK);
    inf_map_slot *slots = m.slots;
    static char keys[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        cr_assert_eq(inf_map_put(&m, keys[i], keys[i]), KC_OK);
    }
    cr_assert_eq(m.slots, slots);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(inf_map_get(&m, keys[i]), keys[i]);
    inf_map_close(&m);
}
