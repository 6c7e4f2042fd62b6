"""Record demonstrations (scripted expert or a teleop device) into an episode store; summarise
a store; replay its episodes to video."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from serl.data import Episode, EpisodeStore
from serl.envs import make_expert
from serl.train.config import TrainConfig
from serl.train.envs import env_schema, make_env
from serl.wrappers import control_period

if TYPE_CHECKING:  # serl.robot pulls in the robot client: only device recording needs it
    from serl.robot.teleop import TeleopDevice

log = logging.getLogger(__name__)
EXPERTS = ("scripted", "spacemouse", "gamepad", "keyboard")


def build_episode(
    frames: list[Any],
    actions: list[Any],
    rewards: list[float],
    terminated: list[bool],
    truncated: list[bool],
) -> Episode:
    """An Episode from per-step lists (frames has one more entry than the steps)."""
    return Episode(
        observations={k: np.stack([f[k] for f in frames]) for k in frames[0]},
        actions=np.stack(actions).astype(np.float32),
        rewards=np.asarray(rewards, np.float32),
        terminated=np.asarray(terminated, bool),
        truncated=np.asarray(truncated, bool),
    )


def observation_norm(store_path: str | Path, min_std: float = 1e-2) -> tuple:
    """Per-key mean and std (floored at `min_std`) of a demo store's non-image observations:
    the agent's input standardisation, so a few millimetres of gripper-to-cube distance are a
    visible change to the networks rather than a rounding error on absolute positions."""
    with EpisodeStore.open(store_path) as store:
        episodes = list(store)
        return episodes_norm(episodes, store.schema.image_keys, min_std)


def episodes_norm(episodes: list[Episode], image_keys: Any, min_std: float = 1e-2) -> tuple:
    """`observation_norm` of episodes in memory (keys in `image_keys` are left out)."""
    parts: dict[str, list[np.ndarray]] = {}
    for episode in episodes:
        for key, value in episode.observations.items():
            if key not in image_keys:
                parts.setdefault(key, []).append(np.reshape(value, (len(value), -1)))
    norm = []
    for key in sorted(parts):
        x = np.concatenate(parts[key]).astype(np.float64)
        std = np.maximum(x.std(axis=0), min_std)
        norm.append((key, tuple(map(float, x.mean(axis=0))), tuple(map(float, std))))
    return tuple(norm)


def tile_obs_norm(norm: tuple, obs_horizon: int) -> tuple:
    """Per-frame standardisation constants repeated for every frame of a stack."""
    if obs_horizon == 1:
        return norm
    # every slot of a stack sees the same states, so the per-frame statistics apply to each
    return tuple((key, mean * obs_horizon, std * obs_horizon) for key, mean, std in norm)


def with_observation_norm(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the demos' observation statistics in its agent overrides, when it asks for
    them, has demos, and has none yet (a resumed run keeps the ones it started with); tiled
    for stacked observations (demo stores hold single frames)."""
    if not (cfg.normalize_observations and cfg.demos) or "obs_norm" in cfg.agent_overrides:
        return cfg
    norm = tile_obs_norm(observation_norm(cfg.demos), cfg.obs_horizon)
    return dataclasses.replace(cfg, agent_overrides={**cfg.agent_overrides, "obs_norm": norm})


def is_success(episode: Episode, attrs: dict[str, Any]) -> bool:
    """A stored episode's recorded success (else: whether it ended by termination)."""
    return bool(attrs.get("success", episode.terminated[-1]))


def rollout_episode(env: Any, policy: Any, seed: int) -> tuple[Episode, bool]:
    """Run one episode with `policy(obs) -> action`; return it and whether it succeeded."""
    obs, info = env.reset(seed=seed)
    frames, actions, rewards, terminated, truncated = [obs], [], [], [], []
    done = False
    while not done:
        action = np.asarray(policy(obs), dtype=np.float32)
        obs, reward, term, trunc, info = env.step(action)
        frames.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        done = term or trunc
    return build_episode(frames, actions, rewards, terminated, truncated), bool(info.get("success"))


