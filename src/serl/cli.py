"""The `serl` command: one subcommand per job a user runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import tyro

if TYPE_CHECKING:
    from serl.train.config import TrainConfig

Intervene = Literal["none", "sim", "spacemouse", "gamepad", "keyboard"]


def _json_kwargs(text: str | None, command: str) -> dict | None:
    """The --env-kwargs JSON object of `command`, or None when not given."""
    import json

    if not text:
        return None
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"serl {command}: --env-kwargs is not valid JSON ({e}): {text!r}") from e
    if not isinstance(kwargs, dict):
        raise SystemExit(f"serl {command}: --env-kwargs must be a JSON object, got {text!r}")
    return kwargs


def render(
    env_id: tyro.conf.Positional[str] = "serl/PandaPickCubeVision-v0",
    out: Path = Path("render.png"),
    seed: int = 0,
    size: int = 256,
) -> None:
    """Write a PNG of the front and wrist cameras of a serl sim env at reset.

    Args:
        env_id: A serl sim env with cameras.
        out: The PNG to write.
        seed: The reset seed (where the objects start).
        size: Each camera's image size in pixels (square).
    """
    import gymnasium as gym
    import imageio.v3 as iio

    import serl.envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, render_mode="rgb_array", render_size=size)
    env.reset(seed=seed)
    image = env.render()
    env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, image)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, cameras front | wrist)")


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
    env_kwargs: str | None = None,
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
    from serl.robot.teleop import DeviceError
    from serl.train.recording import record_demos as record

    try:
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
            env_kwargs=_json_kwargs(env_kwargs, "record-demos"),
        )
    except DeviceError as e:
        raise SystemExit(f"serl record-demos: {e}") from e
    from serl.data import EpisodeStore

    with EpisodeStore.open(path) as store:
        print(f"wrote {len(store)} episodes to {path}")


def demos(
    command: tyro.conf.Positional[Literal["info", "video"]],
    path: tyro.conf.Positional[Path],
    out: Path = Path("demos.mp4"),
    env_id: str | None = None,
    episodes: int | None = None,
) -> None:
    """`demos info PATH`: summarise a demo store as JSON; `demos video PATH --out X.mp4`:
    replay its episodes to video (camera frames as stored, else re-simulated from seeds).

    Args:
        command: info or video.
        path: The episode store.
        out: Where video writes the mp4.
        env_id: The env to re-simulate in (default: the one stored with each episode).
        episodes: Replay only the first N episodes.
    """
    import json

    from serl.train.demos import replay_video, summarize_demos

    if command == "info":
        print(json.dumps(summarize_demos(path), indent=2))
    else:
        print(json.dumps(replay_video(path, out, env_id=env_id, episodes=episodes)))


def weights(
    command: tyro.conf.Positional[Literal["list", "convert", "clear"]] = "list",
    path: Path | None = None,
    backbone: Literal["mobilenet_v2", "resnet10"] = "resnet10",
) -> None:
    """The pretrained-weight cache: `list` what it holds (JSON), `convert` a file into it now
    (--path; "imagenet" is the bundled MobileNetV2), `clear` it (files are converted again when
    next needed).

    Args:
        command: list, convert or clear.
        path: For convert: the original SERL's resnet10_params.pkl, LeRobot's ResNet-10
            model.safetensors, a torchvision MobileNetV2 .pth, or "imagenet".
        backbone: For convert: the network the file holds.
    """
    import json
    import shutil

    from serl.networks import cached_weights, resolve_pretrained, weight_cache_dir

    if command == "convert":
        if path is None:
            raise ValueError("serl weights convert needs --path FILE (or --path imagenet)")
        source = "imagenet" if str(path) == "imagenet" else path
        print(resolve_pretrained("mobilenet_v2" if source == "imagenet" else backbone, source))
    elif command == "clear":
        entries = cached_weights()
        shutil.rmtree(weight_cache_dir(), ignore_errors=True)
        print(f"removed {len(entries)} converted weight files from {weight_cache_dir()}")
    else:
        print(json.dumps({"cache": str(weight_cache_dir()), "files": cached_weights()}, indent=2))


def _config(env_id: str, **overrides: object) -> TrainConfig:
    from serl.train.config import recipe

    return recipe(env_id, **overrides)


def _encoder_overrides(backbone: str | None, pretrained: Path | None) -> dict | None:
    """Agent overrides for --encoder / --pretrained (None when neither is given)."""
    encoder: dict[str, object] = {}
    if backbone is not None:  # MobileNetV2 cut at stride 16 (8x8x96), ResNet-10 whole (4x4x512)
        encoder |= {
            "backbone": backbone,
            "feature_stride": 16 if backbone == "mobilenet_v2" else None,
        }
        if backbone != "mobilenet_v2" and pretrained is None:
            raise ValueError(
                f"--encoder {backbone} needs --pretrained PATH (its weights: the "
                "original SERL's resnet10_params.pkl or LeRobot's model.safetensors)"
            )
    if pretrained is not None:
        encoder["pretrained_path"] = str(pretrained.absolute())
    return {"encoder": encoder} if encoder else None


def train(
    env_id: tyro.conf.Positional[str] = "serl/PandaPickCube-v0",
    agent: Literal["sac", "drq", "bc", "vice"] | None = None,
    demos: Path | None = None,
    num_demos: int | None = None,
    env_steps: int | None = None,
    seed: int = 0,
    run_dir: Path | None = None,
    actors: int = 1,
    resume: bool = False,
    eval_every: int | None = None,
    video: bool = True,
    preset: str | None = None,
    intervene: Intervene | None = None,
    reward_classifier: Path | None = None,
    goal_examples: Path | None = None,
    obs_horizon: int | None = None,
    act_exec_horizon: int | None = None,
    env_kwargs: str | None = None,
    encoder: Literal["mobilenet_v2", "resnet10"] | None = None,
    pretrained: Path | None = None,
) -> int:
    """Train with a learner and actor processes on this machine (the env's recipe by default).

    Unset options take the env's recipe (serl.train.config.RECIPES), else TrainConfig's default.
    --intervene and --reward-classifier are kept for --resume; pair --intervene with --preset
    sac_hil (Q-filtered cloning of the corrections). Labelled goal-example stores (from
    record-transitions) give their success frames. With action chunks, env steps count agent
    steps.

    Args:
        env_id: A serl env id, or any gymnasium env with Box (or dict of Box) spaces.
        agent: sac (state), drq (cameras), bc, or vice (drq that learns its reward online).
        demos: An episode store of demonstrations (from record-demos).
        num_demos: Scripted demos to record into RUN_DIR/demos when --demos is not given.
        env_steps: Env steps in all, over all actors.
        seed: Seeds the envs, the agent and the replay sampler.
        run_dir: The run's directory (default: runs/<env>/<agent>-s<seed>, numbered).
        actors: Actor processes.
        resume: Continue the run in --run-dir (unset: the newest for this env, agent and seed).
        eval_every: Env steps (of actor 0) between evaluations.
        video: Write an mp4 of the final policy into the run directory.
        preset: An agent preset of serl.agents.PRESETS, e.g. sac_demo, sac_hil, drq_small.
        intervene: Who may take over stalled training episodes: sim, or a person at a device.
        reward_classifier: A train-classifier dir: its success probability is reward and end.
        goal_examples: VICE's positives (an episode store); default: the demos' final frames.
        obs_horizon: The agent sees stacks of its last T observations.
        act_exec_horizon: Each agent step runs a chunk of K env actions open-loop.
        env_kwargs: A JSON object of env arguments, e.g. '{"image_size": 64}' (demos too).
        encoder: The camera backbone (frozen): mobilenet_v2 (ImageNet weights ship with serl)
            or resnet10 (give --pretrained).
        pretrained: The backbone's weights: the original SERL's resnet10_params.pkl, LeRobot's
            ResNet-10 model.safetensors, a torchvision MobileNetV2 .pth, or a serl .npz.
    """
    from serl.train.launcher import train as launch

    cfg = _config(
        env_id,
        agent=agent,
        demos=str(demos) if demos else None,
        num_demos=num_demos,
        env_steps=env_steps,
        seed=seed,
        run_dir=str(run_dir) if run_dir else None,
        actors=actors,
        eval_every=eval_every,
        resume=resume,
        preset=preset,
        goal_examples=str(goal_examples.absolute()) if goal_examples else None,
        obs_horizon=obs_horizon,
        act_exec_horizon=act_exec_horizon,
        env_kwargs=_json_kwargs(env_kwargs, "train"),
        agent_overrides=_encoder_overrides(encoder, pretrained),
    )
    if intervene is not None:
        from serl.train.envs import check_intervention_chunks
        from serl.train.run_checkpoints import latest_checkpoint
        from serl.train.run_files import InterventionConfig

        check_intervention_chunks(intervene, cfg.act_exec_horizon)
        if resume or latest_checkpoint(cfg.path) is None:  # never touch another finished run
            InterventionConfig(kind=intervene).save(cfg.path)
    if reward_classifier is not None:
        from serl.train.run_checkpoints import latest_checkpoint
        from serl.train.run_files import RewardConfig

        if resume or latest_checkpoint(cfg.path) is None:  # never touch another finished run
            RewardConfig.for_env(env_id, reward_classifier.absolute()).save(cfg.path)
    return launch(cfg, resume=resume, video=video)


def learner(run_dir: Path, resume: bool = False) -> int:
    """Run the learner of RUN_DIR (its config.json) and listen for actors.

    Args:
        run_dir: The run's directory, holding config.json (e.g. from a local serl train).
        resume: Continue from the newest checkpoint and the replay already stored.
    """
    from serl.train.config import TrainConfig
    from serl.train.learner_process import run_learner

    _logging()
    return run_learner(TrainConfig.load(run_dir), resume=resume)


def actor(
    learner: str,
    config: Path,
    index: int = 0,
    start_step: int = 0,
    token: str | None = None,
    intervene: Intervene | None = None,
) -> int:
    """Run actor INDEX against a learner at HOST:PORT (token from --token or $SERL_TOKEN).

    A restarted actor goes on from the steps of it the learner holds (or --start-step, if more).

    Args:
        learner: The learner's HOST:PORT (RUN_DIR/learner.json on its machine).
        config: A copy of the run's config.json.
        index: This actor's number, 0 to actors - 1 (actor 0 evaluates).
        start_step: Env steps this actor already took (the learner's count when more).
        token: The run's secret (RUN_DIR/token); default: $SERL_TOKEN.
        intervene: Overrides the run's intervention.json, e.g. a person at this gamepad.
    """
    import json
    import os

    from serl.train.actor_process import run_actor
    from serl.train.config import TrainConfig
    from serl.train.run_files import InterventionConfig

    _logging()
    secret = token or os.environ.get("SERL_TOKEN")
    if not secret:
        raise SystemExit("serl actor: give --token or set SERL_TOKEN (the learner's RUN_DIR/token)")
    cfg = TrainConfig.from_json(json.loads(config.read_text()))
    hil = InterventionConfig(kind=intervene) if intervene is not None else None
    return run_actor(cfg, learner, secret, index, start_step, hil)


def evaluate(
    run_dir: tyro.conf.Positional[Path], episodes: int = 20, video: Path | None = None
) -> None:
    """Evaluate a run's newest checkpoint; print JSON with success_rate and mean_return.

    Args:
        run_dir: The run's directory.
        episodes: Evaluation episodes (deterministic policy, seeds apart from training's).
        video: Also write an mp4 of the episodes here.
    """
    import json

    from serl.train.evaluation import evaluate_run

    print(json.dumps(evaluate_run(run_dir, episodes=episodes, video=video)))


def robot_server(
    backend: Literal["sim", "franka"] = "sim",
    host: str = "127.0.0.1",
    port: int = 5000,
    scene: Literal["empty", "peg"] = "empty",
    cameras: tuple[str, ...] = ("front", "wrist"),
    camera_size: int = 128,
    robot_ip: str = "172.16.0.2",
    gripper: Literal["franka", "robotiq", "none"] = "franka",
    robotiq_port: str = "/dev/ttyUSB0",
    watchdog_s: float = 0.5,
    token: str | None = None,
) -> int:
    """Serve the robot HTTP API (OpenAPI at /openapi.json); token: --token or $SERL_ROBOT_TOKEN.

    Args:
        backend: sim (MuJoCo, no hardware) or franka (libfranka; pip install 'serl[robot]').
        host: Address to listen on; keep 127.0.0.1 unless a token is set.
        port: Port to listen on.
        scene: The sim backend's scene.
        cameras: The sim backend's cameras.
        camera_size: The sim cameras' image size in pixels (square).
        robot_ip: The arm's address (franka backend).
        gripper: The gripper on the arm (franka backend).
        robotiq_port: The Robotiq gripper's serial port.
        watchdog_s: Hold the arm when no command arrived for this long.
        token: The API's secret; default: $SERL_ROBOT_TOKEN.
    """
    import os

    from serl.robot.backends import make_backend
    from serl.robot.server import ServerConfig, create_app, serve

    _logging()
    if backend == "sim":
        arm = make_backend(
            "sim", scene=scene, cameras=cameras, camera_size=(camera_size, camera_size)
        )
    else:
        arm = make_backend("franka", robot_ip=robot_ip, gripper=gripper, robotiq_port=robotiq_port)
    config = ServerConfig(watchdog_s=watchdog_s, token=token or os.environ.get("SERL_ROBOT_TOKEN"))
    serve(create_app(arm, config), host=host, port=port)
    return 0


def record_transitions(
    env_id: tyro.conf.Positional[str],
    out: Path,
    episodes: int = 60,
    device: Literal["sim", "spacemouse", "gamepad", "keyboard"] = "sim",
    seed: int = 0,
    noise: float = 0.1,
    env_kwargs: str | None = None,
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

    from serl.robot.teleop import DeviceError
    from serl.train.recording import record_transitions as record

    kwargs = _json_kwargs(env_kwargs, "record-transitions")
    try:
        summary = record(
            env_id,
            out,
            episodes,
            device=None if device == "sim" else device,
            seed=seed,
            noise=noise,
            env_kwargs=kwargs,
            action_scale=action_scale,
        )
    except DeviceError as e:
        raise SystemExit(f"serl record-transitions: {e}") from e
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

    from serl.agents.classifier import ClassifierConfig
    from serl.train.reward_model import train_classifier as train_clf

    base = ClassifierConfig()
    encoder = base.encoder
    weights = str(pretrained) if pretrained else None
    if backbone == "mobilenet_v2":  # drq_cached's encoder: frozen, cached, stride 16
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
            encoder,
            backbone=backbone,
            freeze_backbone=pretrained is not None,
            pretrained_path=weights,
        )
    config = ClassifierConfig(
        encoder=encoder, image_keys=cameras, image_size=image_size, batch_size=batch_size
    )
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


def train_fb(
    env_id: tyro.conf.Positional[str] = "serl/PandaBinRelocationVision-v0",
    backward_env_id: str | None = None,
    forward_classifier: Path | None = None,
    backward_classifier: Path | None = None,
    forward_demos: Path | None = None,
    backward_demos: Path | None = None,
    agent: Literal["sac", "drq"] = "drq",
    preset: str | None = None,
    env_steps: int = 20_000,
    seed: int = 0,
    run_dir: Path = Path("runs/forward_backward"),
) -> None:
    """Reset-free forward/backward training: two agents alternate episodes on one scene.

    Each direction rewards itself with its own classifier (--forward-classifier,
    --backward-classifier), else with the env's reward (the sim's truth). The real robot:
    serl/FrankaBinRelocationForward-v0 --backward-env-id serl/FrankaBinRelocationBackward-v0.

    Args:
        env_id: The forward task's env (the sim's serves both directions).
        backward_env_id: The backward task's env, when it is another (the real robot's).
        forward_classifier: The forward direction's success classifier (train-classifier).
        backward_classifier: The backward direction's success classifier.
        forward_demos: Demos of the forward task (an episode store).
        backward_demos: Demos of the backward task.
        agent: sac (state) or drq (cameras), for both directions.
        preset: An agent preset of serl.agents.PRESETS for both.
        env_steps: Env steps in all, over both directions.
        seed: Seeds the env and both agents.
        run_dir: The run's directory (forward/ and backward/ inside).
    """
    import dataclasses
    import json

    from serl.train.forward_backward import ForwardBackwardConfig, train_forward_backward

    _logging()

    def opt(p: Path | None) -> str | None:
        return str(p) if p is not None else None

    train = dataclasses.replace(
        ForwardBackwardConfig().train,
        env_id=env_id,
        agent=agent,
        preset=preset,
        env_steps=env_steps,
        seed=seed,
        run_dir=str(run_dir),
    )
    cfg = ForwardBackwardConfig(
        train,
        backward_env_id=backward_env_id,
        forward_classifier=opt(forward_classifier),
        backward_classifier=opt(backward_classifier),
        forward_demos=opt(forward_demos),
        backward_demos=opt(backward_demos),
    )
    print(json.dumps(train_forward_backward(cfg)))


def _logging() -> None:
    import logging

    # force: an import (absl, via orbax) may already have configured the root logger. Our
    # messages at INFO; the libraries' (a page per orbax checkpoint) from WARNING up.
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    logging.getLogger("serl").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `serl` command."""
    code = tyro.extras.subcommand_cli_from_dict(
        {
            "train": train,
            "learner": learner,
            "actor": actor,
            "eval": evaluate,
            "record-demos": record_demos,
            "demos": demos,
            "weights": weights,
            "render": render,
            "robot-server": robot_server,
            "record-transitions": record_transitions,
            "train-classifier": train_classifier,
            "train-fb": train_fb,
        },
        args=argv,
    )
    return code if isinstance(code, int) else 0


# Errors serl raises to say what to do: shown as one line; SERL_DEBUG=1 shows the traceback.
_USER_ERRORS = (FileExistsError, FileNotFoundError, ValueError, RuntimeError, TimeoutError)


def _said_by_serl(error: BaseException) -> bool:
    """Whether serl's own code raised `error` (its message is for the user); an error from a
    library (an XLA runtime error, a numpy bug) keeps its traceback."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("serl")


def entry_point() -> None:
    """Console-script entry: exit with the subcommand's code."""
    import os
    import sys

    try:
        code = main()
    except _USER_ERRORS as e:
        if os.environ.get("SERL_DEBUG") or not _said_by_serl(e):
            raise
        print(f"serl: {type(e).__name__}: {e}\n(SERL_DEBUG=1 shows the traceback)", file=sys.stderr)
        code = 1
    raise SystemExit(code)


if __name__ == "__main__":
    entry_point()
