/*
 * kc_yaml - a thin, bounded reader over libyaml's document API.
 *
 * libyaml loads a whole document into an array of nodes; sequences and
 * mappings hold node indices, and an alias is simply the index of the
 * anchored node. So aliases never copy anything (an alias bomb is as small
 * in memory as its text), but the node graph may contain cycles
 * ("&a [*a]" is accepted by libyaml). Lookups here are one level at a time,
 * merge-key resolution is bounded by depth and by a visit budget, and the
 * generic JSON conversion is bounded the same way: no input can make these
 * functions loop, recurse without bound or allocate without bound.
 *
 * Scalars are kept as libyaml gives them: NUL-terminated byte strings with a
 * length. Typing follows YAML 1.1 as go-yaml applies it to plain scalars;
 * quoted scalars are always strings.
 */
#include "kc_yaml.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <yaml.h>

#define MERGE_DEPTH_MAX 16
#define MERGE_VISITS_MAX 10000
#define JSON_DEPTH_MAX 64
#define JSON_NODES_MAX 100000

struct kc_yaml {
    yaml_document_t doc;
};

static yaml_node_t *node_at(const kc_yaml *y, int id)
{
    if (!y || id <= 0)
        return NULL;
    /* yaml_document_get_node takes a non-const document but does not modify it. */
    return yaml_document_get_node((yaml_document_t *)&y->doc, id);
}

static bool scalar_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (n->tag && !strcmp((const char *)n->tag, YAML_NULL_TAG))
        return true;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && v[0] == '~') || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

int kc_yaml_parse(const char *buf, size_t len, const char *origin, kc_yaml **out, kc_error *err)
{
    *out = NULL;
    if (!origin)
        origin = "YAML";
    kc_yaml *y = calloc(1, sizeof(*y));
    if (!y)
        return kc_error_set(err, KC_ERR_NOMEM, "%s: out of memory", origin);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(y);
        return kc_error_set(err, KC_ERR_NOMEM, "%s: out of memory", origin);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(buf ? buf : ""), buf ? len : 0);
    if (!yaml_parser_load(&parser, &y->doc)) {
        /* yaml_parser_load has already released the partial document. */
        int rc;
        if (parser.error == YAML_MEMORY_ERROR) {
            rc = kc_error_set(err, KC_ERR_NOMEM, "%s: out of memory while parsing", origin);
        } else if (parser.error == YAML_READER_ERROR) {
            rc = kc_error_set(err, KC_ERR_CONFIG, "%s: invalid YAML at byte %zu: %s", origin,
                              parser.problem_offset,
                              parser.problem ? parser.problem : "unreadable input");
        } else {
            rc = kc_error_set(err, KC_ERR_CONFIG, "%s: invalid YAML at line %zu column %zu: %s%s%s",
                              origin, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                              parser.problem ? parser.problem : "syntax error",
                              parser.context ? " " : "", parser.context ? parser.context : "");
        }
        yaml_parser_delete(&parser);
        free(y);
        return rc;
    }
    yaml_parser_delete(&parser);
    *out = y;
    return KC_OK;
}

void kc_yaml_free(kc_yaml *y)
{
    if (!y)
        return;
    yaml_document_delete(&y->doc);
    free(y);
}

int kc_yaml_root(const kc_yaml *y)
{
    if (!y || !yaml_document_get_root_node((yaml_document_t *)&y->doc))
        return 0;
    return 1; /* libyaml's root is always the first node */
}

kc_yaml_kind kc_yaml_kind_of(const kc_yaml *y, int id)
{
    yaml_node_t *n = node_at(y, id);
    if (!n)
        return KC_YAML_NONE;
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return scalar_is_null(n) ? KC_YAML_NONE : KC_YAML_SCALAR;
    case YAML_SEQUENCE_NODE:
        return KC_YAML_SEQ;
    case YAML_MAPPING_NODE:
        return KC_YAML_MAP;
    default:
        return KC_YAML_NONE;
    }
}

size_t kc_yaml_line(const kc_yaml *y, int id)
{
    yaml_node_t *n = node_at(y, id);
    return n ? n->start_mark.line + 1 : 0;
}

static bool key_is(const yaml_node_t *k, const char *key, size_t keylen)
{
    return k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == keylen &&
           !memcmp(k->data.scalar.value, key, keylen);
}