def teleop_episode(
    env: Any,
    device: TeleopDevice[Any],
    seed: int,
    scale: float = 0.3,
    realtime: bool = True,
    viewer: Any = None,
) -> tuple[Episode | None, bool, str | None]:
    """One episode driven by a person at `device`: (episode or None, success, label).

    The person's events end it: success (the last step becomes terminal) and failure keep
    the episode; re-record and stop discard it (label "rerecord" / "stop"). An unplugged
    device raises DeviceDisconnected: the partial episode is dropped, nothing is written.
    """
    from serl.robot.teleop import Event, command_to_action

    obs, info = env.reset(seed=seed)
    device.reset()
    dim = int(np.prod(env.action_space.shape))
    dt = control_period(env)
    frames, actions, rewards, terminated, truncated = [obs], [], [], [], []
    label: str | None = None
    success = False
    tick = time.monotonic()
    while True:
        command = device.read()
        if Event.STOP in command.events or Event.RERECORD in command.events:
            return None, False, str(Event.STOP if Event.STOP in command.events else Event.RERECORD)
        if actions and Event.SUCCESS in command.events:
            terminated[-1], success, label = True, True, str(Event.SUCCESS)
            break
        if actions and Event.FAILURE in command.events:
            truncated[-1], success, label = True, False, str(Event.FAILURE)
            break
        action = command_to_action(command, dim, scale)
        obs, reward, term, trunc, info = env.step(action)
        frames.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        if viewer is not None:
            viewer.sync()
        if term or trunc:
            success = bool(info.get("success", False))
            break
        if realtime:  # a person needs the sim at the speed of the real robot
            tick += dt
            time.sleep(max(0.0, tick - time.monotonic()))
    return build_episode(frames, actions, rewards, terminated, truncated), success, label


