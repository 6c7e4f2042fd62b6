"""Outputs a person reads: the eval.csv contract, learning-curve PNGs and mp4 videos, where a
process loop's time goes."""

from __future__ import annotations

import contextlib
import csv
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

EVAL_COLUMNS = ("env_step", "wall_s", "success_rate", "mean_return", "episodes")


class PhaseClock:
    """Wall seconds a loop spends in each of its named phases (progress.json, bench)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        """The totals so far, in seconds (3 decimals)."""
        return {name: round(s, 3) for name, s in self.seconds.items()}


def eval_row(values: dict[str, float], env_step: int, wall_s: float) -> dict[str, float]:
    """An evaluation report as an eval.csv row: wall_s is when the evaluated policy was taken
    (`wall_s` now less the report's `policy_age_s`), as env_step is its env step; an evaluation's
    own episodes (20 camera episodes: ~30 s beside training on 2 cores) do not count."""
    taken = max(wall_s - values.get("policy_age_s", 0.0), 0.0)
    return {**values, "env_step": env_step, "wall_s": round(taken, 2)}


def append_eval_row(path: Path, row: dict[str, float]) -> None:
    """Append one evaluation to RUN_DIR/eval.csv (header on first write), durably."""
    missing = [c for c in EVAL_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"eval row lacks columns {missing}")
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EVAL_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def read_eval_csv(path: Path) -> list[dict[str, float]]:
    """Rows of an eval.csv as floats (env_step and episodes as ints)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    ints = {"env_step", "episodes"}
    return [{k: (int(float(v)) if k in ints else float(v)) for k, v in r.items()} for r in rows]


EPISODE_COLUMNS = (
    "env_step",
    "actor",
    "episode_return",
    "episode_length",
    "success",
    "intervention_rate",
    "overrun_rate",  # a robot env's: steps that overran its control period
    "robot_clock_start_s",  # a robot env's: the robot's clock at the episode's start and end
    "robot_clock_end_s",
)


def append_episode_row(path: Path, row: dict[str, float | str]) -> None:
    """Append one training episode to RUN_DIR/episodes.csv (intervention_rate blank when the
    run has no intervener, the robot columns when its env is no robot's)."""
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS, extrasaction="ignore", restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the last `window` values at each position (fewer at the start)."""
    x = np.asarray(values, np.float64)
    sums = np.cumsum(np.concatenate([[0.0], x]))
    lo = np.maximum(np.arange(1, len(x) + 1) - window, 0)
    return (sums[1:] - sums[lo]) / (np.arange(1, len(x) + 1) - lo)


def plot_intervention_rate(episodes_csv: Path, out: Path, window: int = 10) -> Path | None:
    """PNG of the per-episode intervention rate (and its rolling mean) over env steps; None
    when the run logged no intervention rate."""
    if not episodes_csv.exists():
        return None
    with episodes_csv.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("intervention_rate")]
    if not rows:
        return None
    rows.sort(key=lambda r: float(r["env_step"]))
    steps = [float(r["env_step"]) for r in rows]
    rates = [float(r["intervention_rate"]) for r in rows]
    return plot_series(
        {"per episode": (steps, rates), f"mean of {window}": (steps, rolling_mean(rates, window))},
        out,
        ylabel="intervention rate (share of steps)",
    )


def plot_series(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    out: Path,
    ylabel: str,
    legend: bool = True,
) -> Path:
    """PNG of named (x, y) series against env steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="." if len(x) < 200 else None, label=name)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_learning_curves(
    runs: dict[str, Sequence[dict[str, float]]], out: Path, metric: str = "success_rate"
) -> Path:
    """PNG of `metric` against env steps, one line per named run."""
    series = {
        name: ([r["env_step"] for r in rows], [r[metric] for r in rows])
        for name, rows in runs.items()
    }
    return plot_series(series, out, metric.replace("_", " "), legend=len(runs) > 1)


def write_video(frames: Iterable[np.ndarray], out: Path, fps: int = 25) -> Path:
    """Encode RGB uint8 frames as an H.264 mp4 (dimensions padded to even sizes for the codec)."""
    import imageio.v2 as imageio

    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # ffmpeg runs as a subprocess (fork, then exec at once): JAX's fork warning is moot here
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        with imageio.get_writer(out, fps=fps, codec="libx264", macro_block_size=2) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame, dtype=np.uint8))
    return out
