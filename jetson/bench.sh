#!/usr/bin/env bash
# Benchmarks seld-edge's engines on a Jetson: prints the power mode and clocks, then for each *.engine
# under DIR `seld-edge bench runtime --model ENGINE --seconds 60`, then `seld-edge bench features`, then
# `seld-edge bench zoo --exported DIR`: the zoo table's runtime columns for every model in DIR, the same
# command and table as on the PC (whose other columns need torch).
#
# Usage: ./jetson/bench.sh [DIR]          (DIR: default the current folder)
# Environment: SELD_EDGE  the seld-edge command (default: seld-edge; e.g. ~/.seld-edge/venv/bin/seld-edge)
# Exit codes: 0 done, 1 a benchmark failed, 2 no engine found or no seld-edge command.
set -euo pipefail

DIR="${1:-.}"
SELD_EDGE="${SELD_EDGE:-seld-edge}"

die() { echo "bench.sh: $*" >&2; exit 2; }

[ -d "$DIR" ] || die "$DIR: not a folder"
command -v "$SELD_EDGE" > /dev/null || die "$SELD_EDGE not found (activate the venv, or set SELD_EDGE=/path/to/seld-edge)"

mhz() { echo "$(( $1 / 1000000 )) MHz"; }  # devfreq reports Hz

echo "== power mode"
if command -v nvpmodel > /dev/null; then
    nvpmodel -q 2>&1 || true
else
    echo "nvpmodel not found"
fi

echo "== GPU clock"
declare -A seen=()
gpu_found=0
for dev in /sys/devices/platform/*/devfreq/* /sys/class/devfreq/*; do
    [ -r "$dev/cur_freq" ] || continue
    name="$(basename "$dev")"
    [ -z "${seen[$name]:-}" ] || continue
    seen[$name]=1
    case "$name" in *gpu*) ;; *) continue ;; esac
    gpu_found=1
    cur="$(cat "$dev/cur_freq")"
    line="$name: $(mhz "$cur")"
    if [ -r "$dev/min_freq" ] && [ -r "$dev/max_freq" ]; then
        min="$(cat "$dev/min_freq")"
        max="$(cat "$dev/max_freq")"
        line="$line (min $(mhz "$min"), max $(mhz "$max"))"
        if [ "$min" = "$max" ]; then
            line="$line; min = max: jetson_clocks appears to be on"
        else
            line="$line; jetson_clocks appears to be off"
        fi
    fi
    echo "$line"
done
[ "$gpu_found" = 1 ] || echo "no GPU devfreq node found"

echo "== CPU clocks"
if [ -r /sys/devices/system/cpu/online ]; then
    echo "online: $(cat /sys/devices/system/cpu/online)"
fi
cpu_line=""
for freq in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq; do
    [ -r "$freq" ] || continue
    cpu="$(basename "$(dirname "$(dirname "$freq")")")"
    cpu_line="$cpu_line $cpu $(( $(cat "$freq") / 1000 )) MHz;"  # cpufreq reports kHz
done
if [ -n "$cpu_line" ]; then
    echo "${cpu_line# }"
else
    echo "no cpufreq information found"
fi

mapfile -t engines < <(find "$DIR" -type f -name '*.engine' | sort)
[ "${#engines[@]}" -gt 0 ] || die "no *.engine under $DIR"

failed=0
for engine in "${engines[@]}"; do
    echo "== $SELD_EDGE bench runtime --model $engine --seconds 60"
    "$SELD_EDGE" bench runtime --model "$engine" --seconds 60 || failed=1
done
echo "== $SELD_EDGE bench features"
"$SELD_EDGE" bench features || failed=1
echo "== $SELD_EDGE bench zoo --exported $DIR"
"$SELD_EDGE" bench zoo --exported "$DIR" -o "$DIR/bench_zoo" || failed=1

[ "$failed" = 0 ] || { echo "bench.sh: a benchmark failed (see above)" >&2; exit 1; }