static bool key_is_merge(const yaml_node_t *k)
{
    return key_is(k, "<<", 2) && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* Returns the value id (possibly a null node) or 0; *found tells a null value from absence. */
static int get_bounded(const kc_yaml *y, int map, const char *key, size_t keylen, int depth,
                       size_t *visits, bool *found)
{
    yaml_node_t *m = node_at(y, map);
    *found = false;
    if (!m || m->type != YAML_MAPPING_NODE || depth > MERGE_DEPTH_MAX ||
        ++*visits > MERGE_VISITS_MAX)
        return 0;
    int val = 0;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (key_is(node_at(y, p->key), key, keylen)) {
            val = p->value;
            *found = true;
        }
    }
    if (*found)
        return val;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (!key_is_merge(node_at(y, p->key)))
            continue;
        yaml_node_t *src = node_at(y, p->value);
        if (!src)
            continue;
        if (src->type == YAML_MAPPING_NODE) {
            val = get_bounded(y, p->value, key, keylen, depth + 1, visits, found);
            if (*found)
                return val;
        } else if (src->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = src->data.sequence.items.start;
                 it < src->data.sequence.items.top; it++) {
                val = get_bounded(y, *it, key, keylen, depth + 1, visits, found);
                if (*found)
                    return val;
            }
        }
    }
    return 0;
}

int kc_yaml_get(const kc_yaml *y, int map, const char *key)
{
    if (!key)
        return 0;
    size_t visits = 0;
    bool found;
    int v = get_bounded(y, map, key, strlen(key), 0, &visits, &found);
    if (!found || kc_yaml_kind_of(y, v) == KC_YAML_NONE)
        return 0;
    return v;
}

const char *kc_yaml_str(const kc_yaml *y, int id, size_t *len)
{
    yaml_node_t *n = node_at(y, id);
    if (!n || n->type != YAML_SCALAR_NODE || scalar_is_null(n))
        return NULL;
    if (len)
        *len = n->data.scalar.length;
    return (const char *)n->data.scalar.value;
}

