"""MuJoCo gymnasium base env: model loading, control/physics timing and lazily created renderers."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

ASSETS = Path(__file__).parent / "assets"


class MujocoEnv(gym.Env):
    """A gymnasium env over one MuJoCo model stepped `n_substeps` physics steps per control step."""

    def __init__(self, xml_path: Path, control_dt: float, physics_dt: float) -> None:
        n_substeps = round(control_dt / physics_dt)
        if n_substeps < 1 or abs(n_substeps * physics_dt - control_dt) > 1e-9:
            raise ValueError(
                f"control_dt={control_dt} must be a whole multiple of physics_dt={physics_dt}"
            )
        self.model = mujoco.MjModel.from_xml_path(str(xml_path))
        self.model.opt.timestep = physics_dt
        self.data = mujoco.MjData(self.model)
        self.control_dt = control_dt
        self.n_substeps = n_substeps
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def render_camera(self, camera: str, height: int, width: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) image from a named camera; GL opens on first use."""
        renderer = self._renderers.get((height, width))
        if renderer is None:
            renderer = mujoco.Renderer(self.model, height=height, width=width)
            self._renderers[(height, width)] = renderer
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def close(self) -> None:
        """Release the GL contexts of every renderer this env opened."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        super().close()