def record_demos(
    env_id: str,
    episodes: int,
    out: Path,
    expert: str = "scripted",
    seed: int = 0,
    successful_only: bool = True,
    noise: float = 0.05,
    max_attempts_factor: int = 3,
    device: TeleopDevice[Any] | None = None,
    action_scale: float = 0.3,
    realtime: bool | None = None,
    viewer: bool = False,
    env_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Record `episodes` demos (successful ones only, by default) into a new episode store.

    `expert` is "scripted" or a teleop device name; `device` passes an open device instead
    (e.g. one reading a scripted source). With a device, episode i starts from seed + i
    (a re-recorded one from the same seed), the sim runs in real time unless `realtime` is
    False, and a device that disappears ends the recording with the episodes kept so far.
    `env_kwargs` make the env (use the training run's, or the observation schemas differ).
    Each episode is stored with attrs {"env_id", "expert", "seed", "success"}.
    """
    if expert not in EXPERTS:
        raise ValueError(f"expert must be one of {EXPERTS}, got {expert!r}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id, **dict(env_kwargs or {}))
    store = EpisodeStore.create(out, env_schema(env))
    try:
        with store:
            if expert == "scripted":
                policy = make_expert(env, noise=noise, seed=seed)
                _record_scripted(
                    env, policy, store, episodes, seed, successful_only, max_attempts_factor, env_id
                )
            else:
                _record_teleop(
                    env,
                    device,
                    expert,
                    store,
                    episodes,
                    seed,
                    successful_only,
                    action_scale,
                    realtime,
                    viewer,
                    env_id,
                )
    finally:
        env.close()
    return out


def _record_scripted(
    env: Any,
    policy: Any,
    store: EpisodeStore,
    episodes: int,
    seed: int,
    successful_only: bool,
    max_attempts_factor: int,
    env_id: str,
) -> None:
    kept = attempts = 0
    with tqdm(total=episodes, desc=f"demos {env_id}", unit="ep") as bar:
        while kept < episodes:
            if attempts >= max_attempts_factor * episodes:
                raise RuntimeError(
                    f"only {kept} of {attempts} expert episodes succeeded; kept {kept} in "
                    f"{store.path}"
                )
            policy.reset()
            episode, success = rollout_episode(env, policy, seed=seed + attempts)
            attempts += 1
            if success or not successful_only:
                store.append(
                    episode,
                    {
                        "env_id": env_id,
                        "expert": "scripted",
                        "seed": seed + attempts - 1,
                        "success": success,
                    },
                )
                kept += 1
                bar.update(1)


def _record_teleop(
    env: Any,
    device: TeleopDevice[Any] | None,
    expert: str,
    store: EpisodeStore,
    episodes: int,
    seed: int,
    successful_only: bool,
    scale: float,
    realtime: bool | None,
    viewer: bool,
    env_id: str,
) -> None:
    from serl.robot.teleop import DeviceDisconnected, Event, make_device

    own = device is None
    device = make_device(expert) if device is None else device
    realtime = own if realtime is None else realtime
    view = _open_viewer(env) if viewer else None
    kept, index = 0, 0
    print(f"recording {episodes} episodes with the {expert}: {_HELP.get(expert, '')}")
    try:
        while kept < episodes:
            try:
                episode, success, label = teleop_episode(
                    env, device, seed + index, scale, realtime, view
                )
            except DeviceDisconnected as e:
                raise DeviceDisconnected(
                    f"{e}; the episode in progress was discarded, {kept} kept in {store.path}"
                ) from e
            if label == Event.STOP:
                print(f"stopped: {kept} episodes kept in {store.path}")
                return
            if label == Event.RERECORD:
                print(f"episode {index}: discarded, recording it again")
                continue
            index += 1
            if episode is not None and (success or not successful_only):
                store.append(
                    episode,
                    {
                        "env_id": env_id,
                        "expert": expert,
                        "seed": seed + index - 1,
                        "success": success,
                    },
                )
                kept += 1
            print(
                f"episode {index}: {'success' if success else 'failure'} "
                f"({len(episode) if episode else 0} steps), {kept}/{episodes} kept"
            )
    finally:
        if view is not None:
            view.close()
        if own:
            device.close()


_HELP = {
    "spacemouse": "move the puck; left button closes, right opens the gripper",
    "gamepad": "sticks move, bumpers grip; A success, B failure, X re-record, Start stop",
    "keyboard": "w/s a/d up/down move, c/o grip; Enter success, Backspace failure, "
    "n re-record, Esc stop",
}


def _open_viewer(env: Any) -> Any:
    """A passive MuJoCo viewer window on the sim (the person needs to see what they drive)."""
    base = env.unwrapped
    if not hasattr(base, "model"):
        raise RuntimeError(f"{type(base).__name__} has no MuJoCo model to view; use --no-viewer")
    try:
        import mujoco.viewer

        return mujoco.viewer.launch_passive(base.model, base.data)
    except Exception as e:  # no display, no GLFW
        raise RuntimeError(f"cannot open the MuJoCo viewer ({e}); use --no-viewer") from e


def summarize_demos(path: Path) -> dict[str, Any]:
    """What a demo store holds: schema, episode count and lengths, returns, success, sources."""
    with EpisodeStore.open(path) as store:
        lengths, returns, successes, experts, envs = [], [], [], Counter(), Counter()
        for index, episode in enumerate(store):
            attrs = store.attrs(index)
            lengths.append(len(episode))
            returns.append(float(episode.rewards.sum()))
            successes.append(is_success(episode, attrs))
            experts[str(attrs.get("expert", "unknown"))] += 1
            envs[str(attrs.get("env_id", "unknown"))] += 1
        schema = store.schema
    summary: dict[str, Any] = {
        "path": str(path),
        "episodes": len(lengths),
        "steps": int(sum(lengths)),
        "observations": {
            k: {"shape": list(s.shape), "dtype": s.dtype} for k, s in schema.observations
        },
        "action_shape": list(schema.action_shape),
        "experts": dict(experts),
        "env_ids": dict(envs),
    }
    if lengths:
        summary.update(
            length_min=int(min(lengths)),
            length_mean=float(np.mean(lengths)),
            length_max=int(max(lengths)),
            mean_return=float(np.mean(returns)),
            success_rate=float(np.mean(successes)),
        )
    return summary


def replay_video(
    path: Path, out: Path, env_id: str | None = None, episodes: int | None = None, fps: int = 25
) -> dict[str, Any]:
    """Write an mp4 of a store's first `episodes` episodes (all by default).

    Camera observations are shown as stored; state-only episodes are re-simulated from their
    recorded seed and actions (rendered offscreen), and the largest deviation of the replayed
    observations from the stored ones is reported (0 for a faithful replay).
    """
    from serl.train.reports import write_video

    with EpisodeStore.open(path) as store:
        items = list(itertools.islice(store.items(), episodes))
        image_keys = store.schema.image_keys
    if not items:
        raise ValueError(f"{path}: no episodes to replay")
    frames: list[np.ndarray] = []
    deviations: list[float] = []
    for episode, attrs in items:
        if image_keys:
            frames += [
                np.concatenate([episode.observations[k][t] for k in image_keys], axis=1)
                for t in range(len(episode) + 1)
            ]
            continue
        ep_env = env_id or attrs.get("env_id")
        if ep_env is None or "seed" not in attrs:
            raise ValueError(
                f"{path}: episodes without images need an env id and a recorded "
                "seed to be re-simulated (pass --env-id)"
            )
        shown, deviation = _resimulate(ep_env, episode, int(attrs["seed"]))
        frames += shown
        deviations.append(deviation)
    write_video(frames, out, fps=fps)
    result: dict[str, Any] = {"video": str(out), "episodes": len(items), "frames": len(frames)}
    if deviations:
        result["max_obs_deviation"] = float(max(deviations))
    return result


def _resimulate(env_id: str, episode: Episode, seed: int) -> tuple[list[np.ndarray], float]:
    env = make_env(env_id, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames, deviation = [env.render()], 0.0
        for t, action in enumerate(episode.actions):
            deviation = max(deviation, _obs_deviation(obs, episode, t))
            obs, *_ = env.step(action)
            frames.append(env.render())
        deviation = max(deviation, _obs_deviation(obs, episode, len(episode)))
    finally:
        env.close()
    return frames, deviation


def _obs_deviation(obs: dict[str, np.ndarray], episode: Episode, t: int) -> float:
    return max(
        float(np.max(np.abs(np.asarray(obs[k], np.float64) - v[t])))
        for k, v in episode.observations.items()
    )
