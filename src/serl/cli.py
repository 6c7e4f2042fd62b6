"""The `serl` command: one subcommand per job a user runs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import tyro


def render(
    env_id: tyro.conf.Positional[str] = "serl/PandaPickCubeVision-v0",
    out: Path = Path("render.png"),
    seed: int = 0,
    size: int = 256,
) -> None:
    """Write a PNG of the front and wrist cameras of a serl sim env at reset."""
    import gymnasium as gym
    import imageio.v3 as iio

    import serl.envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, render_mode="rgb_array", render_size=size)
    env.reset(seed=seed)
    image = env.render()
    env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, image)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, cameras front | wrist)")


def record_demos(
    env_id: tyro.conf.Positional[str],
    out: Path,
    expert: Literal["scripted", "spacemouse", "gamepad", "keyboard"] = "scripted",
    episodes: int = 20,
    seed: int = 0,
    keep_failures: bool = False,
    noise: float = 0.05,
) -> None:
    """Record demonstrations into an episode store (successful episodes only, by default)."""
    from serl.train.demos import record_demos as record

    path = record(
        env_id, episodes, out, expert=expert, seed=seed, successful_only=not keep_failures,
        noise=noise,
    )
    print(f"wrote {episodes} episodes to {path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `serl` command."""
    tyro.extras.subcommand_cli_from_dict(
        {"render": render, "record-demos": record_demos}, args=argv
    )


if __name__ == "__main__":
    main()
