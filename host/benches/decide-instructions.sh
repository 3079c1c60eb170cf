#!/usr/bin/env bash
# Instructions per `decide` call, for each policy of the decide benchmark
# (the shipped ones, the empty policy) and the threshold rule
# compiled natively: the benchmark binary runs under
# valgrind (callgrind) with DECIDE_CALLS=1000 and 3000 calls, counting only
# inside the call (LoadedPolicy::decide: conversion, lowering, the guest,
# lifting; natively, the rule itself), and the difference over 2000 calls is
# printed. Unlike the wall-clock figures of `cargo bench --bench decide`,
# these do not move with what else the machine runs.
#
# Needs valgrind, policies/build.sh and tests/fixtures/build.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
command -v valgrind >/dev/null || { echo "decide-instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
bench=$(cargo bench -p host --bench decide --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "decide" and m.get("executable"):
        print(m["executable"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
count() { # policy calls function
    DECIDE_POLICY=$1 DECIDE_CALLS=$2 valgrind --tool=callgrind --toggle-collect="$3" \
        --callgrind-out-file="$work/out" "$bench" --bench >/dev/null 2>"$work/err"
    grep -o 'Collected : [0-9]*' "$work/err" | grep -o '[0-9]*$'
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)"
for policy in threshold proportional empty threshold-native; do
    case $policy in
        threshold-native) fn='<threshold::Threshold as autoscaler_sdk::Policy>::decide' ;;
        *) fn='host::policy::LoadedPolicy::decide*' ;;
    esac
    low=$(count "$policy" 1000 "$fn")
    high=$(count "$policy" 3000 "$fn")
    echo "decide_instructions=$(( (high - low) / 2000 )) policy=$policy"
done
