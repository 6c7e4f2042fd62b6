"""What both launchers show while a run goes: progress bars from the learner's progress.json,
the --wandb mirror's forwarding, and a crashed process's last words."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from serl.train.config import TrainConfig
from serl.train.wandb_mirror import WandbMirror

MIRROR_EVERY_S = 5.0  # how often --wandb forwards TensorBoard's new scalars


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
