# Sourced by the job scripts (bash). aetrain_binary prints the aetrain binary they run:
#   1. $BUILD/aetrain, when BUILD names a build directory;
#   2. in the source tree, build/aetrain beside jobs/;
#   3. installed (cmake --install), the aetrain in the installation's bin directory, which
#      the file aetrain-bindir beside this one names relative to it;
#   4. the aetrain on PATH.
# It fails, saying so, when there is none.
aetrain_binary() {
  local jobs bindir
  jobs=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if [ -n "${BUILD:-}" ]; then
    echo "$BUILD/aetrain"
  elif [ -x "$jobs/../build/aetrain" ]; then
    echo "$(cd "$jobs/.." && pwd)/build/aetrain"
  elif [ -r "$jobs/aetrain-bindir" ] && bindir=$(cat "$jobs/aetrain-bindir") &&
       [ -x "$jobs/$bindir/aetrain" ]; then
    echo "$(cd "$jobs/$bindir" && pwd)/aetrain"
  elif type -P aetrain; then  # -P: a file on PATH, never the scripts' own aetrain function
    :
  else
    echo "$(basename "$0"): no aetrain binary: build it into build/, set BUILD=<build directory>," \
         "or put aetrain on PATH" >&2
    return 1
  fi
}
