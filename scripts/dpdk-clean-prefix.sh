#!/usr/bin/env bash
# Removes what DPDK processes with the given --file-prefix left behind: the runtime directory
# /var/run/dpdk/PREFIX and the hugepage files PREFIXmap_N in every hugetlbfs mount. For
# harnesses, after the process that used PREFIX has exited (or was killed): EAL keeps these
# files after a crash. Only names made exactly from PREFIX are touched (as
# dataplane/src/dpdk/runtime_files.rs does for a clean exit).
#
#   scripts/dpdk-clean-prefix.sh PREFIX...
set -uo pipefail
for prefix in "$@"; do
    case "$prefix" in "" | . | .. | */*) echo "$0: refusing prefix '$prefix'" >&2; continue ;; esac
    rm -rf -- "/var/run/dpdk/$prefix"
    while read -r _ dir fstype _; do
        [ "$fstype" = hugetlbfs ] || continue
        for f in "$dir/${prefix}map_"*; do
            rest=${f##*/}
            rest=${rest#"$prefix"}
            [[ $rest =~ ^map_[0-9]+$ ]] && rm -f -- "$f"
        done
    done < /proc/mounts
done
exit 0
