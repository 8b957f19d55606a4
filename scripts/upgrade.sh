#!/usr/bin/env bash
# Upgrades (or restarts) a running Fulcrum without systemd, keeping its flows: the new process
# adopts the flow tables the old one leaves in global.flow_state_dir (docs/UPGRADE.md).
#
#   scripts/upgrade.sh --pid PID --bin NEW_FULCRUM --config FILE
#
# 1. `NEW_FULCRUM check -c FILE`: a config the new binary refuses stops here, the old process
#    untouched.
# 2. SIGTERM to PID; waits (bounded) until it has exited and its DPDK ports are free.
# 3. Starts `NEW_FULCRUM run -c FILE` in the background (inside network namespace
#    $FULCRUM_NETNS if set), its log to $FULCRUM_LOG_FILE (default /var/log/fulcrum.log).
# 4. Waits (bounded) until its control socket answers; prints one line:
#    `pid=N stopped_after_ms=A serving_after_ms=B flow_tables={...}` (times from the SIGTERM).
# Exit status 1, with the reason, if any step fails.
set -euo pipefail

pid="" bin="" config=""
while [ $# -gt 0 ]; do
    case "$1" in
        --pid) pid="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        *) echo "upgrade.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
[ -n "$pid" ] && [ -n "$bin" ] && [ -n "$config" ] || {
    echo "usage: upgrade.sh --pid PID --bin NEW_FULCRUM --config FILE" >&2
    exit 1
}
log="${FULCRUM_LOG_FILE:-/var/log/fulcrum.log}"
ms() { date +%s%3N; }

# Gone, or a zombie its parent has not reaped yet (the ports are closed either way).
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    local state
    state=$(sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f1)
    [ "$state" != "Z" ]
}

"$bin" check -c "$config" >/dev/null || { echo "upgrade.sh: the new binary refuses $config" >&2; exit 1; }
alive "$pid" || { echo "upgrade.sh: no process $pid" >&2; exit 1; }

t0=$(ms)
kill -TERM "$pid"
for _ in $(seq 1 400); do
    alive "$pid" || break
    sleep 0.05
done
if alive "$pid"; then
    echo "upgrade.sh: process $pid did not stop within 20 s" >&2
    exit 1
fi
t_stopped=$(ms)

run=("$bin" run -c "$config")
if [ -n "${FULCRUM_NETNS:-}" ]; then
    run=(ip netns exec "$FULCRUM_NETNS" "${run[@]}")
fi
setsid "${run[@]}" </dev/null >/dev/null 2>"$log" &
new=$!

for _ in $(seq 1 600); do
    if status=$("$bin" ctl -c "$config" --json status 2>/dev/null); then
        t_serving=$(ms)
        tables=$(printf '%s' "$status" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("flow_tables")))' 2>/dev/null || echo null)
        echo "pid=$new stopped_after_ms=$((t_stopped - t0)) serving_after_ms=$((t_serving - t0)) flow_tables=$tables"
        exit 0
    fi
    if ! kill -0 "$new" 2>/dev/null; then
        echo "upgrade.sh: the new process exited at start; its log ($log):" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    sleep 0.05
done
echo "upgrade.sh: the new process did not serve within 30 s (log: $log)" >&2
exit 1
