/*
 * ipam_used - the used set (a treap of maximal runs) and ipam_next_free
 * (ipam_addr.c describes the representation).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam_internal.h"

/* ---- used set: a treap of runs ------------------------------------------- */

typedef struct used_node {
    ipam_u128 lo, hi;
    uint32_t left, right; /* 0 = none; also the free list's link (left) */
    uint32_t prio;
} used_node;

struct ipam_used {
    used_node *n; /* n[0] unused: index 0 means "none" */
    uint32_t cap; /* entries allocated */
    uint32_t hw;  /* entries ever handed out, >= 1 */
    uint32_t free_list;
    uint32_t root;
    size_t runs;
    uint64_t count;
    uint64_t rng;
};

int ipam_used_new(ipam_used **out)
{
    ipam_used *u = calloc(1, sizeof *u);
    if (!u)
        return KC_ERR_NOMEM;
    u->cap = 16;
    u->n = malloc(u->cap * sizeof *u->n);
    if (!u->n) {
        free(u);
        return KC_ERR_NOMEM;
    }
    u->hw = 1;
    u->rng = 0x2545f4914f6cdd1dull;
    *out = u;
    return 0;
}

void ipam_used_free(ipam_used *u)
{
    if (!u)
        return;
    free(u->n);
    free(u);
}

void ipam_used_clear(ipam_used *u)
{
    u->root = 0;
    u->hw = 1;
    u->free_list = 0;
    u->runs = 0;
    u->count = 0;
}

/* Make sure one node can be taken without allocating. */
static int reserve_node(ipam_used *u)
{
    if (u->free_list || u->hw < u->cap)
        return 0;
    if (u->cap > UINT32_MAX / 2)
        return KC_ERR_NOMEM;
    uint32_t cap = u->cap * 2;
    used_node *n = realloc(u->n, (size_t)cap * sizeof *n);
    if (!n)
        return KC_ERR_NOMEM;
    u->n = n;
    u->cap = cap;
    return 0;
}

/* Take a node (reserve_node must have succeeded). */
static uint32_t take_node(ipam_used *u, ipam_u128 lo, ipam_u128 hi)
{
    uint32_t k;
    if (u->free_list) {
        k = u->free_list;
        u->free_list = u->n[k].left;
    } else {
        k = u->hw++;
    }
    /* xorshift64*: priorities only need to look random to the key order. */
    u->rng ^= u->rng >> 12;
    u->rng ^= u->rng << 25;
    u->rng ^= u->rng >> 27;
    u->n[k].lo = lo;
    u->n[k].hi = hi;
    u->n[k].left = u->n[k].right = 0;
    u->n[k].prio = (uint32_t)((u->rng * 0x2545f4914f6cdd1dull) >> 32);
    u->runs++;
    return k;
}

static void give_node(ipam_used *u, uint32_t k)
{
    u->n[k].left = u->free_list;
    u->free_list = k;
    u->runs--;
}

/* Split t into nodes with lo < key (*l) and lo >= key (*r). */
static void split(used_node *n, uint32_t t, ipam_u128 key, uint32_t *l, uint32_t *r)
{
    if (!t) {
        *l = *r = 0;
        return;
    }
    if (n[t].lo < key) {
        split(n, n[t].right, key, &n[t].right, r);
        *l = t;
    } else {
        split(n, n[t].left, key, l, &n[t].left);
        *r = t;
    }
}

/* Join a and b where every key of a is below every key of b. */
static uint32_t merge(used_node *n, uint32_t a, uint32_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (n[a].prio > n[b].prio) {
        n[a].right = merge(n, n[a].right, b);
        return a;
    }
    n[b].left = merge(n, a, n[b].left);
    return b;
}

/* Put k into the subtree t by key, rotating it up by priority; returns the new subtree root. */
static uint32_t insert_at(used_node *n, uint32_t t, uint32_t k)
{
    if (!t)
        return k;
    if (n[k].prio > n[t].prio) {
        split(n, t, n[k].lo, &n[k].left, &n[k].right);
        return k;
    }
    if (n[k].lo < n[t].lo) {
        uint32_t c = insert_at(n, n[t].left, k);
        n[t].left = c;
    } else {
        uint32_t c = insert_at(n, n[t].right, k);
        n[t].right = c;
    }
    return t;
}

static void insert_node(ipam_used *u, uint32_t k)
{
    u->root = insert_at(u->n, u->root, k);
}

/* Unlink the node whose lo is key (it must exist); returns its index. */
static uint32_t erase(used_node *n, uint32_t *t, ipam_u128 key)
{
    while (n[*t].lo != key)
        t = key < n[*t].lo ? &n[*t].left : &n[*t].right;
    uint32_t k = *t;
    *t = merge(n, n[k].left, n[k].right);
    return k;
}

/* The run with the largest lo <= v, or 0. */
static uint32_t find_le(const ipam_used *u, ipam_u128 v)
{
    uint32_t t = u->root, best = 0;
    while (t) {
        if (u->n[t].lo <= v) {
            best = t;
            t = u->n[t].right;
        } else {
            t = u->n[t].left;
        }
    }
    return best;
}

