#!/usr/bin/env bash
# Whole-scene inference over torchrun, each process taking its share of the CSV's rows:
#   tools/dist_infer_scene.sh CSV CONFIG CHECKPOINT N [infer_scene.py options, e.g. --out-dir DIR]
# One GPU per process where CUDA is present; otherwise N CPU processes over gloo.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 CSV CONFIG CHECKPOINT N [infer_scene.py options]" >&2
    exit 2
fi
CSV=$1
CONFIG=$2
CHECKPOINT=$3
NPROC=$4
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$(dirname "$0")/infer_scene.py" --csv "$CSV" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:5}"
