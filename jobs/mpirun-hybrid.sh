#!/bin/bash
# Train on one machine without SLURM: RANKS ranks x THREADS threads, each rank bound to its
# own THREADS cores (so its OpenMP threads never compete with another rank's).
#
#   RANKS=2 THREADS=1 jobs/mpirun-hybrid.sh run.toml [more aetrain options]
#   RANKS=1 THREADS=2 jobs/mpirun-hybrid.sh run.toml
#
# Keep RANKS x THREADS at or below the cores; aetrain prints the binding it got and warns when
# a rank has fewer cores than threads.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ranks=${RANKS:-2}
threads=${THREADS:-1}
config=${1:?usage: RANKS=R THREADS=T jobs/mpirun-hybrid.sh CONFIG.toml [options]}
shift
source "$root/jobs/one-machine.sh"  # root, and Open MPI 5's TCP noise
exec mpirun -n "$ranks" --map-by "slot:PE=$threads" --bind-to core \
  -x OMP_NUM_THREADS="$threads" -x OMP_PROC_BIND=close -x OMP_PLACES=cores \
  "${AETRAIN:-$root/build/aetrain}" train --config "$config" "$@"
