/* Unit tests of pv_json: members added, optional strings skipped, no leak on failure. */
#include <criterion/criterion.h>

#include "pv_json.h"

Test(json, adds_strings_integers_objects_and_children)
{
    json_object *o = json_object_new_object();
    cr_assert(pv_json_add_str(o, "kind", "Event"));
    cr_assert(pv_json_add_i64(o, "count", INT64_C(9007199254740993)));
    cr_assert(pv_json_add(o, "flag", json_object_new_boolean(1)));
    json_object *child = pv_json_add_child(o, "metadata");
    cr_assert_not_null(child);
    cr_assert(pv_json_add_str(child, "name", "x"));
    cr_assert_str_eq(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                     "{\"kind\":\"Event\",\"count\":9007199254740993,\"flag\":true,"
                     "\"metadata\":{\"name\":\"x\"}}");
    cr_assert(pv_json_add_str(o, "kind", "Lease"), "a key added again replaces");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "kind")), "Lease");
    json_object_put(o);
}

Test(json, a_null_string_adds_nothing)
{
    json_object *o = json_object_new_object();
    cr_assert(pv_json_add_str(o, "namespace", NULL));
    cr_assert_eq(json_object_object_length(o), 0);
    json_object_put(o);
}

Test(json, a_failed_add_releases_the_value)
{
    /* No object to add to: the value must be released (LSan would see a leak). */
    cr_assert_not(pv_json_add(NULL, "k", json_object_new_string("leaks unless put")));
    cr_assert_not(pv_json_add_str(NULL, "k", "v"));
    cr_assert_null(pv_json_add_child(NULL, "k"));
    json_object *o = json_object_new_object();
    cr_assert_not(pv_json_add(o, "k", NULL), "a failed constructor is a failure");
    cr_assert_eq(json_object_object_length(o), 0);
    json_object_put(o);
}
