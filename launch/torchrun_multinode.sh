#!/usr/bin/env bash
# Several nodes by hand (no scheduler): run this on every node with the same MASTER_ADDR / MASTER_PORT and
# NODE_RANK = 0..NNODES-1. torchrun starts one process per GPU and sets the ranks; Lightning reads them
# (torchelastic environment), so the config's trainer.num_nodes / devices must match NNODES / GPUS_PER_NODE.
#   MASTER_ADDR=node0 NNODES=2 NODE_RANK=0 bash launch/torchrun_multinode.sh training/configs/l2l_refcoco.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: launch/torchrun_multinode.sh CONFIG.yaml [overrides...]}
shift
: "${MASTER_ADDR:?set MASTER_ADDR to node 0's address}"
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_PORT=${MASTER_PORT:-29500}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L | wc -l)}
exec .venv/bin/torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE" \
  --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "${RDZV_ID:-reasonseg}" \
  -m training fit --config "$config" --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS_PER_NODE" "$@"
