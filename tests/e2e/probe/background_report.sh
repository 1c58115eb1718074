#!/usr/bin/env bash
# A test (in the form of tests/e2e/*_test.sh) whose checks all pass but whose
# background process printed a sanitizer report into its log: tests/e2e/lib.sh
# must make it fail at exit (run by ctest as e2e.lib_fails_on_background_report
# with WILL_FAIL, without the sanitized wrapper, so only lib.sh can fail it).
#   background_report.sh PROBE KIND
# shellcheck disable=SC2317
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
e2e_init probe
probe=$1 kind=$2
runs_and_ends() {
  e2e_bg_start probe "$E2E_TMP/probe.log" sh -c "$probe $kind; exit 0"
  e2e_bg_wait probe 30 >/dev/null
}
e2e_test "the background probe runs and exits 0" runs_and_ends
e2e_done
