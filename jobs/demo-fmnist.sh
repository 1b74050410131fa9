#!/bin/bash
# The Fashion-MNIST demo, end to end: convert Debian's dataset-fashion-mnist to HDF5; train a
# 784-512-128-32 autoencoder on the 60,000 training images with RANKS MPI ranks; fit PCA with
# 32 components on the same images; compare both on the 10,000 test images; write both sets
# of test codes; draw the loss curves and the codes.
#
#   jobs/demo-fmnist.sh            # after building into ./build
#   PREFIX/share/aetrain/jobs/demo-fmnist.sh   # installed: runs PREFIX/bin/aetrain
#   RANKS=2 EPOCHS=15 BUILD=build WORK=demo jobs/demo-fmnist.sh
#
# Everything goes to WORK (default ./demo). Each run trains anew (the previous checkpoint is
# kept as fmnist-ckpt.h5.previous).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)  # the source tree, or PREFIX/share/aetrain installed
. "$root/jobs/find-aetrain.sh"
exe=$(aetrain_binary)  # $BUILD/aetrain, build/aetrain, the installed one, or PATH's
work=${WORK:-$root/demo}
ranks=${RANKS:-2}
epochs=${EPOCHS:-15}
python=/usr/bin/python3  # Debian's, with python3-h5py and python3-matplotlib
mkdir -p "$work"
source "$root/jobs/one-machine.sh"  # root, and Open MPI 5's TCP noise
aetrain() { mpirun -n "$ranks" "$exe" "$@"; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

t=$(now)
[ -s "$work/fmnist.h5" ] || "$root/tools/fmnist_to_h5.py" "$work/fmnist.h5"
convert_time=$(took "$t")

ckpt=$work/fmnist-ckpt.h5
[ ! -e "$ckpt" ] || mv "$ckpt" "$ckpt.previous"
t=$(now)
# A linear code layer (relu elsewhere, sigmoid output): codes may take any sign. The recipe:
# the best of those measured in 15 epochs (docs/performance.md, "Reconstruction error: the
# Fashion-MNIST demo and its recipe"): Adam at 7e-3 (beta1 0.95, beta2 0.99) after a linear warmup over the first ~11%
# of the steps (400 of 3525 in 15 epochs), then a cosine down to 0.
warmup=$(( 400 * epochs / 15 ))
aetrain train --data "$work/fmnist.h5" --dataset /train --val-dataset /test \
  --layers 512,128,32 --code-activation linear --batch-size 256 --epochs "$epochs" \
  --lr 7e-3 --beta1 0.95 --beta2 0.99 --lr-schedule cosine --warmup-steps "$warmup" \
  --checkpoint "$ckpt" --metrics "$work/fmnist-metrics.jsonl" --overwrite
train_time=$(took "$t")

t=$(now)
aetrain pca --data "$work/fmnist.h5" --dataset /train --components 32 --out "$work/fmnist-pca32.h5" \
  --overwrite
pca_time=$(took "$t")

t=$(now)
ae_mse=$(aetrain evaluate --model "$ckpt" --data "$work/fmnist.h5" --dataset /test)
pca_mse=$(aetrain evaluate --model "$work/fmnist-pca32.h5" --data "$work/fmnist.h5" --dataset /test)
evaluate_time=$(took "$t")

t=$(now)
aetrain encode --model "$ckpt" --data "$work/fmnist.h5" --dataset /test \
  --out "$work/fmnist-codes.h5" --out-dataset /autoencoder --overwrite
aetrain encode --model "$work/fmnist-pca32.h5" --data "$work/fmnist.h5" --dataset /test \
  --out "$work/fmnist-codes.h5" --out-dataset /pca --overwrite
encode_time=$(took "$t")

"$python" - "$ae_mse" "$pca_mse" <<'PY'
import json, sys
ae, pca = (json.loads(s)["mse"] for s in sys.argv[1:3])
print(f"\ntest MSE on 10,000 images: autoencoder {ae:.5f}   PCA(32) {pca:.5f}   "
      f"ratio {ae / pca:.3f} (target <= 0.50)")
PY
echo "time: convert $convert_time, train $train_time, pca $pca_time, evaluate $evaluate_time, encode $encode_time"

if "$python" -c "import matplotlib" 2>/dev/null; then
  "$root/jobs/plot_loss.py" "$work/fmnist-metrics.jsonl" "$work/fmnist-loss.png" \
    --title "784-512-128-32 on Fashion-MNIST, $ranks ranks"
  "$root/jobs/plot_codes.py" "$work/fmnist-codes.png" --labels "$work/fmnist.h5:/test_labels" \
    "$work/fmnist-codes.h5:/autoencoder=autoencoder (32-wide code)" \
    "$work/fmnist-codes.h5:/pca=PCA, 32 components"
else
  echo "(no python3-matplotlib: skipping the pictures)"
fi
