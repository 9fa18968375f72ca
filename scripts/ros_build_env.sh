# Sourced by build_interfaces.sh and colcon_build.sh: the environment that builds ROS 2 packages against
# the Kilted PyPI wheels inside a venv (no /opt/ros to source).
# usage: ros_build_env VENV_DIR SITE_PACKAGES_DIR
ros_build_env() {
  local venv=$1 site=$2 ldp d
  # Same library path the wheels' bootstrapper gives python: VENV/lib + site-packages/ros_*.libs
  # (the generators run python, and ld needs the wheels' transitive deps).
  ldp="$venv/lib"
  for d in "$site"/ros_*.libs; do [[ -d $d ]] && ldp="$ldp:$d"; done
  export LD_LIBRARY_PATH="$ldp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1   # LD_LIBRARY_PATH already set: no re-exec
  export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export PATH="$venv/bin:$PATH"
  unset PYTHONPATH
}
