"""`serl train --wandb`: the launcher mirrors the run to Weights & Biases.

The learner writes TensorBoard only; the launcher reads its event files as they grow and logs
the same scalars to one W&B run, then the learning curve and the video. So every process
layout (restarts, resumes) gives one W&B run whose scalars are exactly TensorBoard's.
RUN_DIR/wandb.json keeps the W&B run's id and how far each event file was forwarded, so a
resumed run continues the same W&B run without repeating a point.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from serl.errors import ConfigError
from serl.train.run_files import write_json_atomic

WANDB_FILE = "wandb.json"
# TensorBoard scalars with these prefixes are steps of the environment; the rest, learner steps
ENV_STEP_PREFIXES = ("eval/", "rollout/")


def read_scalars(path: Path, offset: int = 0) -> tuple[list[tuple[str, int, float]], int]:
    """The (tag, step, value) scalars of a TensorBoard event file past byte `offset`, and the
    offset after its last whole record (one still being written is read next time)."""
    from tensorboardX.proto.event_pb2 import Event

    with path.open("rb") as f:  # only what is new: a long run's file grows to megabytes
        f.seek(offset)
        data = f.read()
    scalars, at = [], 0
    # TFRecord: u64 length, u32 crc of it, the Event proto, u32 crc of that
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length + 4
        if end > len(data):
            break
        event = Event.FromString(data[at + 12 : end - 4])
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                scalars.append((value.tag, event.step, value.simple_value))
        at = end
    return scalars, offset + at


def _step_axis(tag: str) -> str:
    return "env_step" if tag.startswith(ENV_STEP_PREFIXES) else "learner_step"


class WandbMirror:
    """One W&B run fed from a serl run's directory."""

    def __init__(self, run_dir: Path, project: str) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ConfigError(
                "--wandb needs the wandb package: pip install 'serl[wandb]' "
                "(WANDB_MODE=offline logs without an account)"
            ) from e
        self.run_dir = run_dir
        state = _read_state(run_dir)
        self.forwarded: dict[str, int] = state.get("forwarded", {})
        config = json.loads((run_dir / "config.json").read_text())
        self.wandb = wandb
        try:
            self.run = wandb.init(
                project=project,
                id=state.get("id"),
                resume="allow",
                name=f"{config['env_id']}/{run_dir.name}",
                dir=str(run_dir),
                config=config,
                settings=wandb.Settings(console="off"),  # the progress bars stay as they are
            )
        except wandb.Error as e:  # not logged in, no network: say so before anything runs
            raise ConfigError(
                f"--wandb: W&B did not start ({e}); log in with `wandb login`, or set "
                "WANDB_MODE=offline to log locally and `wandb sync` later"
            ) from e
        self.project = project
        self.defined: set[str] = set()
        self._save()

    @classmethod
    def for_run(cls, run_dir: Path, project: str | None, resume: bool) -> WandbMirror | None:
        """The mirror of a run: to `project`, or on --resume to the project the run used."""
        if project is None and resume:
            project = _read_state(run_dir).get("project")
        return None if project is None else cls(run_dir, project)

    def forward(self) -> int:
        """Log the scalars TensorBoard got since the last call; how many."""
        count = 0
        for path in sorted((self.run_dir / "tb").glob("events.out.tfevents.*")):
            scalars, end = read_scalars(path, self.forwarded.get(path.name, 0))
            self._log(scalars)
            self.forwarded[path.name] = end
            count += len(scalars)
        if count:
            self._save()
        return count

    def _log(self, scalars: list[tuple[str, int, float]]) -> None:
        """One W&B row per step of one axis (a TensorBoard flush writes a step's tags together)."""
        row: dict[str, float] = {}
        key: tuple[str, int] | None = None
        for tag, step, value in scalars:
            axis = _step_axis(tag)
            if tag not in self.defined:
                self.run.define_metric(tag, step_metric=axis)
                self.defined.add(tag)
            if (axis, step) != key or tag in row:
                if row:
                    self.run.log(row)
                key, row = (axis, step), {axis: step}
            row[tag] = value
        if row:
            self.run.log(row)

    def finish(self, media: list[Path]) -> None:
        """Forward what is left, log the run's PNGs and mp4s (by file name), close the W&B run."""
        self.forward()
        kinds = {".png": self.wandb.Image, ".mp4": self.wandb.Video}
        if media:
            self.run.log({path.stem: kinds[path.suffix](str(path)) for path in media})
        self.run.finish()
        # finish() can return while W&B's service is still writing the run's files (seen on a
        # busy machine): its teardown waits for them, so the run is whole when serl train ends
        self.wandb.teardown()

    def _save(self) -> None:
        write_json_atomic(
            self.run_dir / WANDB_FILE,
            {"id": self.run.id, "project": self.project, "forwarded": self.forwarded},
        )


def _read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / WANDB_FILE).read_text())
    except FileNotFoundError:
        return {}
