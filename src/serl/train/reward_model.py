"""Learned rewards: load success-labelled frames (recorded by `serl.train.recording`), train and
evaluate a reward classifier (report JSON + calibration PNG), and load a saved one as a reward
callable."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from serl.agents import classifier as clf
from serl.data import EpisodeStore
from serl.errors import ConfigError
from serl.train.envs import make_env
from serl.train.run_files import RewardConfig

CHUNK = 4  # frames per frozen-backbone call when featurizing labelled frames (one compiled shape)


# -- labelled data --------------------------------------------------------------------------


@dataclasses.dataclass
class LabelledFrames:
    """Frames of labelled episodes: {camera: [N, ...]}, labels [N] (0/1), episode [N] ids."""

    frames: dict[str, np.ndarray]
    labels: np.ndarray
    episode: np.ndarray
    seeds: np.ndarray  # the env seed of each frame's episode

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> LabelledFrames:
        """The frames where `mask` holds."""
        return LabelledFrames(
            {k: v[mask] for k, v in self.frames.items()},
            self.labels[mask],
            self.episode[mask],
            self.seeds[mask],
        )


def load_labelled(paths: Iterable[str | Path], keys: Sequence[str] | None = None) -> LabelledFrames:
    """Every labelled frame of the given stores (camera keys only unless `keys` says which)."""
    frames: dict[str, list[np.ndarray]] = {}
    labels, episode, seeds = [], [], []
    ep_id = 0
    for path in paths:
        with EpisodeStore.open(path) as store:
            use = tuple(keys) if keys is not None else store.schema.image_keys
            if not use:
                raise ConfigError(f"{path}: no camera observations to classify")
            for i, (ep, attrs) in enumerate(store.items()):
                if "labels" not in attrs:
                    raise ConfigError(f"{path}: episode {i} has no labels (record-transitions)")
                lab = np.asarray(attrs["labels"], np.int64)
                if len(lab) != len(ep) + 1:
                    raise ConfigError(
                        f"{path}: episode {i} has {len(lab)} labels for {len(ep) + 1} frames"
                    )
                for k in use:
                    frames.setdefault(k, []).append(ep.observations[k])
                labels.append(lab)
                episode.append(np.full(len(lab), ep_id))
                seeds.append(np.full(len(lab), int(attrs.get("seed", -1))))
                ep_id += 1
    if not labels:
        raise ConfigError("no labelled episodes found")
    return LabelledFrames(
        {k: np.concatenate(v) for k, v in frames.items()},
        np.concatenate(labels),
        np.concatenate(episode),
        np.concatenate(seeds),
    )


def split_episodes(
    data: LabelledFrames, fraction: float, rng: np.random.Generator
) -> tuple[LabelledFrames, LabelledFrames]:
    """(rest, held out): about `fraction` of the *episodes* (never single frames) held out."""
    ids = np.unique(data.episode)
    n_out = max(1, round(fraction * len(ids))) if fraction > 0 else 0
    if n_out >= len(ids):
        raise ConfigError(f"cannot hold out {n_out} of {len(ids)} episodes")
    out_ids = rng.choice(ids, size=n_out, replace=False)
    held = np.isin(data.episode, out_ids)
    return data.subset(~held), data.subset(held)


def balanced_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, half positives and half negatives (class balancing by sampling)."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if not len(pos) or not len(neg):
        raise ConfigError(f"need both classes to train: {len(pos)} positive, {len(neg)} negative")
    half = n // 2
    return np.concatenate([rng.choice(pos, half), rng.choice(neg, n - half)])


# -- evaluation -----------------------------------------------------------------------------


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall and counts at a threshold."""
    pred, truth = probs > threshold, labels == 1
    tp, fp = int(np.sum(pred & truth)), int(np.sum(pred & ~truth))
    fn, tn = int(np.sum(~pred & truth)), int(np.sum(~pred & ~truth))
    tpr = tp / max(tp + fn, 1)
    tnr = tn / max(tn + fp, 1)
    return {
        "accuracy": (tp + tn) / max(len(labels), 1),
        "balanced_accuracy": (tpr + tnr) / 2,
        "precision": tp / max(tp + fp, 1),
        "recall": tpr,
        "true_positives": tp,
        "false_positives": fp,
        "true_negatives": tn,
        "false_negatives": fn,
        "positives": int(np.sum(truth)),
        "negatives": int(np.sum(~truth)),
    }


