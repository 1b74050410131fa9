#!/bin/bash
# The model card's own example: input 100, one hidden layer of 50 with relu, sigmoid output,
# Adam, MSE, batch 10, on uniform random data (np.random.rand(N, 100)).
#
#   jobs/demo-model-card.sh            # after building into ./build
#   PREFIX/share/aetrain/jobs/demo-model-card.sh   # installed: runs PREFIX/bin/aetrain
#   RANKS=2 ROWS=100000 EPOCHS=5 BUILD=build WORK=demo jobs/demo-model-card.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)  # the source tree, or PREFIX/share/aetrain installed
. "$root/jobs/find-aetrain.sh"
exe=$(aetrain_binary)  # $BUILD/aetrain, build/aetrain, the installed one, or PATH's
work=${WORK:-$root/demo}
ranks=${RANKS:-2}
mkdir -p "$work"
source "$root/jobs/one-machine.sh"  # root, and Open MPI 5's TCP noise
data=$work/model-card.h5
[ -s "$data" ] || "$root/tools/uniform_h5.py" "$data" --rows "${ROWS:-100000}" --cols 100
ckpt=$work/model-card-ckpt.h5
[ ! -e "$ckpt" ] || mv "$ckpt" "$ckpt.previous"
mpirun -n "$ranks" "$exe" train --data "$data" --layers 50 --batch-size 10 \
  --epochs "${EPOCHS:-5}" --checkpoint "$ckpt" --metrics "$work/model-card-metrics.jsonl" \
  --overwrite