bool kc_yaml_bool(const kc_yaml *y, int id, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                      "on",   "On",   "ON",   "y",   "Y"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO",
                                     "off",   "Off",   "OFF",   "n",  "N"};
    const char *s = kc_yaml_str(y, id, NULL);
    if (!s)
        return false;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcmp(s, yes[i])) {
            *out = true;
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (!strcmp(s, no[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

size_t kc_yaml_seq_len(const kc_yaml *y, int seq)
{
    yaml_node_t *n = node_at(y, seq);
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return 0;
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

int kc_yaml_seq_at(const kc_yaml *y, int seq, size_t i)
{
    if (i >= kc_yaml_seq_len(y, seq))
        return 0;
    return node_at(y, seq)->data.sequence.items.start[i];
}

/* ---- generic conversion to json-c ---------------------------------------- */

typedef struct conv {
    const kc_yaml *y;
    size_t nodes;
    kc_error *err;
} conv;

static bool plain_is_int(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

static bool plain_is_float(const char *s)
{
    bool digit = false;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digit = true;
        else if (!strchr("+-.eE", *p))
            return false;
    }
    return digit;
}

static int scalar_to_json(const yaml_node_t *n, json_object **out)
{
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    *out = NULL;
    if (scalar_is_null(n))
        return KC_OK; /* json-c's null is the NULL pointer */
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strlen(v) == len) {
        static const char *const t[] = {"true", "True", "TRUE"};
        static const char *const f[] = {"false", "False", "FALSE"};
        for (size_t i = 0; i < 3; i++) {
            if (!strcmp(v, t[i]) || !strcmp(v, f[i])) {
                *out = json_object_new_boolean(!strcmp(v, t[i]));
                return *out ? KC_OK : KC_ERR_NOMEM;
            }
        }
        if (plain_is_int(v)) {
            errno = 0;
            char *end;
            long long ll = strtoll(v, &end, 10);
            if (errno == 0 && *end == '\0') {
                *out = json_object_new_int64(ll);
                return *out ? KC_OK : KC_ERR_NOMEM;
            }
        } else if (plain_is_float(v)) {
            char *end;
            double d = strtod(v, &end);
            if (*end == '\0') {
                *out = json_object_new_double(d);
                return *out ? KC_OK : KC_ERR_NOMEM;
            }
        }
    }
    if (len > INT32_MAX)
        return KC_ERR_NOMEM;
    *out = json_object_new_string_len(v, (int)len);
    return *out ? KC_OK : KC_ERR_NOMEM;
}

static int conv_node(conv *c, int id, int depth, json_object **out);

/* Add the keys of the mapping src (converted) that obj does not have yet. */
static int conv_merge_from(conv *c, int src, int depth, json_object *obj)
{
    json_object *m = NULL;
    int rc = conv_node(c, src, depth, &m);
    if (rc)
        return rc;
    if (!json_object_is_type(m, json_type_object)) {
        json_object_put(m);
        return kc_error_set(c->err, KC_ERR_CONFIG, "merge key (<<) at line %zu: not a mapping",
                            kc_yaml_line(c->y, src));
    }
    json_object_object_foreach(m, k, v)
    {
        if (json_object_object_get_ex(obj, k, NULL))
            continue;
        if (json_object_object_add(obj, k, json_object_get(v))) {
            json_object_put(v);
            json_object_put(m);
            return kc_error_set(c->err, KC_ERR_NOMEM, "out of memory");
        }
    }
    json_object_put(m);
    return KC_OK;
}

static int conv_node(conv *c, int id, int depth, json_object **out)
{
    *out = NULL;
    yaml_node_t *n = node_at(c->y, id);
    if (!n)
        return KC_OK;
    if (depth > JSON_DEPTH_MAX || ++c->nodes > JSON_NODES_MAX)
        return kc_error_set(c->err, KC_ERR_CONFIG,
                            "YAML at line %zu: nested too deeply or too many nodes (alias loop?)",
                            kc_yaml_line(c->y, id));
    if (n->type == YAML_SCALAR_NODE) {
        if (scalar_to_json(n, out))
            return kc_error_set(c->err, KC_ERR_NOMEM, "out of memory");
        return KC_OK;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_object *arr = json_object_new_array();
        if (!arr)
            return kc_error_set(c->err, KC_ERR_NOMEM, "out of memory");
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            json_object *v;
            int rc = conv_node(c, *it, depth + 1, &v);
            if (rc) {
                json_object_put(arr);
                return rc;
            }
            if (json_object_array_add(arr, v)) {
                json_object_put(v);
                json_object_put(arr);
                return kc_error_set(c->err, KC_ERR_NOMEM, "out of memory");
            }
        }
        *out = arr;
        return KC_OK;
    }
    if (n->type != YAML_MAPPING_NODE)
        return KC_OK;
    json_object *obj = json_object_new_object();
    if (!obj)
        return kc_error_set(c->err, KC_ERR_NOMEM, "out of memory");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c->y, p->key);
        if (key_is_merge(k))
            continue;
        if (!k || k->type != YAML_SCALAR_NODE ||
            strlen((const char *)k->data.scalar.value) != k->data.scalar.length) {
            json_object_put(obj);
            return kc_error_set(c->err, KC_ERR_CONFIG,
                                "YAML at line %zu: mapping key is not a string",
                                kc_yaml_line(c->y, p->key));
        }
        json_object *v;
        int rc = conv_node(c, p->value, depth + 1, &v);
        if (rc) {
            json_object_put(obj);
            return rc;
        }
        /* json_object_object_add replaces an earlier value: the last duplicate key wins. */
        if (json_object_object_add(obj, (const char *)k->data.scalar.value, v)) {
            json_object_put(v);
            json_object_put(obj);
            return kc_error_set(c->err, KC_ERR_NOMEM, "out of memory");
        }
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        if (!key_is_merge(node_at(c->y, p->key)))
            continue;
        yaml_node_t *src = node_at(c->y, p->value);
        int rc = KC_OK;
        if (src && src->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = src->data.sequence.items.start;
                 !rc && it < src->data.sequence.items.top; it++)
                rc = conv_merge_from(c, *it, depth + 1, obj);
        } else if (src) {
            rc = conv_merge_from(c, p->value, depth + 1, obj);
        }
        if (rc) {
            json_object_put(obj);
            return rc;
        }
    }
    *out = obj;
    return KC_OK;
}

int kc_yaml_to_json(const kc_yaml *y, int node, json_object **out, kc_error *err)
{
    conv c = {y, 0, err};
    return conv_node(&c, node, 0, out);
}
