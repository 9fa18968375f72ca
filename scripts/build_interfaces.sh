#!/usr/bin/env bash
# Build and install the ROS 2 interface package `reasonseg_interfaces`
# (ros_ws/src/reasonseg_interfaces) into a Python venv that holds the ROS 2
# Kilted PyPI wheels (ros-kilted-rclpy, ros-kilted-rosidl-default-generators,
# ros-kilted-std-msgs, ...).
#
# usage: scripts/build_interfaces.sh VENV_DIR
#
# - idempotent: skips at once when VENV_DIR/share/reasonseg_interfaces/.build_stamp
#   matches a hash of the msg files, CMakeLists.txt, package.xml and this script
#   and the installed artefacts are still there (FORCE=1 rebuilds anyway);
# - installs pinned cmake/ninja from PyPI into the venv when the venv has none;
# - rewrites the build-host paths (/opt/python/cp311-cp311/...) baked into the
#   wheels' share/*/cmake files to this venv's Python / numpy include dirs;
# - configures/builds/installs with CMake+Ninja, prefix = VENV_DIR, so the C
#   libraries land in VENV_DIR/lib (already on the LD_LIBRARY_PATH that the
#   ros_wheels_bootstrapper .pth sets when the venv's python starts) and the
#   Python package in VENV_DIR/lib/pythonX.Y/site-packages.
set -euo pipefail

CMAKE_PIN="cmake==3.31.6"
NINJA_PIN="ninja==1.11.1.4"
PKG=reasonseg_interfaces
BAKED_PREFIX=/opt/python/cp311-cp311

log() { printf '[interfaces] %s\n' "$*"; }
die() { printf '[interfaces] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 VENV_DIR"
[[ -d $1 ]] || die "venv dir '$1' does not exist"
VENV=$(cd "$1" && pwd -P)
PY="$VENV/bin/python"
[[ -x $PY ]] || die "no python at $PY (not a venv?)"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SELF="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
REPO=$(cd "$SCRIPT_DIR/.." && pwd -P)
SRC="$REPO/ros_ws/src/$PKG"
[[ -f $SRC/package.xml && -f $SRC/CMakeLists.txt ]] || die "package sources not found in $SRC"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) not found"

STAMP="$VENV/share/$PKG/.build_stamp"
BUILD="$VENV/build/$PKG"

# --- 1. fast up-to-date check (no python start-up) --------------------------
src_hash() {
  (
    cd "$SRC"
    # sorted list of inputs: CMakeLists.txt, package.xml, msg/srv/action files
    find . -type f \( -name CMakeLists.txt -o -name package.xml -o -name '*.msg' \
      -o -name '*.srv' -o -name '*.action' \) -not -path './build/*' -print \
      | LC_ALL=C sort | xargs sha256sum
    sha256sum < "$SELF"
    printf 'venv=%s\n' "$VENV"
  ) | sha256sum | cut -d' ' -f1
}
HASH=$(src_hash)

installed_ok() {
  [[ -f $STAMP && "$(cat "$STAMP")" == "$HASH" ]] || return 1
  compgen -G "$VENV/lib/python3*/site-packages/$PKG/msg/__init__.py" >/dev/null || return 1
  [[ -f $VENV/lib/lib${PKG}__rosidl_typesupport_c.so ]] || return 1
  [[ -f $VENV/lib/lib${PKG}__rosidl_generator_py.so ]] || return 1
}
if [[ ${FORCE:-0} != 1 ]] && installed_ok; then
  log "up to date ($PKG, stamp ${HASH:0:12}), nothing to do"
  exit 0
fi

T0=$(date +%s)

# --- 2. prerequisites --------------------------------------------------------
log "checking prerequisites…"
# (the venv python re-execs itself once via the ros_wheels_bootstrapper .pth;
#  harmless here)
PYINFO=$("$PY" - <<'EOF'
import sys, sysconfig, os
try:
    import numpy
    npinc = numpy.get_include()
except Exception:
    npinc = ""
site = sysconfig.get_paths()["purelib"]
print(sysconfig.get_paths()["include"])
print(npinc)
print(site)
print(f"{sys.version_info.major}.{sys.version_info.minor}")
EOF
) || die "cannot run $PY"
{ read -r PY_INC; read -r NP_INC; read -r SITE; read -r PYVER; } <<<"$PYINFO"

[[ -f $PY_INC/Python.h ]] || die "Python.h not found in '$PY_INC' (install the Python development headers, e.g. apt-get install python3-dev)"
for p in ament_cmake rosidl_default_generators rosidl_default_runtime std_msgs rosidl_generator_py; do
  [[ -d $VENV/share/$p/cmake ]] || die "ROS package '$p' not found in $VENV/share (install ros-kilted-ament-cmake, ros-kilted-rosidl-default-generators, ros-kilted-std-msgs, ros-kilted-rclpy into the venv)"
