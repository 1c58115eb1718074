/*
 * pv_json - building json-c objects without leaking on allocation failure.
 *
 * Every helper adds one member to the object o (borrowed; replacing a member
 * of the same key) and reports failure as false: json-c returns NULL from a
 * constructor or non-zero from json_object_object_add when memory runs out,
 * and a value that could not be attached is released here, never leaked.
 *
 * Threading: none of their own; o must not be visible to another thread.
 */
#ifndef PROVISIO_PV_JSON_H
#define PROVISIO_PV_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Add v under key, taking over the caller's reference to v (released on
 * failure). v NULL (a failed constructor) is a failure.
 */
bool pv_json_add(json_object *o, const char *key, json_object *v);

/*
 * Add a copy of the string value (borrowed) under key. value NULL adds
 * nothing and is not a failure: optional fields stay absent.
 */
bool pv_json_add_str(json_object *o, const char *key, const char *value);

/* Add the integer value under key. */
bool pv_json_add_i64(json_object *o, const char *key, int64_t value);

/*
 * Add a new empty object under key and return it (borrowed from o: valid as
 * long as o holds it), or NULL on failure.
 */
json_object *pv_json_add_child(json_object *o, const char *key);

#endif
