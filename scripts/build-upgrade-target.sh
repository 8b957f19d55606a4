#!/usr/bin/env bash
# Builds "the next version" of Fulcrum for the upgrade test (tests/e2e_restart.rs): the same
# source rebuilt with a bumped version string (FULCRUM_VERSION_SUFFIX=+next), copied to
# target/upgrade/fulcrum-next, so the test upgrades a running process to a different binary.
#
#   scripts/build-upgrade-target.sh      # prints the path of the binary it built
#
# Run it before the test suite builds (scripts/test.sh does): it rebuilds only the top crate,
# and the next plain `cargo build` rebuilds it again without the suffix.
set -euo pipefail
cd "$(dirname "$0")/.."
FULCRUM_VERSION_SUFFIX=+next cargo build --quiet --bin fulcrum
mkdir -p target/upgrade
cp target/debug/fulcrum target/upgrade/fulcrum-next.tmp
mv target/upgrade/fulcrum-next.tmp target/upgrade/fulcrum-next
target/upgrade/fulcrum-next --version | grep -q '+next' || {
    echo "build-upgrade-target.sh: the built binary does not carry +next" >&2
    exit 1
}
realpath target/upgrade/fulcrum-next