def choose_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The threshold in (0, 1) with the best balanced accuracy (ties: the one nearest 0.5)."""
    grid = np.round(np.linspace(0.05, 0.95, 91), 4)
    scores = [binary_metrics(probs, labels, t)["balanced_accuracy"] for t in grid]
    best = np.flatnonzero(np.isclose(scores, np.max(scores)))
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability table (mean predicted vs observed success per probability bin) and ECE."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        conf, freq = float(probs[m].mean()), float(labels[m].mean())
        rows.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": int(m.sum()),
                "mean_prob": conf,
                "frac_positive": freq,
            }
        )
        ece += m.mean() * abs(conf - freq)
    return {"bins": rows, "ece": float(ece)}


def plot_calibration(
    calib: Mapping[str, Any], probs: np.ndarray, labels: np.ndarray, threshold: float, out: Path
) -> Path:
    """Reliability diagram and probability histograms per class, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    rows = calib["bins"]
    ax1.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax1.plot(
        [r["mean_prob"] for r in rows],
        [r["frac_positive"] for r in rows],
        "o-",
        label=f"classifier (ECE {calib['ece']:.3f})",
    )
    ax1.set(
        xlabel="predicted p(success)",
        ylabel="fraction successful",
        xlim=(0, 1),
        ylim=(0, 1),
        title="calibration (held-out frames)",
    )
    ax1.legend(loc="upper left")
    bins = np.linspace(0, 1, 21)
    ax2.hist(probs[labels == 0], bins, alpha=0.6, label="failure frames")
    ax2.hist(probs[labels == 1], bins, alpha=0.6, label="success frames")
    ax2.axvline(threshold, color="k", ls=":", label=f"threshold {threshold:.2f}")
    ax2.set(xlabel="predicted p(success)", ylabel="frames", yscale="log", title="held-out scores")
    ax2.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# -- training -------------------------------------------------------------------------------


def param_count(state: clf.ClassifierState) -> int:
    """Number of parameters (trainable and frozen)."""
    leaves = jax.tree.leaves({"t": state.params.params, "f": state.frozen})
    return int(sum(np.size(v) for v in leaves))


def classifier_config(
    backbone: str,
    pretrained: str | Path | None,
    image_keys: tuple[str, ...] | None,
    image_size: int | None,
    batch_size: int,
) -> clf.ClassifierConfig:
    """The classifier `serl train-classifier` trains: the small encoder trained here, or a
    frozen pretrained backbone (mobilenet_v2: drq_cached's, its features cached per frame)."""
    encoder = clf.ClassifierConfig().encoder
    weights = str(pretrained) if pretrained else None
    if backbone == "mobilenet_v2":
        encoder = dataclasses.replace(
            encoder,
            backbone=backbone,
            freeze_backbone=True,
            feature_stride=16,
            cache_features=True,
            pretrained_path=weights or "imagenet",
        )
    elif backbone != encoder.backbone or pretrained is not None:
        encoder = dataclasses.replace(
            encoder, backbone=backbone, freeze_backbone=weights is not None, pretrained_path=weights
        )
    return clf.ClassifierConfig(
        encoder=encoder, image_keys=image_keys, image_size=image_size, batch_size=batch_size
    )


