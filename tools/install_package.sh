#!/usr/bin/env bash
# Install this package into a virtualenv the way colcon installs it on a robot, as a real copy:
#
#   tools/install_package.sh VENV_DIR        (the Makefile runs it whenever a source changed)
#
# Why a copy and not `colcon build --symlink-install`: a symlink install leaves the package's
# metadata (egg-info) in build/, reachable only through the PYTHONPATH of a *sourced* workspace, so
# every installed executable died with PackageNotFoundError when started as `ros2 run` or a user
# would start it; and it never shows what a robot's install holds. The copy can go stale, so the
# Makefile reinstalls (a few seconds) whenever a file of the package changed.
#
# Result: the package in VENV's site-packages, the node executables and console scripts in
# VENV/lib/audio_interaction_ros (where ros2 run / ros2 launch look), share/ (launch, config,
# ament index), colcon's VENV/setup.bash (source it: AMENT_PREFIX_PATH, PATH) and the console
# scripts (audio-interaction-*) linked into VENV/bin so that they are on PATH after sourcing.
set -euo pipefail

VENV=$(cd "${1:?usage: tools/install_package.sh VENV_DIR}" && pwd)
cd "$(dirname "$0")/.."
PKG=audio_interaction_ros
BUILD_BASE=build/colcon
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")

# Remove the previous install (symlinked or copied) first: setuptools never deletes a module the
# sources no longer have, and a copy over an old symlink would write through it.
rm -rf "$BUILD_BASE/$PKG" "$VENV/lib/$PKG" "$VENV/share/$PKG" "$SITE/$PKG" \
  "$SITE/$PKG"-*.egg-info "$SITE/$PKG.egg-link" \
  "$VENV/share/ament_index/resource_index/packages/$PKG"
find "$VENV/bin" -maxdepth 1 -type l -name 'audio-interaction-*' -delete

"$VENV/bin/colcon" --log-base build/colcon-log build --base-paths . --packages-select "$PKG" \
  --merge-install --install-base "$VENV" --build-base "$BUILD_BASE" >/dev/null 2>&1 \
  || { echo "colcon build failed: see build/colcon-log/latest_build" >&2; exit 1; }

for script in "$VENV/lib/$PKG"/audio-interaction-*; do
  ln -s "../lib/$PKG/${script##*/}" "$VENV/bin/${script##*/}"
done
echo "installed $PKG into $VENV (source $VENV/setup.bash to use its commands)"
