#!/bin/bash
# Train across machines without SLURM: PER_NODE ranks on each host of HOSTFILE, THREADS
# threads each, ranks bound to their own cores; preemption by SIGUSR1 to mpirun works as
# under SLURM (mpirun forwards it; aetrain checkpoints and exits with 75).
#
#   HOSTFILE=hosts PER_NODE=2 THREADS=16 jobs/mpirun-cluster.sh run.toml [options]
#
# The data, the checkpoint and the binary must be on a file system every host sees (set
# HDF5_USE_FILE_LOCKING=FALSE on Lustre, GPFS or NFS). The binary: $AETRAIN, else as
# jobs/find-aetrain.sh says ($BUILD/aetrain, build/aetrain, the installed one, the one on PATH).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)  # the source tree, or PREFIX/share/aetrain installed
. "$root/jobs/find-aetrain.sh"
hostfile=${HOSTFILE:?set HOSTFILE to a file with one host per line}
per_node=${PER_NODE:-2}
threads=${THREADS:-1}
config=${1:?usage: HOSTFILE=... jobs/mpirun-cluster.sh CONFIG.toml [options]}
shift
exe=${AETRAIN:-$(aetrain_binary)}
ranks=$(($(grep -cv '^\s*\(#\|$\)' "$hostfile") * per_node))
exec mpirun -n "$ranks" --hostfile "$hostfile" --map-by "ppr:$per_node:node:PE=$threads" \
  --bind-to core -x OMP_NUM_THREADS="$threads" -x OMP_PROC_BIND=close -x OMP_PLACES=cores \
  -x HDF5_USE_FILE_LOCKING=FALSE \
  "$exe" train --config "$config" --resume "$@"
