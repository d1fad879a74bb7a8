# Development environment and the two quick-start commands (README): `make demo`, `make test`.
# Everything comes from the package registries: Debian packages, ROS 2 Jazzy PyPI wheels,
# torch (CPU wheel), transformers. On a robot use rosdep + colcon instead (README).
# Neither needs ../shared: without it the demo plays clips made here and the tests use the toy
# model; only the parity tests against the reference goldens skip.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ready
INSTALLED := $(VENV)/.installed
# every file of the installed package (directories too: a deleted file changes its directory)
PACKAGE_SOURCES := setup.py setup.cfg package.xml tools/install_package.sh \
  $(shell find audio_interaction_ros launch config resource -name __pycache__ -prune -o -print)
SHARED ?= ../shared
TOY_DIR ?= build/toy-model
CLIPS_DIR ?= build/clips
SHARED_CLIPS := $(SHARED)/audio/02_translate_sample02_02.wav $(SHARED)/audio/01_count_bark_sample01_02.wav \
  $(SHARED)/fixtures/tiny-beep/golden/inputs/mixed.wav
APT_PACKAGES := espeak-ng sox portaudio19-dev cmake g++ python3-dev
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_HOME := $(abspath build/ros_home)
export ROS_LOG_DIR := $(abspath build/ros_home/log)
export PYTHONUNBUFFERED := 1

.PHONY: venv apt toy demo test bench clean

venv: $(INSTALLED)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt requirements-dev.txt tools/build_interfaces.sh
	@$(MAKE) --no-print-directory apt
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (torch CPU wheel, transformers, ROS 2 Jazzy wheels)"
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, transformers, rclpy" || { echo "venv install failed"; exit 1; }
	@bash tools/build_interfaces.sh $(VENV)
	@bash tools/build_interfaces.sh $(VENV) --prefix build/mgonzs13_prefix mgonzs13/audio_common_msgs
	@touch $@

# This package, installed as a robot's colcon build installs it (a copy, refreshed whenever a
# source changed): the executables in $(VENV)/lib/audio_interaction_ros, $(VENV)/setup.bash.
$(INSTALLED): $(STAMP) $(PACKAGE_SOURCES)
	@bash tools/install_package.sh $(VENV)
	@touch $@

# The project's own small model: trained here in about a minute, cached (a toy: beeps and speech).
toy: $(INSTALLED)
	@$(VENV)/bin/audio-interaction-build-toy --out $(TOY_DIR)

$(TOY_DIR)/TOY_MODEL.json: | $(INSTALLED)
	@$(VENV)/bin/audio-interaction-build-toy --out $(TOY_DIR)

# Main job: the installed nodes on recordings over ROS topics, printing decisions and replies;
# what the robot says goes to build/demo_speech.wav (there is no speaker here). The recordings:
# ../shared's when it is there, else the clips made here (beeps at 48 kHz stereo, espeak-ng
# speech), which are written in any case for the "try it" line.
demo: toy
	@ours=$$($(PY) -m audio_interaction_ros.toy.clips $(CLIPS_DIR)) || exit 1; \
	if ls $(SHARED_CLIPS) >/dev/null 2>&1; then clips="$(SHARED_CLIPS)"; \
	  echo "== demo audio: recordings from $(SHARED)"; \
	else clips=$$ours; \
	  echo "== demo audio: made here in $(CLIPS_DIR) ($(SHARED) is absent): beeps, espeak-ng speech"; fi; \
	echo "== demo: TOY model ($(TOY_DIR)); the real one: model:=zhifeixie/AudioInteraction on a GPU =="; \
	: "3 s between clips: the robot ignores its microphone while it speaks (self-hearing)"; \
	$(VENV)/bin/audio-interaction-bringup --model $(TOY_DIR) --use-mic false --rate 1.0 \
	  --silence-between 3.0 --tasks three --print --exit-when-done --speech-wav build/demo_speech.wav \
	  $$(for clip in $$clips; do echo --audio-file $$clip; done) || exit 1; \
	set -- $$ours; echo "try it yourself:  source $(VENV)/setup.bash"; \
	echo "  audio-interaction-run --model $(TOY_DIR) --frontend streaming $${@: -1}"

# The toy is built before pytest starts, so its minute of training shows its progress (the tests'
# own fixture rebuilds it quietly should its recipe change).
test: $(INSTALLED) | $(TOY_DIR)/TOY_MODEL.json
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/step_latency.py --model fixture

clean:
	rm -rf build $(VENV)
