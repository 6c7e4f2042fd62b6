"""MuJoCo Franka tasks, gymnasium registration and scripted experts."""

import os

# MuJoCo picks its GL backend when first imported: EGL renders offscreen with no display.
# Set before any mujoco import below; a user's own MUJOCO_GL still wins.
os.environ.setdefault("MUJOCO_GL", "egl")

from gymnasium.envs.registration import register, registry

from serl.envs.experts import PickCubeExpert, make_expert
from serl.envs.pick_cube import PandaPickCubeEnv

ENV_IDS = ("serl/PandaPickCube-v0", "serl/PandaPickCubeVision-v0")
EPISODE_STEPS = 100

for _env_id, _image_obs in zip(ENV_IDS, (False, True), strict=True):
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="serl.envs.pick_cube:PandaPickCubeEnv",
            max_episode_steps=EPISODE_STEPS,
            kwargs={"image_obs": _image_obs},
        )

__all__ = ["ENV_IDS", "PandaPickCubeEnv", "PickCubeExpert", "make_expert"]
