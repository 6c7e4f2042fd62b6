"""Arm backends of the robot server: `sim` (MuJoCo) and `franka` (libfranka, optional)."""

from __future__ import annotations

from serl.robot.backends.base import Backend


def make_backend(name: str, **kwargs: object) -> Backend:
    """Build a backend by name; imports its (possibly optional) dependencies only then."""
    if name == "sim":
        from serl.robot.backends.sim import SimBackend

        return SimBackend(**kwargs)  # type: ignore[arg-type]
    if name == "franka":
        from serl.robot.backends.franka import FrankaBackend

        return FrankaBackend(**kwargs)  # type: ignore[arg-type]
    raise ValueError(f"backend must be 'sim' or 'franka', got {name!r}")


__all__ = ["Backend", "make_backend"]
