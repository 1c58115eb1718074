/* pv_json - see pv_json.h. */
#include "pv_json.h"

bool pv_json_add(json_object *o, const char *key, json_object *v)
{
    if (!o || !v || json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

bool pv_json_add_str(json_object *o, const char *key, const char *value)
{
    if (!value)
        return true;
    return pv_json_add(o, key, json_object_new_string(value));
}

bool pv_json_add_i64(json_object *o, const char *key, int64_t value)
{
    return pv_json_add(o, key, json_object_new_int64(value));
}

json_object *pv_json_add_child(json_object *o, const char *key)
{
    json_object *v = json_object_new_object();
    return pv_json_add(o, key, v) ? v : NULL;
}