/* In one descent: the run with the largest lo <= v (*le) and the one with the smallest lo > v
 * (*gt), 0 if none. */
static void find_neighbours(const ipam_used *u, ipam_u128 v, uint32_t *le, uint32_t *gt)
{
    uint32_t t = u->root;
    *le = *gt = 0;
    while (t) {
        if (u->n[t].lo <= v) {
            *le = t;
            t = u->n[t].right;
        } else {
            *gt = t;
            t = u->n[t].left;
        }
    }
}

/* If v is used, the last address of its run into *end: true. */
static bool run_end(const ipam_used *u, ipam_u128 v, ipam_u128 *end)
{
    uint32_t p = find_le(u, v);
    if (!p || u->n[p].hi < v)
        return false;
    *end = u->n[p].hi;
    return true;
}

bool ipam_used_contains(const ipam_used *u, ipam_addr a)
{
    ipam_u128 end;
    return run_end(u, a.v, &end);
}

int ipam_used_add(ipam_used *u, ipam_addr a)
{
    ipam_u128 x = a.v;
    uint32_t p, s;
    find_neighbours(u, x, &p, &s);
    if (p && u->n[p].hi >= x)
        return 0;
    bool join_left = p && u->n[p].hi + 1 == x;  /* n[p].hi < x: no overflow */
    bool join_right = s && x + 1 == u->n[s].lo; /* x < n[s].lo: no overflow */
    if (join_left && join_right) {
        u->n[p].hi = u->n[s].hi;
        give_node(u, erase(u->n, &u->root, u->n[s].lo));
    } else if (join_left) {
        u->n[p].hi = x;
    } else if (join_right) {
        u->n[s].lo = x; /* no key lies in (x, lo): order holds */
    } else {
        if (reserve_node(u))
            return KC_ERR_NOMEM;
        insert_node(u, take_node(u, x, x));
    }
    u->count++;
    return 0;
}

int ipam_used_remove(ipam_used *u, ipam_addr a)
{
    ipam_u128 x = a.v;
    uint32_t p = find_le(u, x);
    if (!p || u->n[p].hi < x)
        return 0;
    if (u->n[p].lo == u->n[p].hi) {
        give_node(u, erase(u->n, &u->root, x));
    } else if (x == u->n[p].lo) {
        u->n[p].lo = x + 1; /* x < hi */
    } else if (x == u->n[p].hi) {
        u->n[p].hi = x - 1; /* x > lo */
    } else {
        if (reserve_node(u)) /* may move u->n; p stays valid as an index */
            return KC_ERR_NOMEM;
        ipam_u128 hi = u->n[p].hi;
        u->n[p].hi = x - 1;
        insert_node(u, take_node(u, x + 1, hi));
    }
    u->count--;
    return 0;
}

uint64_t ipam_used_count(const ipam_used *u)
{
    return u->count;
}

size_t ipam_used_runs(const ipam_used *u)
{
    return u->runs;
}

typedef struct count_walk {
    const ipam_pool *pool;
    size_t seg; /* first segment that may overlap the next run */
    ipam_u128 n;
} count_walk;

/* In-order over the runs, merging against the segments. */
static void count_runs(const used_node *n, uint32_t t, count_walk *w)
{
    if (!t)
        return;
    count_runs(n, n[t].left, w);
    const seg *segs = w->pool->segs;
    size_t ns = w->pool->n_segs;
    while (w->seg < ns && segs[w->seg].hi < n[t].lo)
        w->seg++;
    for (size_t i = w->seg; i < ns && segs[i].lo <= n[t].hi; i++) {
        ipam_u128 lo = segs[i].lo > n[t].lo ? segs[i].lo : n[t].lo;
        ipam_u128 hi = segs[i].hi < n[t].hi ? segs[i].hi : n[t].hi;
        w->n += hi - lo + 1;
    }
    count_runs(n, n[t].right, w);
}

ipam_u128 ipam_used_count_in_pool(const ipam_pool *pool, const ipam_used *u)
{
    count_walk w = {pool, 0, 0};
    if (u)
        count_runs(u->n, u->root, &w);
    return w.n;
}

bool ipam_next_free(const ipam_pool *pool, const ipam_used *used, ipam_u128 hint, ipam_addr *out)
{
    if (pool->total == 0)
        return false;
    ipam_u128 off = hint % pool->total;
    size_t s = ipam_seg_of_offset(pool, off);
    ipam_u128 a = pool->segs[s].lo + (off - pool->segs[s].before);
    /*
     * Visit the hint's segment from the hint, every other segment once, and
     * the hint's segment again from its start: n_segs + 1 steps at most. A
     * run's end + 1 is never used (runs are maximal), so each step either
     * returns or moves on to the next segment.
     */
    for (size_t step = 0; step <= pool->n_segs; step++) {
        ipam_u128 end;
        if (!used || !run_end(used, a, &end)) {
            out->v = a;
            return true;
        }
        if (end < pool->segs[s].hi) {
            out->v = end + 1;
            return true;
        }
        s = s + 1 == pool->n_segs ? 0 : s + 1;
        a = pool->segs[s].lo;
    }
    return false;
}
