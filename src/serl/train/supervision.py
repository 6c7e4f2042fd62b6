"""What both launchers (this machine's, Ray's) share: starting and stopping serl processes,
the restart policy, progress bars from the learner's progress.json with the --wandb mirror's
forwarding, and a crashed process's last words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from serl.train.config import TrainConfig
from serl.train.wandb_mirror import WandbMirror

MAX_ACTOR_RESTARTS = 5
MAX_LEARNER_RESTARTS = 3
MIRROR_EVERY_S = 5.0  # how often --wandb forwards TensorBoard's new scalars


def start_serl(args: list[str], log: Path, token: str) -> subprocess.Popen:
    """`serl ARGS` as a child process with the run's token, its output appended to `log`."""
    # SERL_DEBUG: the processes' logs keep whole tracebacks, ending in the error's line
    env = {**os.environ, "SERL_TOKEN": token, "SERL_DEBUG": "1"}
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "serl.cli", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def actor_args(learner: str, config: str, index: int, nice: int) -> list[str]:
    """`serl actor`'s arguments: learner HOST:PORT or learner.json, the run's config.json."""
    index_nice = ["--index", str(index), "--nice", str(nice)]
    return ["actor", "--learner", learner, "--config", config, *index_nice]


def stop_process(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """SIGTERM a process (a learner checkpoints on it), wait, kill it past `timeout`."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file another process writes; {} while it is missing or half written."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def crash_report(log: Path) -> str:
    """A crashed process's last log line (its error) and where the whole log is."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        lines = []
    return f"{lines[-1] if lines else '(empty log)'}\n(full log: {log})"


class RunProgress:
    """A run's progress bars (env steps, learner steps, the last evaluation) from its
    progress.json, and the --wandb mirror's forwarding, for whichever launcher runs it."""

    def __init__(self, cfg: TrainConfig, mirror: WandbMirror | None) -> None:
        self.run, self.mirror = cfg.path, mirror
        self.env = tqdm(total=cfg.env_steps, desc="env steps", unit="step")
        self.updates = tqdm(desc="learner steps", unit="upd")
        self.last_mirror = time.monotonic()

    def show(self) -> None:
        """Refresh the bars (and forward new scalars every MIRROR_EVERY_S)."""
        if self.mirror is not None and time.monotonic() - self.last_mirror > MIRROR_EVERY_S:
            self.mirror.forward()
            self.last_mirror = time.monotonic()
        progress = read_json(self.run / "progress.json")
        self.env.n = min(progress.get("env_steps", 0), self.env.total)
        self.updates.n = progress.get("updates", 0)
        last = progress.get("last_eval") or {}
        if last:
            self.env.set_postfix(
                success=f"{last['success_rate']:.0%}",
                ret=f"{last['mean_return']:.1f}",
                refresh=False,
            )
        self.env.refresh()
        self.updates.refresh()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.env.close()
        self.updates.close()
