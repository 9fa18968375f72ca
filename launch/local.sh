#!/usr/bin/env bash
# One machine, all its GPUs (or the CPU): Lightning starts one process per device itself.
#   bash launch/local.sh training/configs/l2l_synthetic_tiny.yaml [--trainer.devices 4 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: launch/local.sh CONFIG.yaml [LightningCLI overrides...]}
shift
exec .venv/bin/python -m training fit --config "$config" "$@"
