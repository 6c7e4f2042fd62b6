"""The `serl` command: one subcommand per job a user runs."""

from __future__ import annotations

from pathlib import Path

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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `serl` command."""
    tyro.extras.subcommand_cli_from_dict({"render": render}, args=argv)


if __name__ == "__main__":
    main()
