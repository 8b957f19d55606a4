#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) and runs each for a bounded time,
# starting from the committed seeds (fuzz/corpus/seed/<target>, made from the golden cases by
# fuzz/make_seeds.py; the `config` target's are conf/examples and conf/tests/broken), the
# inputs that once crashed a target (fuzz/corpus/regressions/<target>, committed), plus what
# earlier runs found (fuzz/corpus/<target>, not committed).
# Prints one line per target and fails if any target crashed, timed out or ran out of memory;
# the input that did it is in fuzz/artifacts/<target>/ (replay: see fuzz/README.md).
#
#   scripts/fuzz.sh                  # every target, 15 s each (about 3 minutes, plus the build)
#   scripts/fuzz.sh 60               # 60 s each
#   FUZZ_TARGETS="pipeline pipeline_seq" scripts/fuzz.sh 600
#   FUZZ_SANITIZER=address scripts/fuzz.sh   # ASan (nightly flag: RUSTC_BOOTSTRAP=1 is set)
#
# Stable Rust is enough without a sanitizer (the default here: the code under test is safe
# Rust, where a bug shows as a panic, which libFuzzer catches without ASan).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-15}"
san="${FUZZ_SANITIZER:-none}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz not found: cargo install cargo-fuzz --locked (scripts/setup.sh does)" >&2
    exit 1
fi
if [ "$san" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
export CARGO_TERM_COLOR=never

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
echo "fuzz: building ($(echo $targets | wc -w) targets, sanitizer $san)"
cargo fuzz build -s "$san" >/dev/null 2>fuzz-build.log || {
    cat fuzz-build.log >&2
    exit 1
}
rm -f fuzz-build.log

failed=()
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log="artifacts/$t.log"
    status=0
    seeds=("corpus/seed/$t")
    # Inputs that once crashed a target (committed by hand, kept by make_seeds.py): every
    # run replays them first.
    [ -d "corpus/regressions/$t" ] && seeds+=("corpus/regressions/$t")
    if [ "$t" = config ]; then
        # The configs README and the diagnostics tests keep: no copy to drift from them.
        seeds=(../conf/examples ../conf/tests/broken)
    fi
    cargo fuzz run -s "$san" "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corp=$({ grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" || true; } | tail -1 | cut -d' ' -f2)
    crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
    printf 'fuzz: %-13s runs %10s  corpus %-12s crashes %d  %s\n' \
        "$t" "${runs:-?}" "${corp:-?}" "$crashes" "$([ "$status" = 0 ] && echo ok || echo FAILED)"
    if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
        failed+=("$t")
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|^artifact|^error' "$log" | head -20 >&2 || true
    else
        rm -f "$log"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (logs and inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crash in $(echo $targets | wc -w) targets"
