"""Shared test setup: offscreen EGL rendering before anything imports MuJoCo."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
