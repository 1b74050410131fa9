#!/bin/bash
# Data in physical units, end to end: generate 40 sensors in K, Pa, mol/mol and m/s (spreads
# from 1e-5 to 2e3, driven by 4 hidden factors); show what happens without --normalize; train
# a 40-64-32-4 autoencoder and fit PCA with 4 components, both with --normalize standard (the
# statistics are fitted on /train and stored in each model); compare them on /test in
# normalized units and, from the reconstructions, in each sensor group's own units.
#
#   jobs/demo-physical-units.sh            # after building into ./build
#   PREFIX/share/aetrain/jobs/demo-physical-units.sh   # installed: runs PREFIX/bin/aetrain
#   RANKS=2 EPOCHS=60 BUILD=build WORK=demo jobs/demo-physical-units.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)  # the source tree, or PREFIX/share/aetrain installed
. "$root/jobs/find-aetrain.sh"
exe=$(aetrain_binary)  # $BUILD/aetrain, build/aetrain, the installed one, or PATH's
work=${WORK:-$root/demo}
ranks=${RANKS:-2}
epochs=${EPOCHS:-60}
python=/usr/bin/python3  # Debian's, with python3-h5py
mkdir -p "$work"
source "$root/jobs/one-machine.sh"  # root, and Open MPI 5's TCP noise
aetrain() { mpirun -n "$ranks" "$exe" "$@"; }
data=$work/physical.h5
[ -s "$data" ] || "$root/tools/physical_h5.py" "$data"

echo "--- without --normalize (one epoch): the default sigmoid output cannot reach the data"
aetrain train --data "$data" --layers 64,32,4 --epochs 1 --quiet 2>&1 | grep 'cannot fit' || true

ckpt=$work/physical-ckpt.h5
pca=$work/physical-pca4.h5
for f in "$ckpt" "$pca"; do [ ! -e "$f" ] || mv "$f" "$f.previous"; done
echo "--- autoencoder, --normalize standard"
aetrain train --data "$data" --dataset /train --val-dataset /test --normalize standard \
  --layers 64,32,4 --activation tanh --code-activation linear --batch-size 128 --lr 0.002 \
  --epochs "$epochs" --checkpoint "$ckpt" --metrics "$work/physical-metrics.jsonl" --overwrite |
  awk -v last="$epochs" '!/^epoch / || $2 == "1/" last || $2 == last "/" last'  # first, last epoch
echo "--- PCA, 4 components, --normalize standard"
aetrain pca --data "$data" --dataset /train --components 4 --normalize standard --out "$pca"

ae=$(aetrain evaluate --model "$ckpt" --data "$data" --dataset /test \
  --reconstruct "$work/physical-recon.h5" --reconstruct-dataset /autoencoder --overwrite)
pc=$(aetrain evaluate --model "$pca" --data "$data" --dataset /test \
  --reconstruct "$work/physical-recon.h5" --reconstruct-dataset /pca --overwrite)

"$python" - "$data" "$work/physical-recon.h5" "$ae" "$pc" <<'PY'
import json, sys
import h5py
import numpy as np
data, recon, ae, pc = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
print(f"\ntest rows: {ae['rows']:,}; mean squared error in normalized units (each column's "
      f"standard deviation on /train = 1):")
print(f"  autoencoder {ae['normalized_mse']:.4f}   PCA(4) {pc['normalized_mse']:.4f}   "
      f"ratio {ae['normalized_mse'] / pc['normalized_mse']:.3f}")
with h5py.File(data, "r") as f, h5py.File(recon, "r") as r:
    x, units = f["test"][()], [u for u in f["test"].attrs["units"]]
    names = [n.rsplit("_", 1)[0] for n in f["test"].attrs["names"]]
    err = {k: (r[k][()] - x) ** 2 for k in ("autoencoder", "pca")}
print("root mean squared error per sensor group, in its own units (from the reconstructions):")
for group in dict.fromkeys(names):
    cols = [i for i, n in enumerate(names) if n == group]
    a, p = (np.sqrt(err[k][:, cols].mean()) for k in ("autoencoder", "pca"))
    print(f"  {group:13s} [{units[cols[0]]:7s}] spread {x[:, cols].std(axis=0).mean():9.3g}   "
          f"autoencoder {a:9.3g}   PCA(4) {p:9.3g}")
PY