done
[[ -d $SITE/rclpy ]] || die "rclpy not installed in $VENV (pip install ros-kilted-rclpy)"
[[ -n $NP_INC && -d $NP_INC ]] || die "numpy is not importable from $PY (pip install numpy)"
CC_BIN=$(command -v cc || command -v gcc || true)
CXX_BIN=$(command -v c++ || command -v g++ || true)
[[ -n $CC_BIN && -n $CXX_BIN ]] || die "no C/C++ compiler found (apt-get install build-essential)"

if [[ ! -x $VENV/bin/cmake || ! -x $VENV/bin/ninja ]]; then
  log "installing $CMAKE_PIN $NINJA_PIN into the venv…"
  mkdir -p "$VENV/build"
  "$PY" -m pip install -q --disable-pip-version-check "$CMAKE_PIN" "$NINJA_PIN" \
    >"$VENV/build/pip-cmake-ninja.log" 2>&1 \
    || { tail -n 20 "$VENV/build/pip-cmake-ninja.log" >&2; die "pip install $CMAKE_PIN $NINJA_PIN failed"; }
fi
CMAKE="$VENV/bin/cmake"
NINJA="$VENV/bin/ninja"
[[ -x $CMAKE && -x $NINJA ]] || die "cmake/ninja missing in $VENV/bin after install"

# --- 3. patch build-host paths baked into the wheels' cmake exports ----------
# e.g. INTERFACE_INCLUDE_DIRECTORIES "/opt/python/cp311-cp311/include/python3.11;
#      /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"
mapfile -t BAKED < <(grep -rlF --include='*.cmake' "$BAKED_PREFIX" "$VENV/share" 2>/dev/null || true)
if (( ${#BAKED[@]} )); then
  log "patching ${#BAKED[@]} cmake file(s) with $BAKED_PREFIX paths…"
  # longest match first; anything left over falls back to the venv itself
  for f in "${BAKED[@]}"; do
    sed -i \
      -e "s#$BAKED_PREFIX/lib/python[0-9.]*/site-packages/numpy/_core/include#$NP_INC#g" \
      -e "s#$BAKED_PREFIX/lib/python[0-9.]*/site-packages/numpy/core/include#$NP_INC#g" \
      -e "s#$BAKED_PREFIX/include/python[0-9.]*#$PY_INC#g" \
      -e "s#$BAKED_PREFIX/lib/python[0-9.]*/site-packages#$SITE#g" \
      -e "s#$BAKED_PREFIX#$VENV#g" \
      "$f"
  done
fi

# --- 4. configure / build / install -----------------------------------------
# shellcheck source=ros_build_env.sh
source "$SCRIPT_DIR/ros_build_env.sh"
ros_build_env "$VENV" "$SITE"

mkdir -p "$BUILD"
# a cache from another source dir / generator would make cmake refuse to run
if [[ -f $BUILD/CMakeCache.txt ]] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$SRC" "$BUILD/CMakeCache.txt"; then
  rm -rf "$BUILD"; mkdir -p "$BUILD"
fi

log "configuring… (build dir $BUILD)"
"$CMAKE" -S "$SRC" -B "$BUILD" -G Ninja \
  -DCMAKE_MAKE_PROGRAM="$NINJA" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DPython3_INCLUDE_DIR="$PY_INC" \
  -DPython3_NumPy_INCLUDE_DIR="$NP_INC" \
  -DPYTHON_INSTALL_DIR="lib/python$PYVER/site-packages" \
  -DBUILD_TESTING=OFF \
  >"$BUILD/configure.log" 2>&1 \
  || { tail -n 40 "$BUILD/configure.log" >&2; die "cmake configure failed (full log: $BUILD/configure.log)"; }

log "building…"
"$CMAKE" --build "$BUILD" -- -j"${JOBS:-2}" >"$BUILD/build.log" 2>&1 \
  || { tail -n 40 "$BUILD/build.log" >&2; die "build failed (full log: $BUILD/build.log)"; }

log "installing into $VENV…"
"$CMAKE" --install "$BUILD" >"$BUILD/install.log" 2>&1 \
  || { tail -n 40 "$BUILD/install.log" >&2; die "install failed (full log: $BUILD/install.log)"; }

# --- 5. smoke test through the venv python (bootstrapper path, no env vars) --
log "checking import…"
env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u LD_LIBRARY_PATH -u AMENT_PREFIX_PATH "$PY" - <<EOF \
  || die "installed package does not import / load its typesupport from $PY"
from rclpy.type_support import check_for_type_support
from $PKG.msg import SegmentationResult
check_for_type_support(SegmentationResult)
m = SegmentationResult(box=[1.0, 2.0, 3.0, 4.0], stage_ms=[0.5])
assert list(m.box) == [1.0, 2.0, 3.0, 4.0]
EOF

mkdir -p "$(dirname "$STAMP")"
printf '%s\n' "$HASH" >"$STAMP"
log "done in $(( $(date +%s) - T0 ))s ($PKG installed into $VENV)"
