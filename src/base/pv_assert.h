/*
 * pv_assert - checked invariants in debug and sanitizer builds.
 *
 * PV_ASSERT(cond) aborts with the condition, file, line and function when
 * cond is false, in builds that define PROVISIO_DEBUGASSERT (CMake does for
 * PROVISIO_SANITIZE=ON and for CMAKE_BUILD_TYPE=Debug); elsewhere, Release
 * included, it compiles to nothing and cond is not evaluated, so cond must
 * have no side effects. It is for invariants the code itself keeps (as
 * curl's DEBUGASSERT), never for checking input from outside, which is an
 * error path in every build.
 *
 * PV_DEBUG_ONLY(stmt) runs stmt only in those builds: for checks too costly
 * to leave in Release (a walk over a whole structure).
 *
 * PV_CHECK(expr), for a checker that returns NULL when a structure's
 * invariants hold and else a static text naming the first that does not
 * (wq, store): in those builds, runs expr and aborts with that text.
 */
#ifndef PROVISIO_PV_ASSERT_H
#define PROVISIO_PV_ASSERT_H

#include <stdbool.h>

/* Print "assertion failed: expr (file:line, func)" to stderr and abort(). */
_Noreturn void pv_assert_fail(const char *expr, const char *file, int line, const char *func);

#ifdef PROVISIO_DEBUGASSERT
#define PV_ASSERT_ENABLED 1
#define PV_ASSERT(cond) ((cond) ? (void)0 : pv_assert_fail(#cond, __FILE__, __LINE__, __func__))
#define PV_DEBUG_ONLY(stmt)                                                                        \
    do {                                                                                           \
        stmt;                                                                                      \
    } while (0)
#define PV_CHECK(expr)                                                                             \
    do {                                                                                           \
        const char *pv_check_bad_ = (expr);                                                        \
        if (pv_check_bad_ != NULL)                                                                 \
            pv_assert_fail(pv_check_bad_, __FILE__, __LINE__, __func__);                           \
    } while (0)
#else
#define PV_ASSERT_ENABLED 0
/* sizeof: cond is type-checked (its names count as used) but never run. */
#define PV_ASSERT(cond) ((void)sizeof(!(cond)))
#define PV_DEBUG_ONLY(stmt)                                                                        \
    do {                                                                                           \
    } while (0)
#define PV_CHECK(expr) ((void)sizeof(expr))
#endif

#endif
