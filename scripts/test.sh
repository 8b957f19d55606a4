#!/usr/bin/env bash
# Sets everything up and runs every test: format, lints, unit and golden tests, DPDK
# integration tests on virtual devices, and the end-to-end suites in network namespaces.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --quick    # skip the end-to-end suites, fuzzing and the perf smoke run
#
# FUZZ_SECS (default 10) bounds each fuzz target's run.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "setup"
scripts/setup.sh
export CARGO_TERM_COLOR=never

step "format"
cargo fmt --all --check

step "golden fixtures are what make_golden.py makes"
python3 dataplane/tests/golden/make_golden.py | diff -u dataplane/tests/golden/cases.json - >/dev/null || {
    echo "dataplane/tests/golden/cases.json is stale: run make_golden.py > cases.json" >&2
    exit 1
}

step "lints"
cargo clippy --workspace --all-targets -- -D warnings

if [ "$quick" = 0 ]; then
    step "the next version for the upgrade test (same source, version +next)"
    FULCRUM_UPGRADE_BIN=$(scripts/build-upgrade-target.sh)
    export FULCRUM_UPGRADE_BIN
fi

step "unit, golden and DPDK integration tests"
filter=()
[ "$quick" = 1 ] && filter=(-E 'not (test(/^e2e_/) | binary(/^e2e_/))')
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo nextest run --workspace "${filter[@]}" 2>&1 | tee "$log"
passed=$(sed -n 's/.*Summary \[.*\] *[0-9]* tests\? run: \([0-9]*\) passed.*/\1/p' "$log" | tail -1)

if [ "$quick" = 0 ]; then
    step "fuzzing: every target for ${FUZZ_SECS:-10} s"
    scripts/fuzz.sh "${FUZZ_SECS:-10}"

    step "perf/run.sh --smoke (proves the benchmark harness runs; figures are not asserted)"
    perf/run.sh --smoke
fi

step "all tests passed"
# The plain closing line CI reads (nextest's own summary scrolled away above).
echo "tests: ${passed:-0} passed, 0 failed"
