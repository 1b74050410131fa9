#!/bin/bash
# The Fashion-MNIST demo: convert Debian's dataset-fashion-mnist to HDF5, then train a
# 784-512-128-32 autoencoder on RANKS MPI ranks and show the loss falling.
#
#   jobs/demo-fmnist.sh            # after building into ./build
#   RANKS=2 EPOCHS=15 BUILD=build WORK=demo jobs/demo-fmnist.sh
#
# Writes WORK/fmnist.h5 (once), WORK/fmnist-ckpt.h5 and WORK/fmnist-metrics.jsonl; every run
# starts a new training (the previous demo checkpoint is moved to fmnist-ckpt.h5.previous).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
work=${WORK:-$root/demo}
ranks=${RANKS:-2}
epochs=${EPOCHS:-5}
mkdir -p "$work"

if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root unless told twice
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
[ -s "$work/fmnist.h5" ] || "$root/tools/fmnist_to_h5.py" "$work/fmnist.h5"
ckpt=$work/fmnist-ckpt.h5
[ ! -e "$ckpt" ] || mv "$ckpt" "$ckpt.previous"

# One thread per rank when the ranks fill the cores; aetrain warns about oversubscription.
mpirun -n "$ranks" "$build/aetrain" train \
  --data "$work/fmnist.h5" --dataset /train --val-dataset /test \
  --layers 512,128,32 --batch-size 256 --epochs "$epochs" \
  --checkpoint "$ckpt" --metrics "$work/fmnist-metrics.jsonl"
