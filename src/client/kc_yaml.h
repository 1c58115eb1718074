/*
 * kc_yaml - read-only access to one parsed YAML (or JSON) document.
 *
 * Private to the client (kc_config_kubeconfig.c reads kubeconfig files with it); not
 * part of the client's contract.
 *
 * Nodes are named by int ids (libyaml's document node indices); 0 means
 * "no node" and every accessor accepts it, so lookups chain without checks:
 *   kc_yaml_get(y, kc_yaml_get(y, root, "cluster"), "server").
 * Aliases are resolved by libyaml to the anchored node (shared, never
 * copied), so a "billion laughs" document costs no memory. An alias may
 * point back into its own anchor (a cycle): every walk here is bounded in
 * depth and in nodes visited, so none loops. Merge keys ("<<: *base") are
 * honoured by kc_yaml_get, as go-yaml (and so kubectl) does.
 *
 * Ownership: a kc_yaml owns its nodes; strings returned are borrowed and
 * valid until kc_yaml_free. Threading: immutable once parsed; any thread may
 * read it.
 */
#ifndef PROVISIO_KC_YAML_H
#define PROVISIO_KC_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "kc_error.h"

struct json_object;

typedef struct kc_yaml kc_yaml;

typedef enum kc_yaml_kind {
    KC_YAML_NONE = 0, /* node 0, or a null scalar (~, null, empty) */
    KC_YAML_SCALAR,
    KC_YAML_SEQ,
    KC_YAML_MAP,
} kc_yaml_kind;

/*
 * Parse the first document of buf (len bytes; need not be NUL-terminated).
 * origin names the input in error messages ("kubeconfig /x/config"). Empty
 * input gives a document without root (kc_yaml_root returns 0). Syntax
 * errors give KC_ERR_CONFIG with the line and column. *out is owned by the
 * caller (kc_yaml_free).
 */
int kc_yaml_parse(const char *buf, size_t len, const char *origin, kc_yaml **out, kc_error *err);

void kc_yaml_free(kc_yaml *y);

/* Root node id, or 0 for an empty document. */
int kc_yaml_root(const kc_yaml *y);

/* Kind of a node; a null scalar (plain "", "~", "null") is KC_YAML_NONE. */
kc_yaml_kind kc_yaml_kind_of(const kc_yaml *y, int node);

/* 1-based line where node starts (0 for node 0), for error messages. */
size_t kc_yaml_line(const kc_yaml *y, int node);

/*
 * Value of key in mapping map: 0 when map is not a mapping, the key is
 * absent or its value is null. A key given twice: the last one wins. Keys not
 * found directly are looked up in merge keys ("<<"), first source first.
 */
int kc_yaml_get(const kc_yaml *y, int map, const char *key);

/*
 * Value of a scalar node (borrowed, NUL-terminated; *len, if non-NULL, gets
 * its length, which may exceed strlen when the scalar holds a NUL byte).
 * NULL for anything that is not a non-null scalar.
 */
const char *kc_yaml_str(const kc_yaml *y, int node, size_t *len);

/* YAML 1.1 boolean of a plain or quoted scalar (true/false, yes/no, on/off). */
bool kc_yaml_bool(const kc_yaml *y, int node, bool *out);

/* Items of a sequence: count (0 for anything else) and the i-th node. */
size_t kc_yaml_seq_len(const kc_yaml *y, int seq);
int kc_yaml_seq_at(const kc_yaml *y, int seq, size_t i);

/*
 * Convert node to a new json-c value (owned by the caller): plain scalars
 * are typed (null, booleans, integers, floats), quoted ones are strings.
 * KC_ERR_CONFIG when the node is nested deeper than 64 levels or visits more
 * than 100,000 nodes (cycles, alias bombs).
 */
int kc_yaml_to_json(const kc_yaml *y, int node, struct json_object **out, kc_error *err);

#endif
