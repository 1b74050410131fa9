#!/bin/bash
# cmake --install, then use only what was installed, as a user of the install would:
#  1. install the build into a temporary prefix; the files are where GNUInstallDirs puts them,
#     and the exported CMake package carries no build flag, source or build path;
#  2. the installed binary runs (--version) and the installed man page renders;
#  3. the installed model-card demo runs, with no build directory and no aetrain on PATH, so it
#     can only run the installed binary; `aetrain inspect` reads the checkpoint it wrote;
#  4. a project outside the tree (tests/install/consumer) finds the package with
#     find_package(aetrain), links aetrain::aetrain, builds, reads that checkpoint and runs the
#     model forward; `aetrain evaluate` on the same rows must give the same error.
#
#   tests/install/test_install.sh CMAKE BUILD_DIR CONFIG VERSION C_COMPILER CXX_COMPILER GENERATOR
set -euo pipefail
cmake=$1 build=$2 config=$3 version=$4 cc=$5 cxx=$6 generator=$7
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
python=/usr/bin/python3  # Debian's, with python3-h5py
tmp=$(mktemp -d /tmp/aetrain-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
# Runs a command with its output in $tmp/log, shown only when it fails.
quietly() { "$@" > "$tmp/log" 2>&1 || { rc=$?; cat "$tmp/log"; fail "$* exited with $rc"; }; }

step "cmake --install $build --prefix $prefix"
quietly "$cmake" --install "$build" --config "$config" --prefix "$prefix"
package=$(ls -d "$prefix"/lib*/cmake/aetrain 2>/dev/null | head -1)
[ -n "$package" ] || fail "no lib*/cmake/aetrain under $prefix"
libdir=$(dirname "$(dirname "$package")")
for f in bin/aetrain share/man/man1/aetrain.1 include/aetrain/model.hpp include/aetrain/checkpoint.hpp \
         share/aetrain/jobs/demo-model-card.sh share/aetrain/jobs/find-aetrain.sh \
         share/aetrain/jobs/aetrain-bindir share/aetrain/jobs/train.sbatch \
         share/aetrain/jobs/plot_loss.py share/aetrain/jobs/plot_codes.py \
         share/aetrain/tools/uniform_h5.py; do
  [ -s "$prefix/$f" ] || fail "not installed: $f"
done
for f in bin/aetrain share/aetrain/jobs/demo-model-card.sh share/aetrain/jobs/plot_loss.py \
         share/aetrain/tools/uniform_h5.py; do
  [ -x "$prefix/$f" ] || fail "installed without its execute bit: $f"
done
for f in aetrainConfig.cmake aetrainConfigVersion.cmake aetrainTargets.cmake; do
  [ -s "$package/$f" ] || fail "not installed: ${package#"$prefix"/}/$f"
done
[ -s "$libdir/libaetrain_core.a" ] || fail "not installed: ${libdir#"$prefix"/}/libaetrain_core.a"
# Build flags stay in the build: users get the usage requirements, not our warnings or CPU.
for flag in -march -Wall -Wextra -fno-math-errno -O1 AETRAIN_VERSION; do
  if grep -q -e "$flag" "$package"/aetrainTargets*.cmake; then
    fail "the exported package passes $flag to its users: $(grep -h -e "$flag" "$package"/aetrainTargets*.cmake)"
  fi
done
if grep -q -F -e "$src" -e "$build" "$package"/*.cmake; then
  fail "the exported package names the source or build tree: $(grep -h -F -e "$src" -e "$build" "$package"/*.cmake)"
fi
if readelf -d "$prefix/bin/aetrain" | grep -i -e rpath -e runpath | grep -q -F "$build"; then
  fail "the installed binary's RPATH points into the build tree"
fi
# The HDF5 wrapper is the library's own: not installed, and no installed header includes HDF5's.
[ ! -e "$prefix/include/aetrain/h5.hpp" ] || fail "installed: include/aetrain/h5.hpp (private to the library)"
if grep -l -E '#include *[<"](hdf5[^>"]*|.*h5\.hpp)[>"]' "$prefix"/include/aetrain/*.hpp; then
  fail "installed headers include HDF5's headers or the private wrapper (above)"
fi
echo "installed $(cd "$prefix" && find . -type f | wc -l) files; package in ${package#"$prefix"/}"

step "the installed binary and man page"
out=$("$prefix/bin/aetrain" --version) || fail "aetrain --version exited with $?"
echo "$out"
grep -q -F "$version" <<< "$out" || fail "aetrain --version does not say $version"
cmp -s "$build/aetrain.1" "$prefix/share/man/man1/aetrain.1" ||
  fail "the installed man page differs from the one built (and checked by the man_page test)"
warnings=$(groff -man -ww -Tutf8 -z "$prefix/share/man/man1/aetrain.1" 2>&1) ||
  fail "groff failed on the installed man page: $warnings"
[ -z "$warnings" ] || fail "groff warns about the installed man page: $warnings"
groff -man -Tascii -P-cbou "$prefix/share/man/man1/aetrain.1" | grep -q "^EXIT STATUS" ||
  fail "the installed man page has no EXIT STATUS section"

step "the installed demo, installed binary only"
# Nothing else to find: no BUILD or AETRAIN, no aetrain on PATH, no build/ beside the scripts.
clean_path=
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do [ -x "$d/aetrain" ] || clean_path=${clean_path:+$clean_path:}$d; done
work=$tmp/work
env -u BUILD -u AETRAIN PATH="$clean_path" bash -c '! type -P aetrain' > /dev/null ||
  fail "aetrain is still on PATH"
[ ! -e "$prefix/share/aetrain/build" ] || fail "a build directory beside the installed scripts"
env -u BUILD -u AETRAIN PATH="$clean_path" RANKS=2 ROWS=3000 EPOCHS=2 WORK="$work" \
  "$prefix/share/aetrain/jobs/demo-model-card.sh" > "$tmp/demo.txt" 2>&1 ||
  { rc=$?; cat "$tmp/demo.txt"; fail "the installed demo-model-card.sh exited with $rc"; }
cat "$tmp/demo.txt"
ckpt=$work/model-card-ckpt.h5
[ -s "$ckpt" ] || fail "the demo wrote no checkpoint $ckpt"
grep -q '^epoch 2/2 ' "$tmp/demo.txt" || fail "the demo did not train 2 epochs"
timeout 120 "$prefix/bin/aetrain" inspect "$ckpt" > "$tmp/inspect.txt" ||
  fail "aetrain inspect $ckpt exited with $?"
grep -q 'model: *100-50 (relu, code relu, output sigmoid)' "$tmp/inspect.txt" ||
  { cat "$tmp/inspect.txt"; fail "inspect shows another model"; }
timeout 120 "$prefix/bin/aetrain" inspect --json "$ckpt" | "$python" -c '
import json, sys
c = json.load(sys.stdin)
assert c["model"]["input_dim"] == 100 and c["model"]["encoder_widths"] == [50], c["model"]
assert c["train"]["epoch"] == 2 and c["train"]["world_size"] == 2, c["train"]
print("inspect --json: 100-50, 2 epochs on 2 ranks, step", c["train"]["global_step"])
' || fail "inspect --json does not describe the demo's run"

step "a project of its own: find_package(aetrain), aetrain::aetrain"
consumer=$tmp/consumer
quietly "$cmake" -S "$here/consumer" -B "$consumer" -G "$generator" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
found=$(grep '^aetrain_DIR:' "$consumer/CMakeCache.txt" | cut -d= -f2-)
[ "$found" = "$package" ] || fail "find_package(aetrain) found $found, not $package"
quietly "$cmake" --build "$consumer"
compile=$(grep -o '"command": "[^"]*main.cpp[^"]*"' "$consumer/compile_commands.json")
echo "consumer compiles with: ${compile#*: }"
for flag in -march -Wall -fno-math-errno; do
  if grep -q -e "$flag" <<< "$compile"; then fail "the consumer compiles with $flag"; fi
done
grep -q -e "-DEIGEN_MAX_ALIGN_BYTES=" <<< "$compile" ||
  fail "the consumer is not told Eigen's alignment of the library"
timeout 120 "$consumer/consumer" "$ckpt" > "$tmp/consumer.txt" ||
  { rc=$?; cat "$tmp/consumer.txt"; fail "the consumer exited with $rc"; }
cat "$tmp/consumer.txt"
grep -q '^architecture 100-50 (relu, code relu, output sigmoid)$' "$tmp/consumer.txt" ||
  fail "the consumer read another architecture"
grep -q '^parameters 10150 stored 10150$' "$tmp/consumer.txt" || fail "wrong parameter count"

# The same 4 rows for aetrain evaluate: row j, column i = ((j * 100 + i) % 97) / 97 in float32.
"$python" - "$tmp/rows.h5" <<'PY'
import sys
import h5py
import numpy as np
k = np.arange(4 * 100).reshape(4, 100) % 97
with h5py.File(sys.argv[1], "w") as f:
    f["x"] = k.astype(np.float32) / np.float32(97)
PY
evaluate=$(timeout 120 "$prefix/bin/aetrain" evaluate --model "$ckpt" --data "$tmp/rows.h5" --dataset /x) ||
  fail "aetrain evaluate exited with $?"
"$python" - "$tmp/consumer.txt" "$evaluate" <<'PY' || fail "the library and the binary disagree"
import json, math, sys
lines = dict(line.rstrip("\n").rsplit(" ", 1) for line in open(sys.argv[1]) if " mse " in line)
trained, fresh = float(lines["trained mse"]), float(lines["fresh mse"])
binary = json.loads(sys.argv[2])
assert binary["rows"] == 4, binary
print(f"trained model on 4 rows: mse {trained:.7g} (library, consumer) vs {binary['mse']:.7g} "
      f"(aetrain evaluate); a fresh Glorot model: {fresh:.7g}")
assert math.isclose(trained, binary["mse"], rel_tol=1e-5), "trained mse differs"
assert math.isfinite(fresh) and fresh > 0 and fresh != trained, "fresh mse"
PY
echo "install test: OK"
