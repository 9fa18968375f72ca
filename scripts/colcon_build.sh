#!/usr/bin/env bash
# Build the three ROS packages with colcon, as a robot's workspace would, against the venv's Kilted wheels.
# usage: scripts/colcon_build.sh VENV_DIR OUT_DIR   (build/, install/, log/ land in OUT_DIR)
# Needs the set-up step first (it patches the wheels' cmake files; see build_interfaces.sh).
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 VENV_DIR OUT_DIR" >&2; exit 2; }
VENV=$(cd "$1" && pwd -P)
mkdir -p "$2"
OUT=$(cd "$2" && pwd -P)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# shellcheck source=ros_build_env.sh
source "$REPO/scripts/ros_build_env.sh"
ros_build_env "$VENV" "$SITE"
cd "$OUT"
exec colcon --log-base "$OUT/log" build --base-paths "$REPO/ros_ws/src" --build-base "$OUT/build" \
  --install-base "$OUT/install" --merge-install --event-handlers console_direct- \
  --cmake-args -G Ninja -DPython3_EXECUTABLE="$VENV/bin/python" -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF
