"""LeRobot loads what `serl demos export --format lerobot` writes: bench/results/lerobot_compat.json
(+ .png: a camera frame as serl stored it, as LeRobot decodes it, and their difference x8).

Records scripted camera pick-cube demos, exports them, then in a scratch environment with
LeRobot installed (never serl's: lerobot pulls torch; $SERL_LEROBOT_VENV, default
~/.cache/serl/lerobot-venv, created on first use: a few GB, minutes) loads the export with
LeRobot's LeRobotDataset (bench/lerobot_side.py) and compares every frame with serl's: the
non-image features exactly, the camera frames within the video codec's error, and LeRobot's
decode against serl's own import. LeRobot decodes with torchcodec when the system has FFmpeg's
libraries (apt install ffmpeg), else with PyAV; the result says which.

    .venv/bin/python bench/lerobot_compat.py [--episodes 5] [--write-fixture]

--write-fixture rewrites tests/fixtures/lerobot_v30 and lerobot_v30_images (+ .npz), the
datasets LeRobot's own code writes (camera frames as video, and as PNGs in the table) that
tests/test_lerobot.py reads.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from common import write_result

from serl.cli import main as serl
from serl.data import EpisodeStore
from serl.train.demos import export_lerobot, import_lerobot

HERE = Path(__file__).parent
LEROBOT = "lerobot==0.4.4"
VENV = Path(os.environ.get("SERL_LEROBOT_VENV") or Path.home() / ".cache/serl/lerobot-venv")
ENV_ID = "serl/PandaPickCubeVision-v0"


def lerobot_python() -> Path:
    """The scratch environment's python, with LeRobot installed (installed here if missing)."""
    python = VENV / "bin/python"
    if python.exists() and subprocess.run([python, "-c", "import lerobot"]).returncode == 0:
        return python
    print(f"installing {LEROBOT} into {VENV} (torch and more: a few GB, minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", LEROBOT], check=True)
    return python


def lerobot_side(*args: object) -> None:
    """Run bench/lerobot_side.py in the scratch environment."""
    command = [lerobot_python(), HERE / "lerobot_side.py", *map(str, args)]
    subprocess.run(command, check=True, env={**os.environ, "SVT_LOG": "1"})


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return round(float(10 * np.log10(255**2 / max(mse, 1e-12))), 2)


def frame_errors(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    return {
        "mean_abs": round(float(diff.mean()), 3),
        "p99_abs": float(np.percentile(diff, 99)),
        "max_abs": int(diff.max()),
        "psnr_db": psnr(ours, theirs),
    }


def compare(episodes: list, loaded: dict[str, np.ndarray], reimported: list) -> dict[str, object]:
    """serl's episodes (L + 1 frames each) against every frame LeRobot returned."""
    cameras = [k for k in episodes[0].observations if episodes[0].observations[k].ndim == 4]
    vectors = [k for k in sorted(episodes[0].observations) if k not in cameras]
    ours = {
        "observation.state": np.concatenate(
            [np.concatenate([e.observations[k] for k in vectors], 1) for e in episodes]
        ),
        "action": np.concatenate(
            [np.vstack([e.actions, np.zeros_like(e.actions[:1])]) for e in episodes]
        ),
        "next.reward": np.concatenate([np.append(e.rewards, 0) for e in episodes]),
        "next.done": np.concatenate(
            [np.append(e.terminated | e.truncated, True) for e in episodes]
        ),
    }
    exact = {
        k: bool(np.array_equal(np.asarray(v, loaded[k].dtype), loaded[k])) for k, v in ours.items()
    }
    images = {}
    for camera in cameras:
        stored = np.concatenate([e.observations[camera] for e in episodes])
        ours_decoded = np.concatenate([e.observations[camera] for e in reimported])
        theirs = loaded[f"observation.images.{camera}"]
        images[camera] = {
            "lerobot_vs_stored": frame_errors(stored, theirs),
            "serl_import_vs_stored": frame_errors(stored, ours_decoded),
            "lerobot_vs_serl_import": frame_errors(ours_decoded, theirs),
        }
    return {"non_image_features_equal": exact, "camera_frames": images}


def side_by_side(stored: np.ndarray, theirs: np.ndarray, path: Path) -> None:
    """One frame as stored | as LeRobot decoded it | their difference x8."""
    diff = np.clip(np.abs(stored.astype(np.int16) - theirs.astype(np.int16)) * 8, 0, 255)
    imageio.imwrite(path, np.concatenate([stored, theirs, diff.astype(np.uint8)], axis=1))


def run(episodes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        serl(["record-demos", ENV_ID, "--episodes", str(episodes), "--out", str(work / "demos")])
        start = time.perf_counter()
        exported = export_lerobot(work / "demos", work / "lr")
        export_s = time.perf_counter() - start
        lerobot_side("load", work / "lr", work / "loaded.npz")
        loaded = dict(np.load(work / "loaded.npz"))
        start = time.perf_counter()
        import_lerobot(work / "lr", work / "back", env_id=ENV_ID)
        import_s = time.perf_counter() - start
        with EpisodeStore.open(work / "demos") as a, EpisodeStore.open(work / "back") as b:
            stored, back = list(a), list(b)
        size = sum(f.stat().st_size for f in (work / "lr").rglob("*") if f.is_file())
        store_size = sum(f.stat().st_size for f in (work / "demos").rglob("*") if f.is_file())
        compared = compare(stored, loaded, back)
        middle = len(stored[0]) // 2
        side_by_side(
            stored[0].observations["front"][middle],
            loaded["observation.images.front"][middle],
            HERE / "results/lerobot_compat.png",
        )
    frames = exported["frames"]
    write_result(
        "lerobot_compat",
        {
            "command": f".venv/bin/python bench/lerobot_compat.py --episodes {episodes}",
            "lerobot": LEROBOT,
            "lerobot_video_backend": str(loaded["video_backend"]),
            "env_id": ENV_ID,
            "episodes": exported["episodes"],
            "frames": frames,
            "lerobot_len": len(loaded["index"]),
            "lerobot_features": sorted(k for k in loaded if k not in ("video_backend",)),
            "lerobot_task": str(loaded["task"][0]),
            **compared,
            "export_frames_per_s": round(frames / export_s, 1),
            "import_frames_per_s": round(frames / import_s, 1),
            "export_bytes": size,
            "zarr_store_bytes": store_size,
            "png": "bench/results/lerobot_compat.png (stored | LeRobot's decode | |diff| x8)",
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--write-fixture", action="store_true")
    args = parser.parse_args()
    if args.write_fixture:
        fixtures = Path(__file__).parents[1] / "tests/fixtures"
        lerobot_side("fixture", fixtures / "lerobot_v30")
        lerobot_side("fixture-images", fixtures / "lerobot_v30_images")
    else:
        run(args.episodes)
