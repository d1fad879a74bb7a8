# Development environment and the two quick-start commands (README): `make demo`, `make test`.
# Everything comes from the package registries: Debian packages, ROS 2 Jazzy PyPI wheels,
# torch (CPU wheel), transformers. On a robot use rosdep + colcon instead (README).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ready
SHARED ?= ../shared
TOY_DIR ?= build/toy-model
DEMO_CLIPS ?= $(SHARED)/audio/02_translate_sample02_02.wav $(SHARED)/audio/01_count_bark_sample01_02.wav \
  $(SHARED)/fixtures/tiny-beep/golden/inputs/mixed.wav
APT_PACKAGES := espeak-ng sox portaudio19-dev cmake g++ python3-dev
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_HOME := $(abspath build/ros_home)
export ROS_LOG_DIR := $(abspath build/ros_home/log)
export PYTHONUNBUFFERED := 1

.PHONY: venv apt toy demo test bench clean

venv: $(STAMP)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt requirements-dev.txt setup.py package.xml tools/build_interfaces.sh
	@$(MAKE) --no-print-directory apt
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (torch CPU wheel, transformers, ROS 2 Jazzy wheels)"
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, transformers, rclpy" || { echo "venv install failed"; exit 1; }
	@bash tools/build_interfaces.sh $(VENV)
	@$(VENV)/bin/colcon --log-base build/colcon-log build --base-paths . \
	  --packages-select audio_interaction_ros --merge-install --install-base $(VENV) \
	  --build-base build/colcon --symlink-install >/dev/null \
	  || { echo "colcon build failed: see build/colcon-log/latest_build"; exit 1; }
	@touch $@

# The project's own small model: trained here in about a minute, cached (a toy: beeps and speech).
toy: $(STAMP)
	@$(PY) -m audio_interaction_ros.toy.build --out $(TOY_DIR)

# Main job: the nodes on real recordings over ROS topics, printing decisions and replies; what the
# robot says goes to build/demo_speech.wav (there is no speaker here).
demo: toy
	@for clip in $(DEMO_CLIPS); do test -f $$clip || { echo "missing $$clip: put the shared folder beside the clone or set SHARED=..."; exit 1; }; done
	@echo "== demo: TOY model ($(TOY_DIR)); the real one: model:=zhifeixie/AudioInteraction on a GPU =="
	@# 3 s between clips: the robot ignores its microphone while it speaks (self-hearing)
	@$(PY) -m audio_interaction_ros.ros.bringup --model $(TOY_DIR) --use-mic false --rate 1.0 \
	  --silence-between 3.0 --tasks three \
	  --print --exit-when-done --speech-wav build/demo_speech.wav \
	  $(foreach clip,$(DEMO_CLIPS),--audio-file $(clip))

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/step_latency.py --model fixture

clean:
	rm -rf build $(VENV)