def train_classifier(
    stores: Sequence[str | Path],
    out: Path,
    eval_stores: Sequence[str | Path] = (),
    config: clf.ClassifierConfig | None = None,
    steps: int = 2_000,
    holdout_fraction: float = 0.2,
    val_fraction: float = 0.15,
    seed: int = 0,
    log_every: int = 100,
) -> dict[str, Any]:
    """Train a reward classifier on labelled stores; save it with its report in `out`.

    Held out: the frames of `eval_stores` when given (record them from other seeds), else
    `holdout_fraction` of the training stores' episodes. A further `val_fraction` of the
    training episodes picks the threshold (best balanced accuracy), so the held-out figures
    are not tuned on. Writes out/classifier.json + out/state (the checkpoint),
    out/report.json and out/calibration.png; returns the report.

    With a cached-feature encoder (`config.encoder.cache_features`) every labelled frame goes
    through the frozen backbone once, before training, and the Adam steps and the evaluation
    run the head on those stored features; the saved classifier still reads raw frames.
    """
    config = config or clf.ClassifierConfig()
    rng = np.random.default_rng(seed)
    start = time.monotonic()
    data = load_labelled(stores, config.image_keys)
    if eval_stores:
        test = load_labelled(eval_stores, tuple(data.frames))
        shared = set(np.unique(data.seeds)) & set(np.unique(test.seeds)) - {-1}
        if shared:
            raise ConfigError(f"held-out stores reuse training seeds {sorted(shared)[:5]}")
    else:
        data, test = split_episodes(data, holdout_fraction, rng)
    fit, val = split_episodes(data, val_fraction, rng)
    example = {k: v[0] for k, v in fit.frames.items()}
    state = clf.create(config, example, seed)
    # the head's inputs: pixels, or each frame's frozen-backbone features, computed once here
    fit_x, val_x, test_x = (
        (clf.features(state, d.frames, CHUNK) for d in (fit, val, test))
        if config.encoder.cache_features
        else (fit.frames, val.frames, test.frames)
    )

    history = []
    for step in range(1, steps + 1):
        idx = balanced_indices(fit.labels, config.batch_size, rng)
        batch = {
            "observations": {k: v[idx] for k, v in fit_x.items()},
            "labels": fit.labels[idx].astype(np.float32),
        }
        state, metrics = clf.update(state, batch)
        if step % log_every == 0 or step == steps:
            m = {k: float(v) for k, v in metrics.items()}
            history.append({"step": step, **m})
    train_s = time.monotonic() - start

    val_probs = clf.predict(state, val_x)
    threshold = choose_threshold(val_probs, val.labels)
    test_probs = clf.predict(state, test_x)
    calib = calibration(test_probs, test.labels)
    report = {
        "held_out": binary_metrics(test_probs, test.labels, threshold),
        "held_out_at_0.5": binary_metrics(test_probs, test.labels, 0.5),
        "validation": binary_metrics(val_probs, val.labels, threshold),
        "threshold": threshold,
        "calibration": calib,
        "data": {
            "stores": [str(s) for s in stores],
            "eval_stores": [str(s) for s in eval_stores],
            "fit_frames": len(fit),
            "fit_episodes": len(np.unique(fit.episode)),
            "val_frames": len(val),
            "held_out_frames": len(test),
            "held_out_episodes": len(np.unique(test.episode)),
            "held_out_seeds": sorted(int(s) for s in np.unique(test.seeds)),
            "train_seeds": sorted(int(s) for s in np.unique(data.seeds)),
            "cameras": list(state.spec.keys),
        },
        "steps": steps,
        "seed": seed,
        "train_s": round(train_s, 1),
        "parameters": param_count(state),
        "history": history,
        "config": dataclasses.asdict(config),
        "version": clf.VERSION,
    }
    out = Path(out)
    clf.save(state, out, threshold, {k: report[k] for k in ("held_out", "threshold", "data")})
    plot_calibration(calib, test_probs, test.labels, threshold, out / "calibration.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# -- inference ------------------------------------------------------------------------------


class RewardClassifier:
    """A saved classifier as a plain callable `obs -> p(success)` (what wrappers take)."""

    def __init__(self, path: str | Path) -> None:
        self.state, meta = clf.restore(path)
        self.threshold = float(meta["threshold"])
        self.path = Path(path)

    def __call__(self, obs: Mapping[str, Any]) -> float:
        """p(success) of one observation (only the classifier's cameras are read)."""
        return clf.probability(self.state, {k: obs[k] for k in self.state.spec.keys})


def learned_reward_env(
    env: Any,
    classifier: str | Path | RewardClassifier,
    threshold: float | None = None,
    **kwargs: Any,
) -> Any:
    """`env` under a LearnedReward wrapper driven by a saved classifier (its threshold by
    default)."""
    from serl.wrappers import LearnedReward

    fn = classifier if isinstance(classifier, RewardClassifier) else RewardClassifier(classifier)
    return LearnedReward(
        env, fn, threshold=fn.threshold if threshold is None else threshold, **kwargs
    )


# -- a run's learned reward -----------------------------------------------------------------


def make_reward_env(env_id: str, reward: RewardConfig, **kwargs: Any) -> Any:
    """`make_env(env_id)` with the run's reward: under LearnedReward when it has a classifier."""
    env = make_env(env_id, **{**reward.env_kwargs, **kwargs})
    if reward.classifier is None:
        return env
    return learned_reward_env(
        env,
        reward.classifier,
        threshold=reward.threshold,
        gripper_key=reward.gripper_key,
        gripper_threshold=reward.gripper_threshold,
    )
