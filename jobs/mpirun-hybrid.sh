#!/bin/bash
# Train on one machine without SLURM: RANKS ranks x THREADS threads, each rank bound to its
# own THREADS cores (so its OpenMP threads never compete with another rank's).
#
#   RANKS=2 THREADS=1 jobs/mpirun-hybrid.sh run.toml [more aetrain options]
#   RANKS=1 THREADS=2 jobs/mpirun-hybrid.sh run.toml
#
# Keep RANKS x THREADS at or below the cores; aetrain prints the binding it got and warns when
# a rank has fewer cores than threads. The binary: $AETRAIN, else as jobs/find-aetrain.sh says
# ($BUILD/aetrain, build/aetrain, the installed one, the one on PATH).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)  # the source tree, or PREFIX/share/aetrain installed
. "$root/jobs/find-aetrain.sh"
ranks=${RANKS:-2}
threads=${THREADS:-1}
config=${1:?usage: RANKS=R THREADS=T jobs/mpirun-hybrid.sh CONFIG.toml [options]}
shift
exe=${AETRAIN:-$(aetrain_binary)}
source "$root/jobs/one-machine.sh"  # root, and Open MPI 5's TCP noise
exec mpirun -n "$ranks" --map-by "slot:PE=$threads" --bind-to core \
  -x OMP_NUM_THREADS="$threads" -x OMP_PROC_BIND=close -x OMP_PLACES=cores \
  "$exe" train --config "$config" "$@"
