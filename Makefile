# Off-ROS quick start: `make demo` runs the main job, `make test` runs the tests.
# Both create the pinned virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv ros-install clean

$(STAMP): requirements.txt requirements-dev.txt setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@touch $(VENV)/COLCON_IGNORE
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/monodepth demo

lint: $(STAMP)
	$(BIN)/ruff check monodepth_ros training benchmarks test launch setup.py

# launch_testing's pytest plugins do not load on pytest >= 8: they are blocked here and the
# launch test runs under launch_testing's own runner (skipped, with the reason, without ROS 2).
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -p no:launch_testing -p no:launch_ros test
	$(BIN)/python test/run_launch_test.py

# With a sourced ROS 2 built for the venv's Python and numpy: build this package into install/
# (ament index, launch and config files, lib/monodepth_ros/depth_node) with colcon run by the
# venv's interpreter, so that the installed node uses the venv's packages. Then
# `source install/setup.bash`: `ros2 launch monodepth_ros kitti.launch.py` works and `make test`
# runs the ROS tests for real. The venv also gets the pure-Python packages that ROS 2's launch
# and ros2cli import (a distro has them as system packages, which the venv does not see).
ros-install: $(STAMP)
	@test -n "$$AMENT_PREFIX_PATH" || { echo "ros-install: no ROS 2 found; source its setup.bash first (e.g. /opt/ros/humble/setup.bash)" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet colcon-common-extensions osrf-pycommon lark catkin_pkg
	$(BIN)/python -m colcon build --paths . --packages-select monodepth_ros --symlink-install

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build install log .pytest_cache
