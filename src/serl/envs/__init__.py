"""MuJoCo Franka tasks, gymnasium registration and scripted experts."""

import os

# MuJoCo picks its GL backend when first imported: EGL renders offscreen with no display.
# Set before any mujoco import below; a user's own MUJOCO_GL still wins.
os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa's software rasterizer (llvmpipe, where there is no GPU) hands each frame to a pool of
# threads; for our small camera frames the hand-off costs more than it saves (a 128x128
# two-camera observation on a 2-core machine: 2.2 ms of CPU drawn in the calling thread,
# 2.8 ms with the pool). A user's own setting still wins.
os.environ.setdefault("LP_NUM_THREADS", "0")

from gymnasium.envs.registration import register, registry

from serl.envs.bin_relocation import BinRelocationExpert, PandaBinRelocationEnv
from serl.envs.experts import PickCubeExpert, make_expert
from serl.envs.pick_cube import PandaPickCubeEnv
from serl.envs.sim_human import SimHumanRules, SimulatedHuman

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

# Reset-free bin relocation (forward / backward chosen per episode with reset options).
BIN_RELOCATION_IDS = ("serl/PandaBinRelocation-v0", "serl/PandaBinRelocationVision-v0")
BIN_RELOCATION_STEPS = 200
for _env_id, _image_obs in zip(BIN_RELOCATION_IDS, (False, True), strict=True):
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="serl.envs.bin_relocation:PandaBinRelocationEnv",
            max_episode_steps=BIN_RELOCATION_STEPS,
            kwargs={"image_obs": _image_obs},
        )

# Real-robot tasks (serl.robot.tasks): FrankaEnv over the robot server at $SERL_ROBOT_URL
# (default http://127.0.0.1:5000). The Sim id runs against `serl robot-server --scene peg`.
ROBOT_ENV_IDS = {
    "serl/FrankaPegInsertSim-v0": "sim_peg_insertion",
    "serl/FrankaPegInsert-v0": "peg_insertion",
    "serl/FrankaPCBInsert-v0": "pcb_insertion",
    "serl/FrankaCableRoute-v0": "cable_routing",
    "serl/FrankaBinRelocationForward-v0": "bin_relocation_forward",
    "serl/FrankaBinRelocationBackward-v0": "bin_relocation_backward",
}
for _env_id, _task in ROBOT_ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point="serl.robot.tasks:make_franka_env", kwargs={"task": _task})

__all__ = [
    "BIN_RELOCATION_IDS",
    "ENV_IDS",
    "BinRelocationExpert",
    "PandaBinRelocationEnv",
    "PandaPickCubeEnv",
    "PickCubeExpert",
    "SimHumanRules",
    "SimulatedHuman",
    "make_expert",
]
