#!/bin/bash
# jobs/train.sbatch, jobs/encode.sbatch and jobs/pipeline.sh under a real SLURM controller and
# node daemon on this machine: a job that finishes; a job preempted by SIGUSR1 to its batch
# shell, which checkpoints, exits 75, is requeued, resumes and ends with the same weights as
# the uninterrupted job; a job on a full disk, which exits 6, says so and is not requeued; and
# the train -> encode pipeline.
#
#   tests/slurm/test_slurm.sh path/to/aetrain       (as root; exit 77: skipped)
set -euo pipefail
aetrain=$(realpath "${1:?usage: test_slurm.sh path/to/aetrain}")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then echo "SKIP: starting SLURM daemons needs root"; exit 77; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
   ! command -v munged >/dev/null; then
  if command -v apt-get >/dev/null; then  # Debian's packages (tools/install-deps.sh has them too)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      munge slurmctld slurmd slurm-client >/dev/null || { echo "SKIP: cannot install SLURM"; exit 77; }
  else
    echo "SKIP: no SLURM and no apt-get to install it"; exit 77
  fi
fi

work=$(mktemp -d /tmp/aetrain-slurm.XXXXXX)
# shellcheck source=cluster.sh
source "$here/cluster.sh"
trap 'umount -l "$work/full" 2>/dev/null; slurm_down' EXIT
slurm_up "$work/slurm"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 AETRAIN="$aetrain"
cd "$work"

fail() { echo "FAIL: $*"; for f in "$work"/aetrain-*.out; do echo "--- $f"; cat "$f"; done; exit 1; }
state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
wait_state() {  # job, wanted state regex, seconds
  for _ in $(seq 1 $(($3 * 4))); do
    [[ "$(state "$1")" =~ ^($2)$ ]] && return 0
    sleep 0.25
  done
  fail "job $1 is $(state "$1"), not $2, after $3 s"
}
same_weights() {  # two checkpoints hold the same model and optimizer, bit for bit
  "$python" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
bad = [n for n in names if not np.array_equal(a[n][()], b[n][()])]
sys.exit(f"differ: {bad}" if bad else 0)
PY
}

# About 5 s of training on 2 ranks: long enough to preempt after its first checkpoint.
"$root/tools/uniform_h5.py" data.h5 --rows 8000 --cols 512 > /dev/null
config() {  # name epochs
  cat > "$1.toml" <<TOML
data = "data.h5"
layers = [256, 32]
batch-size = 64
epochs = $2
checkpoint = "$1.h5"
checkpoint-every = 50
metrics = "$1.jsonl"
TOML
}
config whole 40
config part 40
config short 3

echo "== a job that finishes"
sbatch --wait "$root/jobs/train.sbatch" whole.toml > /dev/null || fail "train.sbatch exited with $?"
"$aetrain" inspect whole.h5 | grep -q "40 epochs complete" || fail "whole.h5 is not complete"
grep -q "aetrain exited with 0" aetrain-aetrain-train-*.out || fail "no clean exit in the output"
grep -q "requeueing" aetrain-aetrain-train-*.out && fail "a finished job was requeued"

echo "== a job preempted by SIGUSR1, requeued and resumed"
job=$(sbatch --parsable "$root/jobs/train.sbatch" part.toml)
for _ in $(seq 1 240); do grep -q '"event": "checkpoint"' part.jsonl 2>/dev/null && break; sleep 0.25; done
grep -q '"event": "checkpoint"' part.jsonl || fail "no checkpoint before the signal"
scancel -s USR1 -b "$job"
out=aetrain-aetrain-train-$job.out
for _ in $(seq 1 240); do grep -q "requeueing job $job" "$out" 2>/dev/null && break; sleep 0.25; done
grep -q "requeueing job $job" "$out" || fail "job $job was not requeued"
grep -q "stopped by a signal" "$out" || fail "aetrain did not stop on the signal"
grep -q "aetrain exited with 75" "$out" || fail "aetrain did not exit with 75"
wait_state "$job" "PENDING|REQUEUED|RUNNING|COMPLETED" 30
scontrol update JobId="$job" StartTime=now 2>/dev/null || true  # skip the requeue delay
wait_state "$job" COMPLETED 180
grep -q "run 1 on" "$out" || fail "the requeued run did not start"
grep -q "resuming part.h5" "$out" || fail "the requeued run did not resume"
same_weights whole.h5 part.h5 || fail "the preempted job ended with other weights"

echo "== a job that fails is not retried"
cat > broken.toml <<TOML
data = "missing.h5"
layers = [8]
checkpoint = "broken.h5"
TOML
job=$(sbatch --parsable --wait "$root/jobs/train.sbatch" broken.toml) && fail "a broken job succeeded"
grep -q "aetrain exited with 3" "aetrain-aetrain-train-$job.out" || fail "no exit 3 for missing data"
grep -q "requeueing" "aetrain-aetrain-train-$job.out" && fail "a failed job was requeued"

echo "== a full disk: exit 6, said, not requeued"
mkdir full
mount -t tmpfs -o size=256k tmpfs full || fail "cannot mount a tmpfs"
cat > full.toml <<TOML
data = "data.h5"
layers = [256, 32]
batch-size = 64
checkpoint = "full/full.h5"
TOML
job=$(sbatch --parsable --wait "$root/jobs/train.sbatch" full.toml) && fail "a job on a full disk succeeded"
out=aetrain-aetrain-train-$job.out
grep -q "aetrain exited with 6" "$out" || fail "no exit 6 for a full disk"
grep -q "full/full.h5: cannot write the checkpoint: No space left on device" "$out" ||
  fail "no line naming the checkpoint and the full disk"
grep -q "Free space and resubmit" "$out" || fail "train.sbatch did not say what to do"
grep -q "requeueing" "$out" && fail "a job on a full disk was requeued"
cat > full_encode.toml <<TOML
model = "whole.h5"
data = "data.h5"
out = "full/codes.h5"
TOML
job=$(sbatch --parsable --wait "$root/jobs/encode.sbatch" full_encode.toml) && fail "encode on a full disk succeeded"
out=aetrain-aetrain-encode-$job.out
grep -q "aetrain exited with 6" "$out" || fail "encode: no exit 6 for a full disk"
grep -q "Free space and resubmit" "$out" || fail "encode.sbatch did not say what to do"
[ -z "$(ls full)" ] || fail "files left on the full disk: $(ls full)"

echo "== train then encode"
cat > encode.toml <<TOML
model = "short.h5"
data = "data.h5"
out = "codes.h5"
TOML
line=$("$root/jobs/pipeline.sh" short.toml encode.toml)
encode=$(echo "$line" | grep -o 'encode job [0-9]*' | grep -o '[0-9]*')
wait_state "$encode" COMPLETED 180
"$python" - <<'PY' || fail "codes.h5 is wrong"
import h5py, sys
with h5py.File("codes.h5", "r") as f:
    c = f["codes"]
    sys.exit(0 if c.shape == (8000, 32) and c.attrs["model"] == "short.h5" else f"{c.shape}")
PY
echo "PASS"
