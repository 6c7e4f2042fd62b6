"""Outputs a person reads: the eval.csv contract, learning-curve PNGs and mp4 videos."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

EVAL_COLUMNS = ("env_step", "wall_s", "success_rate", "mean_return", "episodes")


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


def plot_learning_curves(
    runs: dict[str, Sequence[dict[str, float]]], out: Path, metric: str = "success_rate"
) -> Path:
    """PNG of `metric` against env steps, one line per named run."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, rows in runs.items():
        ax.plot([r["env_step"] for r in rows], [r[metric] for r in rows], marker=".", label=name)
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_video(frames: Iterable[np.ndarray], out: Path, fps: int = 25) -> Path:
    """Encode RGB uint8 frames as an H.264 mp4 (dimensions padded to even sizes for the codec)."""
    import imageio.v2 as imageio

    out.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(out, fps=fps, codec="libx264", macro_block_size=2) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))
    return out
