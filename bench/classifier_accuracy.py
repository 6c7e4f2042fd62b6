"""Reward-classifier accuracy on held-out episodes of the vision pick-cube task.

Records success-labelled episodes (labels from `info["success"]`) from training seeds and,
separately, from held-out seeds never used in training, trains the classifier on the first
and reports accuracy, precision and recall on the second. Writes
bench/results/classifier_accuracy.json (and the classifier with its report and calibration
plot under --work).

    .venv/bin/python bench/classifier_accuracy.py            # the CPU configuration
    .venv/bin/python bench/classifier_accuracy.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import write_result

from serl.agents.classifier import ClassifierConfig
from serl.train.recording import record_transitions
from serl.train.reward_model import train_classifier

ENV_ID = "serl/PandaPickCubeVision-v0"
HELD_OUT_SEED = 100_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-episodes", type=int, default=90)
    p.add_argument("--eval-episodes", type=int, default=30)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--work", type=Path, default=Path("runs/bench_classifier"))
    p.add_argument("--quick", action="store_true", help="a few episodes and steps: smoke test")
    args = p.parse_args()
    if args.quick:
        args.train_episodes, args.eval_episodes, args.steps = 6, 3, 50
    if args.work.exists():
        shutil.rmtree(args.work)
    start = time.monotonic()
    train = record_transitions(ENV_ID, args.work / "train", args.train_episodes, seed=0)
    held = record_transitions(
        ENV_ID, args.work / "held_out", args.eval_episodes, seed=HELD_OUT_SEED
    )
    record_s = time.monotonic() - start
    config = ClassifierConfig(image_size=args.image_size, batch_size=args.batch_size)
    report = train_classifier(
        [train["path"]],
        args.work / "classifier",
        eval_stores=[held["path"]],
        config=config,
        steps=args.steps,
    )
    held_out = report["held_out"]
    write_result(
        "classifier_accuracy_quick" if args.quick else "classifier_accuracy",
        {
            "command": " ".join(["bench/classifier_accuracy.py", *sys.argv[1:]]),
            "env_id": ENV_ID,
            "labels": "info['success'] (cube lifted >= 0.1 m), every frame",
            "train_episodes": args.train_episodes,
            "train_seeds": f"0..{args.train_episodes - 1}",
            "held_out_episodes": args.eval_episodes,
            "held_out_seeds": f"{HELD_OUT_SEED}..{HELD_OUT_SEED + args.eval_episodes - 1}",
            "train_frames": train["frames"],
            "train_positives": train["positives"],
            "held_out_frames": held["frames"],
            "held_out_positives": held["positives"],
            "cameras": report["data"]["cameras"],
            "image_size": args.image_size,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "threshold": report["threshold"],
            "held_out_accuracy": held_out["accuracy"],
            "held_out_balanced_accuracy": held_out["balanced_accuracy"],
            "held_out_precision": held_out["precision"],
            "held_out_recall": held_out["recall"],
            "held_out": held_out,
            "ece": report["calibration"]["ece"],
            "record_s": round(record_s, 1),
            "train_s": report["train_s"],
            "classifier_dir": str(args.work / "classifier"),
        },
    )


if __name__ == "__main__":
    main()
