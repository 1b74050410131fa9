#!/bin/bash
# Every test, as CI runs it (README, "Run every test"):
#   Debian 12 (this machine): install the packages; Release build (the default BLIS GEMM
#     backend) + ctest; AddressSanitizer and UndefinedBehaviorSanitizer build with the Eigen
#     backend + ctest: so both backends pass every test.
#   Debian 13: a fresh debootstrap root on a tmpfs (tools/debian13.sh); Release build (BLIS 1.1)
#     + ctest, all but the SLURM suite.
# Making the Debian 13 root is network-bound, so it starts first, in the background, and
# overlaps the CPU-bound Debian 12 builds. A failed part stops its own platform's chain only;
# the run fails if any part failed. It ends with each part's wall time.
#
#   tools/test-all.sh
#   D13_ROOT=/var/tmp/aetrain-debian13 tools/test-all.sh   # reuse (and keep) that root instead
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
work=$(mktemp -d /var/tmp/aetrain-test-all.XXXXXX)
fresh_root=
if [ -z "${D13_ROOT:-}" ]; then export D13_ROOT=$work/debian13 D13_TMPFS=1; fresh_root=1; fi
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
report=() failed=0 prep=
declare -A total=([12]=0 [13]=0)

part() {  # PLATFORM NAME COMMAND...: runs it and notes its wall time and outcome
  local platform=$1 name="Debian $1: $2" start=$SECONDS rc=0
  shift 2
  echo "=== $name"
  "$@" || rc=$?
  total[$platform]=$((total[$platform] + SECONDS - start))
  report+=("$(printf '%-44s %5d s  %s' "$name" $((SECONDS - start)) \
              "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
  [ $rc -eq 0 ] || failed=1
  return $rc
}

d13() {  # tools/debian13.sh, through sudo unless we are root (it mounts and chroots)
  if [ "$(id -u)" -eq 0 ]; then tools/debian13.sh "$@"
  else sudo env D13_ROOT="$D13_ROOT" D13_TMPFS="${D13_TMPFS:-}" tools/debian13.sh "$@"; fi
}

build() {  # DIR CMAKE-OPTIONS...
  cmake -S . -B "$1" "${@:2}" && cmake --build "$1" -j"$jobs"
}

counted() {  # COMMAND...: runs a ctest and keeps its output to count the tests at the end
  "$@" 2>&1 | tee "$(mktemp "$work/ctest.XXXXXX")"
}

finish() {
  local rc=$? start=$SECONDS counts
  set +e  # clean up all we can, whatever fails
  if [ -n "$prep" ] && kill -0 "$prep" 2>/dev/null; then
    kill -TERM -- "-$prep" 2>/dev/null || true  # its group: debootstrap or apt; its trap unmounts
    wait "$prep" 2>/dev/null || true
  fi
  # One line with every ctest's counts.
  counts=$(cat "$work"/ctest.* 2>/dev/null |
    awk '/tests passed, [0-9]+ tests failed out of/ {p += $NF - $4; f += $4}
         END {printf "all ctest runs: %d passed, %d failed", p, f}')
  if [ -n "$fresh_root" ]; then
    if d13 remove > /dev/null; then rm -rf "$work"
    else echo "tools/test-all.sh: kept $work: its Debian 13 root still has mounts" >&2; failed=1; fi
    report+=("$(printf '%-44s %5d s' "Debian 13: removing the root" $((SECONDS - start)))")
  else
    rm -rf "$work"
  fi
  echo
  echo "=== wall times ($jobs cores; load average $load_at_start at the start," \
       "$(cut -d' ' -f1-3 /proc/loadavg) at the end)"
  printf '%s\n' "${report[@]}"
  echo "Debian 12: ${total[12]} s; Debian 13: ${total[13]} s in the foreground; whole run: $SECONDS s"
  echo "$counts"
  [ $failed -eq 0 ] || rc=1
  exit $rc
}
trap finish EXIT
trap 'exit 130' INT  # a signal must end the script through EXIT, which cleans up
trap 'exit 143' TERM

part 12 "packages" tools/install-deps.sh
# set -m: a process group of its own, which finish can stop as a whole.
export -f d13
set -m
bash -c 'start=$SECONDS; d13 prepare > "$1" 2>&1; rc=$?
         echo "$((SECONDS - start)) $rc" > "$2"; exit $rc' _ "$work/prepare.log" "$work/prepare.result" &
prep=$!
set +m

part 12 "Release build" build build -DCMAKE_BUILD_TYPE=Release &&
  part 12 "ctest" counted ctest --test-dir build -j"$jobs" --output-on-failure || true
part 12 "ASan+UBSan build, Eigen GEMM" build build-asan -DAETRAIN_SANITIZE=ON -DAETRAIN_GEMM=eigen &&
  part 12 "ctest (ASan+UBSan)" counted ctest --test-dir build-asan -j"$jobs" --output-on-failure ||
  true

echo "=== Debian 13: waiting for the root (tools/debian13.sh prepare)"
start=$SECONDS rc=0
wait "$prep" || rc=$?
prep=
read -r prep_seconds _ < "$work/prepare.result" || prep_seconds=?
report+=("$(printf '%-44s %5s s  %s' "Debian 13: root + packages (background)" "$prep_seconds" \
            "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)"), waited $((SECONDS - start)) s")")
total[13]=$((total[13] + SECONDS - start))
if [ $rc -ne 0 ]; then
  failed=1
  tail -n 40 "$work/prepare.log"
else
  part 13 "Release build" d13 build &&
    part 13 "ctest (all but SLURM)" counted d13 ctest || true
fi
