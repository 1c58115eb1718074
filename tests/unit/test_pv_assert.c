/* Unit tests of pv_assert: on in this (sanitizer or Debug) build, aborts with the condition. */
#include <criterion/criterion.h>

#include <signal.h>

#include "pv_assert.h"

Test(assert, is_on_in_sanitizer_and_debug_builds)
{
#if defined(PROVISIO_TEST_SANITIZE_OR_DEBUG)
    cr_assert_eq(PV_ASSERT_ENABLED, 1, "PV_ASSERT must check in a sanitizer or Debug build");
#else
    cr_assert_eq(PV_ASSERT_ENABLED, 0, "PV_ASSERT must compile out in a Release build");
#endif
}

Test(assert, a_holding_condition_passes_and_is_evaluated_only_when_on)
{
    int evaluated = 0;
    PV_ASSERT(++evaluated == 1);
    cr_assert_eq(evaluated, PV_ASSERT_ENABLED ? 1 : 0);
    int ran = 0;
    PV_DEBUG_ONLY(ran = 1);
    cr_assert_eq(ran, PV_ASSERT_ENABLED);
}

Test(assert, a_broken_condition_aborts, .signal = SIGABRT)
{
    if (!PV_ASSERT_ENABLED)
        raise(SIGABRT); /* compiled out: nothing to show in this build */
    int queued = 2, dirty = 1;
    PV_ASSERT(queued <= dirty);
}
