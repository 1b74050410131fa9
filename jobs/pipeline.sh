#!/bin/bash
# Submit training, then encoding that starts only once training has finished successfully
# (requeues and all: the dependency follows the job id).
#
#   jobs/pipeline.sh train.toml encode.toml [extra sbatch options...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
train_config=${1:?usage: jobs/pipeline.sh TRAIN.toml ENCODE.toml [sbatch options]}
encode_config=${2:?usage: jobs/pipeline.sh TRAIN.toml ENCODE.toml [sbatch options]}
shift 2
train=$(sbatch --parsable "$@" "$here/train.sbatch" "$train_config")
encode=$(sbatch --parsable --dependency="afterok:$train" "$@" "$here/encode.sbatch" "$encode_config")
echo "train job $train, encode job $encode (runs after $train succeeds)"
