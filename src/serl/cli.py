"""The `serl` command: one subcommand per job a user runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import tyro

if TYPE_CHECKING:
    from serl.train.config import TrainConfig


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


def _config(env_id: str, **overrides: object) -> TrainConfig:
    from serl.train.config import recipe

    return recipe(env_id, **overrides)


def train(
    env_id: tyro.conf.Positional[str] = "serl/PandaPickCube-v0",
    agent: Literal["sac", "drq", "bc"] | None = None,
    demos: Path | None = None,
    num_demos: int | None = None,
    env_steps: int | None = None,
    seed: int = 0,
    run_dir: Path | None = None,
    actors: int = 1,
    resume: bool = False,
    eval_every: int | None = None,
    video: bool = True,
) -> int:
    """Train with a learner and actor processes on this machine (the env's recipe by default)."""
    from serl.train.launcher import train as launch

    cfg = _config(
        env_id, agent=agent, demos=str(demos) if demos else None, num_demos=num_demos,
        env_steps=env_steps, seed=seed, run_dir=str(run_dir) if run_dir else None,
        actors=actors, eval_every=eval_every, resume=resume,
    )
    return launch(cfg, resume=resume, video=video)


def learner(run_dir: Path, resume: bool = False) -> int:
    """Run the learner of RUN_DIR (its config.json) and listen for actors."""
    from serl.train.config import TrainConfig
    from serl.train.learner import run_learner

    _logging()
    return run_learner(TrainConfig.load(run_dir), resume=resume)


def actor(
    learner: str,
    config: Path,
    index: int = 0,
    start_step: int = 0,
    token: str | None = None,
) -> int:
    """Run actor INDEX against a learner at HOST:PORT (token from --token or $SERL_TOKEN)."""
    import json
    import os

    from serl.train.actor import run_actor
    from serl.train.config import TrainConfig

    _logging()
    secret = token or os.environ.get("SERL_TOKEN")
    if not secret:
        raise SystemExit("serl actor: give --token or set SERL_TOKEN (the learner's RUN_DIR/token)")
    cfg = TrainConfig.from_json(json.loads(config.read_text()))
    return run_actor(cfg, learner, secret, index, start_step)


def evaluate(run_dir: tyro.conf.Positional[Path], episodes: int = 20,
             video: Path | None = None) -> None:
    """Evaluate a run's newest checkpoint; print JSON with success_rate and mean_return."""
    import json

    from serl.train.evaluation import evaluate_run

    print(json.dumps(evaluate_run(run_dir, episodes=episodes, video=video)))


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `serl` command."""
    code = tyro.extras.subcommand_cli_from_dict(
        {
            "train": train,
            "learner": learner,
            "actor": actor,
            "eval": evaluate,
            "record-demos": record_demos,
            "render": render,
        },
        args=argv,
    )
    return code if isinstance(code, int) else 0


def entry_point() -> None:
    """Console-script entry: exit with the subcommand's code."""
    raise SystemExit(main())


if __name__ == "__main__":
    entry_point()
