#!/usr/bin/env bash
# The TensorRT Edge-LLM export environment (`reasonseg export edgellm`), apart from the project's .venv: its
# exporter pins torch 2.13 / transformers 5.14.1 / onnx 1.19 (export/edgellm-constraints.txt).
#   bash scripts/setup_edgellm.sh [--optional]
# Where: $REASONSEG_EDGELLM_ENV, else <repo>/.venv-edgellm. Idempotent: a stamp of the constraints + this script.
# On any failure one line "[setup-edgellm] cannot make the Edge-LLM environment: <reason>"; exit 0 with
# --optional, 1 without. $REASONSEG_EDGELLM_TORCH_INDEX: an extra index for a CPU torch 2.13 (else pip's own
# sources: this machine's local wheels, or PyPI's CUDA build). On a machine with an NVIDIA GPU it also installs
# the TensorRT that Edge-LLM 0.11.0 is qualified with, to build and run engines (a failure there only warns).
set -uo pipefail
SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$SCRIPT")/.." || exit 1
ROOT=$PWD
ENV_DIR=${REASONSEG_EDGELLM_ENV:-$ROOT/.venv-edgellm}
CONSTRAINTS=$ROOT/export/edgellm-constraints.txt
OPTIONAL=0
[ "${1:-}" = "--optional" ] && OPTIONAL=1
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV

fail() {
  echo "[setup-edgellm] cannot make the Edge-LLM environment: $*" >&2
  [ "$OPTIONAL" = 1 ] && exit 0
  exit 1
}

[ -f "$CONSTRAINTS" ] || fail "$CONSTRAINTS is missing"
STAMP=$ENV_DIR/.reasonseg-edgellm
want=$(cat "$CONSTRAINTS" "$SCRIPT" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && [ -x "$ENV_DIR/bin/tensorrt-edgellm-export" ]; then
  echo "[setup-edgellm] up to date: $ENV_DIR"
  exit 0
fi

# the 0.11.0 wheels are built for CPython 3.10 - 3.12
PY=
for candidate in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
  [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
  if "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
    PY=$candidate
    break
  fi
done
[ -n "$PY" ] || fail "no Python 3.10 - 3.12 found (set PYTHON)"

mkdir -p "$ENV_DIR" 2>/dev/null || fail "cannot create $ENV_DIR"
LOG=$ENV_DIR/setup.log
: >"$LOG" || fail "cannot write $LOG"
t0=$SECONDS
echo "[setup-edgellm] installing tensorrt-edgellm[tools] into $ENV_DIR (~2.6 GB; log: $LOG)"

if [ ! -x "$ENV_DIR/bin/python" ]; then
  "$PY" -m venv "$ENV_DIR" >>"$LOG" 2>&1 || fail "$PY -m venv $ENV_DIR failed: $(tail -n 1 "$LOG")"
fi
PIP=("$ENV_DIR/bin/python" -m pip install --progress-bar off -c "$CONSTRAINTS")
[ -n "${REASONSEG_EDGELLM_TORCH_INDEX:-}" ] && PIP+=(--extra-index-url "$REASONSEG_EDGELLM_TORCH_INDEX")
pip_error() { grep -E '^ERROR|Error' "$LOG" | tail -n 1 | cut -c1-300; }

"${PIP[@]}" "tensorrt-edgellm[tools]" >>"$LOG" 2>&1 || fail "pip install tensorrt-edgellm[tools] failed: $(pip_error)"

# PyPI's torchvision is a CUDA build: beside a CPU torch it cannot even be imported (operator torchvision::nms
# does not exist), and transformers would then fail on it. The exporter itself never uses torchvision.
if ! "$ENV_DIR/bin/python" -c 'import torchvision' >>"$LOG" 2>&1; then
  "$ENV_DIR/bin/python" -m pip uninstall -y torchvision >>"$LOG" 2>&1 || fail "cannot remove the unusable torchvision"
fi

"$ENV_DIR/bin/tensorrt-edgellm-export" --help >>"$LOG" 2>&1 \
  || fail "tensorrt-edgellm-export does not start: $(tail -n 1 "$LOG" | cut -c1-300)"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >>"$LOG" 2>&1; then
  "${PIP[@]}" "tensorrt==10.16.0.72" >>"$LOG" 2>&1 \
    || echo "[setup-edgellm] TensorRT not installed (engines cannot be built or run here): $(pip_error)" >&2
fi

echo "$want" >"$STAMP" || fail "cannot write $STAMP"
versions=$("$ENV_DIR/bin/python" -c 'import importlib.metadata as m
print(", ".join(p + " " + m.version(p) for p in ("tensorrt-edgellm", "torch", "transformers", "onnx")))')
echo "[setup-edgellm] ready in $((SECONDS - t0)) s: $ENV_DIR ($versions)"
