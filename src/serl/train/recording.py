"""Recording into episode stores: demonstrations (scripted expert or a person at a teleop device)
and success-labelled episodes for a reward classifier, through one teleop loop.

Labelled episodes carry, in their attributes, `labels`: one 0/1 per stored frame (L + 1 of them:
the reset frame and every step's result). In simulation the labels are `info["success"]`; with a
teleop device a person labels: the success event marks the current frame and the frames after it
successful, the failure event marks them failed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from serl.data import EpisodeStore
from serl.envs import make_expert
from serl.errors import ConfigError, ProcessFailed
from serl.train.envs import LABEL_ENV_KWARGS, env_schema, make_env
from serl.train.rollout import Rollout, run_episode

if TYPE_CHECKING:  # serl.robot pulls in the robot client: only device recording needs it
    from serl.robot.teleop import Event, TeleopDevice

log = logging.getLogger(__name__)
EXPERTS = ("scripted", "spacemouse", "gamepad", "keyboard")
SIM_POLICIES = ("expert", "expert_then_random", "random")
_HELP = {
    "spacemouse": "move the puck; left button closes, right opens the gripper",
    "gamepad": "sticks move, bumpers grip; A success, B failure, X re-record, Start stop",
    "keyboard": "w/s a/d up/down move, c/o grip; Enter success, Backspace failure, "
    "n re-record, Esc stop",
}


# -- a person at a device ------------------------------------------------------------------


class TeleopPolicy:
    """A person at a teleop device as a policy: their action each step, or None once one of the
    `ends` events arrives (kept in `event`; success and failure end an episode only after its
    first step). `labels` holds one 0/1 per frame, following the success and failure events."""

    def __init__(
        self, device: TeleopDevice[Any], action_dim: int, scale: float, ends: Sequence[Event]
    ) -> None:
        self.device, self.action_dim, self.scale, self.ends = device, action_dim, scale, ends
        self.event: Event | None = None
        self.labels = [0]

    def __call__(self, obs: Any) -> np.ndarray | None:
        from serl.robot.teleop import Event, command_to_action

        if len(self.labels) == 1:
            self.device.reset()  # after the env's reset: what was pressed meanwhile is void
        command = self.device.read()
        stepped = len(self.labels) > 1
        for event in self.ends:
            if event in command.events and (stepped or event in (Event.STOP, Event.RERECORD)):
                self.event = event
                return None
        label = self.labels[-1]
        if Event.SUCCESS in command.events:
            label = 1
        if Event.FAILURE in command.events:
            label = 0
        self.labels[-1] = label  # the frame the person saw when they said so
        self.labels.append(label)  # and the one this action leads to
        return command_to_action(command, self.action_dim, self.scale)


def teleop_episode(
    env: Any,
    device: TeleopDevice[Any],
    seed: int,
    ends: Sequence[Event],
    scale: float = 0.3,
    realtime: bool = True,
    on_step: Callable[[Any], Any] | None = None,
) -> tuple[Rollout, TeleopPolicy]:
    """One episode driven by a person until the env or one of the `ends` events ends it. An
    unplugged device raises DeviceDisconnected."""
    person = TeleopPolicy(device, int(np.prod(env.action_space.shape)), scale, ends)
    # a person needs the sim at the speed of the real robot
    run = run_episode(env, person, seed, on_step=on_step, realtime=realtime)
    return run, person


def _open_device(name: str | None, device: TeleopDevice[Any] | None) -> tuple[Any, bool]:
    """(the open device, whether we opened it and must close it)."""
    from serl.robot.teleop import make_device

    if device is not None:
        return device, False
    if name is None:
        raise ValueError("a teleop device name or an open device is needed")
    return make_device(name), True


# -- demonstrations -------------------------------------------------------------------------


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
        raise ConfigError(f"expert must be one of {EXPERTS}, got {expert!r}")
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id, **dict(env_kwargs or {}))
    store = EpisodeStore.create(out, env_schema(env))
    try:
        with store:
            if expert == "scripted":
                _record_scripted(
                    env, store, episodes, seed, successful_only, noise, max_attempts_factor, env_id
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
    store: EpisodeStore,
    episodes: int,
    seed: int,
    successful_only: bool,
    noise: float,
    max_attempts_factor: int,
    env_id: str,
) -> None:
    policy = make_expert(env, noise=noise, seed=seed)
    kept = attempts = 0
    with tqdm(total=episodes, desc=f"demos {env_id}", unit="ep") as bar:
        while kept < episodes:
            if attempts >= max_attempts_factor * episodes:
                raise ProcessFailed(
                    f"only {kept} of {attempts} expert episodes succeeded; kept {kept} in "
                    f"{store.path}"
                )
            policy.reset()
            run = run_episode(env, policy, seed=seed + attempts)
            attempts += 1
            if run.success or not successful_only:
                attrs = {
                    "env_id": env_id,
                    "expert": "scripted",
                    "seed": seed + attempts - 1,
                    "success": run.success,
                }
                store.append(run.episode(), attrs)
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
    """Demos from a person: success (the last step becomes terminal) and failure end and keep
    an episode; re-record and stop discard the one under way."""
    from serl.robot.teleop import DeviceDisconnected, Event

    dev, own = _open_device(expert, device)
    ends = (Event.STOP, Event.RERECORD, Event.SUCCESS, Event.FAILURE)
    realtime = own if realtime is None else realtime
    view = _open_viewer(env) if viewer else None
    sync = (lambda step: view.sync()) if view is not None else None
    kept, index = 0, 0
    print(f"recording {episodes} episodes with the {expert}: {_HELP.get(expert, '')}")
    try:
        while kept < episodes:
            try:
                run, person = teleop_episode(env, dev, seed + index, ends, scale, realtime, sync)
            except DeviceDisconnected as e:
                raise DeviceDisconnected(
                    f"{e}; the episode in progress was discarded, {kept} kept in {store.path}"
                ) from e
            if person.event == Event.STOP:
                print(f"stopped: {kept} episodes kept in {store.path}")
                return
            if person.event == Event.RERECORD:
                print(f"episode {index}: discarded, recording it again")
                continue
            index += 1
            success = run.success if person.event is None else person.event == Event.SUCCESS
            if person.event == Event.SUCCESS:
                run.terminated[-1] = True
            elif person.event == Event.FAILURE:
                run.truncated[-1] = True
            if success or not successful_only:
                attrs = {
                    "env_id": env_id,
                    "expert": expert,
                    "seed": seed + index - 1,
                    "success": success,
                }
                store.append(run.episode(), attrs)
                kept += 1
            print(
                f"episode {index}: {'success' if success else 'failure'} "
                f"({len(run)} steps), {kept}/{episodes} kept"
            )
    finally:
        if view is not None:
            view.close()
        if own:
            dev.close()


def _open_viewer(env: Any) -> Any:
    """A passive MuJoCo viewer window on the sim (the person needs to see what they drive)."""
    base = env.unwrapped
    if not hasattr(base, "model"):
        raise ProcessFailed(f"{type(base).__name__} has no MuJoCo model to view; use --no-viewer")
    try:
        import mujoco.viewer

        return mujoco.viewer.launch_passive(base.model, base.data)
    except Exception as e:  # no display, no GLFW
        raise ProcessFailed(f"cannot open the MuJoCo viewer ({e}); use --no-viewer") from e


# -- success-labelled episodes --------------------------------------------------------------


def sim_policy(env: Any, kind: str, rng: np.random.Generator, noise: float) -> Callable[[Any], Any]:
    """An episode's labelling policy: the scripted expert, the expert then random actions from a
    random step on (drops, re-grasps: varied positives and negatives), or random actions."""
    if kind not in SIM_POLICIES:
        raise ConfigError(f"policy must be one of {SIM_POLICIES}, got {kind!r}")
    if kind == "random":
        return lambda obs: rng.uniform(-1.0, 1.0, env.action_space.shape)
    expert = make_expert(env, noise=noise, seed=int(rng.integers(2**31)))
    expert.reset()
    switch = int(rng.integers(15, 70)) if kind == "expert_then_random" else None
    step = 0

    def act(obs: Any) -> Any:
        nonlocal step
        step += 1
        if switch is not None and step > switch:
            return rng.uniform(-1.0, 1.0, env.action_space.shape)
        return expert(obs)

    return act


def success_labels(run: Rollout) -> list[int]:
    """One label per frame of a simulated episode: its `info["success"]` (reset's too)."""
    return [int(bool(info.get("success", False))) for info in run.infos]


def record_transitions(
    env_id: str,
    out: Path,
    episodes: int,
    device: str | None = None,
    seed: int = 0,
    policies: Sequence[str] = SIM_POLICIES,
    noise: float = 0.1,
    env_kwargs: Mapping[str, Any] | None = None,
    action_scale: float = 0.3,
    realtime: bool | None = None,
    teleop: TeleopDevice[Any] | None = None,
) -> dict[str, Any]:
    """Record `episodes` success-labelled episodes into a new episode store at `out`.

    Without a device, labels are the sim's `info["success"]` and episode i runs policy
    `policies[i % len(policies)]` from seed `seed + i`. With `device` (a teleop name) or an
    open `teleop` device a person drives and labels. Returns a summary (frames, positives).
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    kwargs = dict(LABEL_ENV_KWARGS.get(env_id, {}) if env_kwargs is None else env_kwargs)
    env = make_env(env_id, **kwargs)
    rng = np.random.default_rng(seed)
    frames = positives = 0
    source = device or (teleop.name if teleop is not None else "sim")
    try:
        with EpisodeStore.create(out, env_schema(env)) as store:
            if source == "sim":
                for i in tqdm(range(episodes), desc=f"labelled {env_id}", unit="ep"):
                    kind = policies[i % len(policies)]
                    run = run_episode(env, sim_policy(env, kind, rng, noise), seed + i)
                    labels = success_labels(run)
                    store.append(
                        run.episode(), _attrs(env_id, seed + i, source, kind, labels, kwargs)
                    )
                    frames, positives = frames + len(labels), positives + sum(labels)
            else:
                frames, positives = _record_labelled_teleop(
                    env,
                    env_id,
                    store,
                    episodes,
                    seed,
                    device,
                    teleop,
                    action_scale,
                    realtime,
                    kwargs,
                )
            count = len(store)
    finally:
        env.close()
    return {
        "path": str(out),
        "episodes": count,
        "frames": frames,
        "positives": positives,
        "env_kwargs": kwargs,
    }


def _attrs(
    env_id: str,
    seed: int,
    source: str,
    policy: str,
    labels: list[int],
    env_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "env_id": env_id,
        "seed": seed,
        "source": source,
        "policy": policy,
        "labels": [int(v) for v in labels],
        "env_kwargs": dict(env_kwargs),
    }


def _record_labelled_teleop(
    env: Any,
    env_id: str,
    store: EpisodeStore,
    episodes: int,
    seed: int,
    device: str | None,
    teleop: TeleopDevice[Any] | None,
    scale: float,
    realtime: bool | None,
    kwargs: Mapping[str, Any],
) -> tuple[int, int]:
    """Labelled episodes from a person: the env ends each one; re-record discards the one under
    way; stop ends the recording, keeping what was recorded (cut: its last step truncated)."""
    from serl.robot.teleop import Event

    dev, own = _open_device(device, teleop)
    realtime = own if realtime is None else realtime
    frames = positives = index = 0
    try:
        while len(store) < episodes:
            run, person = teleop_episode(
                env, dev, seed + index, (Event.STOP, Event.RERECORD), scale, realtime
            )
            if person.event == Event.RERECORD:
                continue
            index += 1
            if len(run):
                if person.event == Event.STOP:
                    run.truncated[-1] = True  # cut here: bootstrap through it
                store.append(
                    run.episode(),
                    _attrs(env_id, seed + index - 1, dev.name, "teleop", person.labels, kwargs),
                )
                frames, positives = frames + len(person.labels), positives + sum(person.labels)
            if person.event == Event.STOP:
                break
    finally:
        if own:
            dev.close()
    return frames, positives
