"""eval.csv, learning-curve PNGs and evaluation videos."""

import numpy as np
import pytest

from serl.train.reports import (
    EVAL_COLUMNS,
    append_eval_row,
    eval_row,
    plot_learning_curves,
    read_eval_csv,
    write_video,
)


def test_eval_csv_round_trips_with_the_contract_header(tmp_path) -> None:
    path = tmp_path / "eval.csv"
    rows = [
        {"env_step": 1000, "wall_s": 12.5, "success_rate": 0.2, "mean_return": 3.0, "episodes": 10},
        {"env_step": 2000, "wall_s": 25.0, "success_rate": 0.9, "mean_return": 8.5, "episodes": 10},
    ]
    for row in rows:
        append_eval_row(path, row)
    assert path.read_text().splitlines()[0] == ",".join(EVAL_COLUMNS)
    assert read_eval_csv(path) == rows


def test_eval_row_missing_a_column_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="success_rate"):
        append_eval_row(tmp_path / "eval.csv", {"env_step": 1, "wall_s": 0.0})
    assert not (tmp_path / "eval.csv").exists()


def test_eval_row_is_timed_when_the_policy_was_taken() -> None:
    values = {"success_rate": 0.9, "mean_return": 1.0, "episodes": 20.0, "policy_age_s": 30.0}
    row = eval_row(values, env_step=2000, wall_s=100.0)
    assert (row["env_step"], row["wall_s"], row["success_rate"]) == (2000, 70.0, 0.9)
    assert eval_row({"success_rate": 1.0}, 5, wall_s=12.345)["wall_s"] == 12.35  # no age: now
    assert eval_row({"policy_age_s": 50.0}, 5, wall_s=20.0)["wall_s"] == 0.0  # never before 0


def test_learning_curve_png_is_written(tmp_path) -> None:
    rows = [{"env_step": s, "success_rate": s / 3000} for s in (1000, 2000, 3000)]
    out = plot_learning_curves({"seed 0": rows, "seed 1": rows}, tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_video_has_every_frame(tmp_path) -> None:
    import imageio.v3 as iio

    frames = [np.full((64, 96, 3), 20 * i, dtype=np.uint8) for i in range(12)]
    out = write_video(frames, tmp_path / "eval.mp4", fps=10)
    decoded = iio.imread(out)
    assert decoded.shape[0] == 12
    assert decoded.shape[1:3] == (64, 96)
    assert abs(int(decoded[5].mean()) - 100) <= 3  # lossy, but the content survives
