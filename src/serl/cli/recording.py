"""`serl record-demos`, `serl demos`, `serl record-transitions` and `serl train-classifier`:
the data a run learns from."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import tyro

from serl.data.lerobot import VideoSettings
from serl.dataclass_json import JsonObject
from serl.errors import ConfigError


def record_demos(
    env_id: tyro.conf.Positional[str],
    out: Path,
    expert: Literal["scripted", "spacemouse", "gamepad", "keyboard"] = "scripted",
    episodes: int = 20,
    seed: int = 0,
    keep_failures: bool = False,
    noise: float = 0.05,
    action_scale: float = 0.3,
    viewer: bool = True,
    env_kwargs: JsonObject | None = None,
) -> None:
    """Record demonstrations into an episode store (successful episodes only, by default).

    With a teleop device the sim runs in real time in a MuJoCo viewer window.

    Args:
        env_id: The env to demonstrate in.
        out: The episode store to write (it must not exist).
        expert: Who acts: the env's scripted expert, or a person at a teleop device.
        episodes: Episodes to keep.
        seed: The first episode's reset seed (the next ones follow it).
        keep_failures: Keep failed episodes too.
        noise: Std of the Gaussian noise on the scripted expert's xyz actions.
        action_scale: The action a teleop device's full deflection gives.
        viewer: Show the MuJoCo viewer while a person drives (--no-viewer: blind).
        env_kwargs: A JSON object of env arguments: use the training run's.
    """
    from serl.train.recording import record_demos as record

    path = record(
        env_id,
        episodes,
        out,
        expert=expert,
        seed=seed,
        successful_only=not keep_failures,
        noise=noise,
        action_scale=action_scale,
        viewer=viewer and expert != "scripted",
        env_kwargs=env_kwargs,
    )
    from serl.data import EpisodeStore

    with EpisodeStore.open(path) as store:
        print(f"wrote {len(store)} episodes to {path}")


def demos(
    command: tyro.conf.Positional[Literal["info", "video", "export", "import"]],
    path: tyro.conf.Positional[Path],
    out: Path | None = None,
    env_id: str | None = None,
    episodes: int | None = None,
    format: Literal["lerobot"] = "lerobot",
    fps: int = 10,
    task: str | None = None,
    crf: int = 30,
    env_kwargs: JsonObject | None = None,
) -> None:
    """`demos info PATH`: summarise an episode store as JSON; `demos video PATH --out X.mp4`:
    replay its episodes to video (camera frames as stored, else re-simulated from seeds);
    `demos export PATH --format lerobot --out DIR`: an episode store (demos, or a run's
    RUN_DIR/replay) as a LeRobotDataset v3.0; `demos import DIR --format lerobot --out PATH`:
    a LeRobotDataset as an episode store (--env-id: checked against that env's observations).

    Args:
        command: info, video, export or import.
        path: The episode store (import: the LeRobotDataset directory).
        out: What video, export and import write (video: demos.mp4).
        env_id: video: the env to re-simulate in (default: each episode's); import: the env
            whose observations and actions the dataset must have.
        episodes: Replay only the first N episodes.
        format: The other side of export and import: LeRobotDataset (v3.0).
        fps: export: the dataset's frames per second (the env's control rate).
        task: export: the dataset's task text (default: the episodes' env id).
        crf: export: the camera videos' AV1 quality (lower: closer to the frames, larger).
        env_kwargs: import: a JSON object of the env's arguments (e.g. its image size).
    """
    import json

    from serl.train import demos as store_tools

    if command == "info":
        result = store_tools.summarize_demos(path)
    elif command == "video":
        out = out or Path("demos.mp4")
        result = store_tools.replay_video(path, out, env_id=env_id, episodes=episodes)
    elif out is None:
        raise ConfigError(f"demos {command} needs --out")
    elif command == "export":
        video = VideoSettings(crf=crf)
        result = store_tools.export_lerobot(path, out, fps=fps, task=task, video=video)
    else:
        result = store_tools.import_lerobot(path, out, env_id=env_id, env_kwargs=env_kwargs)
    print(json.dumps(result, indent=2 if command == "info" else None))


def record_transitions(
    env_id: tyro.conf.Positional[str],
    out: Path,
    episodes: int = 60,
    device: Literal["sim", "spacemouse", "gamepad", "keyboard"] = "sim",
    seed: int = 0,
    noise: float = 0.1,
    env_kwargs: JsonObject | None = None,
    action_scale: float = 0.3,
) -> None:
    """Record success-labelled frames into an episode store (labels in each episode's attrs).

    --device sim labels every frame with the sim's info["success"] (scripted expert, expert
    then random, and random episodes in turn); with a teleop device a person drives and
    labels: the success event (Enter / A / ...) marks the current and later frames successful,
    the failure event (Backspace / B / ...) marks them failed again.

    Args:
        env_id: The env to record in.
        out: The episode store to write.
        episodes: Episodes to record.
        device: sim (labels from the sim's success flag) or a teleop device (a person labels).
        seed: The first episode's reset seed.
        noise: Std of the Gaussian noise on the scripted expert's xyz actions (sim).
        env_kwargs: A JSON object of env arguments (default for pick-cube: its dense variant).
        action_scale: The action a teleop device's full deflection gives.
    """
    import json

    from serl.train.recording import record_transitions as record

    summary = record(
        env_id,
        out,
        episodes,
        device=None if device == "sim" else device,
        seed=seed,
        noise=noise,
        env_kwargs=env_kwargs,
        action_scale=action_scale,
    )
    print(json.dumps(summary))


def train_classifier(
    stores: tyro.conf.Positional[tuple[Path, ...]],
    out: Path = Path("classifier"),
    eval_store: tuple[Path, ...] = (),
    steps: int = 1_500,
    batch_size: int = 64,
    image_size: int | None = 64,
    backbone: Literal["small", "resnet10", "mobilenet_v2"] = "small",
    pretrained: Path | None = None,
    cameras: tuple[str, ...] | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> None:
    """Train a success classifier on labelled stores (from record-transitions).

    Held out: --eval-store episodes (record them from other seeds), else --holdout-fraction of
    the episodes. Writes OUT/classifier.json + OUT/state (the checkpoint), OUT/report.json
    (accuracy, precision/recall, threshold, calibration) and OUT/calibration.png.

    Args:
        stores: Labelled episode stores to train on.
        out: The directory to write the classifier into.
        eval_store: Labelled stores to hold out for the report (else --holdout-fraction).
        steps: Gradient steps.
        batch_size: Frames per step, half of them successes.
        image_size: Resize frames to this many pixels square (None: as stored); mobilenet_v2
            reads the resized frames (None: 128x128 frames give 8x8 feature maps).
        backbone: The image encoder: small (trained here), resnet10, or mobilenet_v2 (frozen
            ImageNet MobileNetV2 at stride 16 whose features are computed once per frame;
            only the head trains).
        pretrained: Backbone weights to load and freeze (mobilenet_v2: default ImageNet).
        cameras: The camera keys to classify (default: all the stores' cameras).
        holdout_fraction: Share of the episodes held out when no --eval-store is given.
        seed: Seeds the split, the initialisation and the batches.
    """
    import json

    from serl.train.reward_model import classifier_config
    from serl.train.reward_model import train_classifier as train_clf

    config = classifier_config(backbone, pretrained, cameras, image_size, batch_size)
    report = train_clf(
        list(stores),
        out,
        eval_stores=list(eval_store),
        config=config,
        steps=steps,
        holdout_fraction=holdout_fraction,
        seed=seed,
    )
    print(
        json.dumps(
            {
                "out": str(out),
                "threshold": report["threshold"],
                **{
                    k: report["held_out"][k]
                    for k in ("accuracy", "balanced_accuracy", "precision", "recall")
                },
            }
        )
    )
