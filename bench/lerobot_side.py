"""LeRobot's side of bench/lerobot_compat.py: runs in a scratch environment with `lerobot`
installed (never serl's), so what it writes and loads is LeRobot's own code's doing.

    python lerobot_side.py fixture DIR   # a small dataset written by LeRobot + DIR.npz
    python lerobot_side.py fixture-images DIR  # the same with PNG frames in the table
    python lerobot_side.py load DIR OUT  # load DIR with LeRobotDataset; every frame to OUT.npz

The .npz holds each feature of every frame as LeRobotDataset returns it (camera frames as
uint8 HxWxC, rounded from its float CHW).
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

CAMERAS = ("front", "wrist")
SIZE = 64


def fixture_frame(camera: str, episode: int, t: int) -> np.ndarray:
    """A smooth synthetic camera frame (codecs keep gradients well), different per step."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    v = episode * 100 + t
    if camera == "front":
        channels = [(xx * 4 + v) % 256, (yy * 4) % 256, np.full_like(xx, 40 * t)]
    else:
        channels = [np.full_like(xx, 200 - 30 * t), (xx + yy) * 2 % 256, (yy * 4 + v) % 256]
    return np.stack(channels, -1).astype(np.uint8)


def write_fixture(root: Path, dtype: str = "video") -> None:
    """Two episodes (5 and 4 frames), two cameras, a state, an action, reward, done and one
    complementary_info key, written by LeRobot's LeRobotDataset.create/add_frame/save_episode;
    dtype "image": camera frames as PNGs in the table instead of videos."""
    shutil.rmtree(root, ignore_errors=True)
    video = {"dtype": dtype, "shape": (SIZE, SIZE, 3), "names": ["height", "width", "channels"]}
    features = {
        "observation.state": {"dtype": "float32", "shape": (4,), "names": ["x", "y", "z", "grip"]},
        **{f"observation.images.{c}": video for c in CAMERAS},
        "action": {"dtype": "float32", "shape": (4,), "names": ["dx", "dy", "dz", "grip"]},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "complementary_info.discrete_penalty": {"dtype": "float32", "shape": (1,), "names": None},
    }
    dataset = LeRobotDataset.create(
        "serl/fixture", fps=10, root=root, features=features, use_videos=dtype == "video"
    )
    for episode, length in enumerate((5, 4)):
        for t in range(length):
            frames = {c: fixture_frame(c, episode, t) for c in CAMERAS}
            dataset.add_frame(
                {
                    "observation.state": np.array([t, -t, 0.5 * t, episode], np.float32),
                    **{f"observation.images.{c}": frames[c] for c in CAMERAS},
                    "action": np.array([0.1 * t, -0.1 * t, 0.0, 1.0 - episode], np.float32),
                    "next.reward": np.array([float(t == length - 1)], np.float32),
                    "next.done": np.array([t == length - 1]),
                    "complementary_info.discrete_penalty": np.array([-0.5 * (t % 2)], np.float32),
                    "task": "pick the cube",
                }
            )
        dataset.save_episode()
    dataset.finalize()
    np.savez_compressed(root.with_suffix(".npz"), **loaded(root))


def loaded(root: Path) -> dict[str, np.ndarray]:
    """Every frame of the dataset at `root` as LeRobotDataset returns it."""
    dataset = LeRobotDataset("local/dataset", root=root)
    items = [dataset[i] for i in range(len(dataset))]
    arrays = {}
    for key, value in items[0].items():
        if key == "task" or isinstance(value, str):
            continue
        stacked = np.stack([np.asarray(item[key]) for item in items])
        if key in dataset.meta.camera_keys:  # float CHW in [0, 1] -> uint8 HWC
            stacked = np.round(stacked.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        arrays[key] = stacked
    arrays["task"] = np.array([item["task"] for item in items])
    arrays["video_backend"] = np.array(dataset.video_backend)
    return arrays


if __name__ == "__main__":
    if sys.argv[1].startswith("fixture"):
        write_fixture(Path(sys.argv[2]), "image" if sys.argv[1] == "fixture-images" else "video")
    else:
        np.savez_compressed(sys.argv[3], **loaded(Path(sys.argv[2])))
