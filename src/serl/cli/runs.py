"""`serl learner`, `serl actor` and `serl eval`: a run's processes started by hand, and its
evaluation."""

from __future__ import annotations

from pathlib import Path

import tyro

from serl.cli.common import setup_logging
from serl.train.run_files import Intervener


def learner(run_dir: Path, resume: bool = False) -> int:
    """Run the learner of RUN_DIR (its config.json) and listen for actors.

    Args:
        run_dir: The run's directory, holding config.json (e.g. from a local serl train).
        resume: Continue from the newest checkpoint and the replay already stored.
    """
    from serl.train.config import TrainConfig
    from serl.train.learner_process import run_learner

    setup_logging()
    return run_learner(TrainConfig.load(run_dir), resume=resume)


def actor(
    learner: str,
    config: Path,
    index: int = 0,
    start_step: int = 0,
    token: str | None = None,
    intervene: Intervener | None = None,
    nice: int = 0,
) -> int:
    """Run actor INDEX against a learner at HOST:PORT (token from --token or $SERL_TOKEN).

    A restarted actor goes on from the steps of it the learner holds (or --start-step, if more).

    Args:
        learner: The learner's HOST:PORT (RUN_DIR/learner.json on its machine), or the path of
            that learner.json on this machine: the actor sets up, then waits for the address.
        config: A copy of the run's config.json.
        index: This actor's number, 0 to actors - 1 (actor 0 evaluates).
        start_step: Env steps this actor already took (the learner's count when more).
        token: The run's secret (RUN_DIR/token); default: $SERL_TOKEN.
        intervene: Overrides the run's intervention.json, e.g. a person at this gamepad.
        nice: Lower this process's CPU priority by this much (serl train passes the config's
            actor_nice).
    """
    import json
    import os

    if not 0 <= nice <= 19:
        raise SystemExit(f"serl actor: --nice must be in 0..19, got {nice}")
    _lower_cpu_priority(nice)

    from serl.train.actor_process import run_actor
    from serl.train.config import TrainConfig
    from serl.train.run_files import InterventionConfig

    setup_logging()
    secret = token or os.environ.get("SERL_TOKEN")
    if not secret:
        raise SystemExit("serl actor: give --token or set SERL_TOKEN (the learner's RUN_DIR/token)")
    cfg = TrainConfig.from_json(json.loads(config.read_text()))
    hil = InterventionConfig(kind=intervene) if intervene is not None else None
    return run_actor(cfg, learner, secret, index, start_step, hil)


def _lower_cpu_priority(nice: int) -> None:
    """Add `nice` to this process's nice value, on each of its threads (Linux keeps one per
    thread, and numpy's BLAS started a thread at import); threads started later inherit it."""
    import os

    os.nice(nice)
    value = os.getpriority(os.PRIO_PROCESS, 0)
    tasks = Path("/proc/self/task")
    for tid in os.listdir(tasks) if tasks.is_dir() else ():
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), value)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


def evaluate(
    run_dir: tyro.conf.Positional[Path], episodes: int = 20, video: Path | None = None
) -> None:
    """Evaluate a run's newest checkpoint; print JSON with success_rate and mean_return.

    Args:
        run_dir: The run's directory.
        episodes: Evaluation episodes (deterministic policy, seeds apart from training's).
        video: Also write an mp4 of the episodes here.
    """
    import json

    from serl.train.evaluation import evaluate_run

    print(json.dumps(evaluate_run(run_dir, episodes=episodes, video=video)))
