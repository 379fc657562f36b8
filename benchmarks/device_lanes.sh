#!/usr/bin/env bash
# Runs run_validation.sh jobs on a lent device until a deadline, for a short GPU loan, in LANES parallel lanes (the
# char-LM's small models leave one GPU mostly idle, but see below: one lane was faster). A job is started only
# while more than MIN_LEFT seconds remain and is killed at the deadline (an unfinished target writes no report, but
# its finished runs stay in validate's record beside it and the next call resumes them). Each job's log goes to
# $LOGS/<job>.log with its wall time. Measured on one H200: five lanes were slower than one after another
# (results/gpt-batch-seeds50/prereg.md), so LANES=1 is the default.
#   SECONDS_BUDGET=560 bash benchmarks/device_lanes.sh batch-s50-d21-b1024 batch-s50-d21-b64 ...
# The environment (DEVICE, SCALEPLAN, SEEDS, RESULTS, SCALEPLAN_CACHE_DIR) passes through to run_validation.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${SECONDS_BUDGET:-560}
lanes=${LANES:-1}
min_left=${MIN_LEFT:-60}
logs=${LOGS:-benchmarks/results/logs}
mkdir -p "$logs"
deadline=$(( $(date +%s) + budget ))
queue=("$@")
lock=$(mktemp)

lane() {
    local job left t0 rc
    while :; do
        # take the next job from the shared queue under a lock
        job=$(flock "$lock" bash -c 'n=$(cat "$0.n" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.n"; echo "$n"' "$lock")
        [ "$job" -ge "${#queue[@]}" ] && return
        job=${queue[$job]}
        left=$(( deadline - $(date +%s) ))
        if [ "$left" -le "$min_left" ]; then
            echo "$job: not started ($left s left)" | tee -a "$logs/lanes.log"
            continue
        fi
        t0=$(date +%s)
        timeout "$left" bash benchmarks/run_validation.sh "$job" > "$logs/$job.log" 2>&1
        rc=$?
        echo "$job: exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$logs/lanes.log" "$logs/$job.log"
    done
}

for _ in $(seq "$lanes"); do lane & done
wait
rm -f "$lock" "$lock.n"
