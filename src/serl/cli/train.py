"""`serl train` and `serl train-fb`: their options are the configs' own fields (help from the
fields' comments), defaulting to the env's recipe, plus the few that act on the run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from serl.cli.common import setup_logging
from serl.dataclass_json import JsonObject
from serl.errors import ConfigError
from serl.train.config import TrainConfig, recipe
from serl.train.forward_backward import ForwardBackwardConfig
from serl.train.run_files import Intervener

DEFAULT_ENV = "serl/PandaPickCube-v0"
WANDB_PROJECT = "serl"
Flattened = tyro.conf.arg(name="")  # a nested config's fields as top-level flags


@dataclass(frozen=True)
class TrainArgs:
    """Train with a learner and actor processes on this machine.

    Every option defaults to the env's recipe (serl.train.config.RECIPES), else to TrainConfig's
    default: `serl train ENV_ID --help` shows that env's. --intervene and --reward-classifier
    are kept for --resume; pair --intervene with --preset sac_hil (Q-filtered cloning of the
    corrections). Labelled goal-example stores (from record-transitions) give their success
    frames.
    """

    config: Annotated[TrainConfig, Flattened]
    resume: bool = False  # continue the run in --run-dir (default: the newest of this env)
    video: bool = True  # write an mp4 of the final policy into the run directory
    intervene: Intervener | None = None  # who may take over stalled episodes: sim, or a device
    reward_classifier: Path | None = None  # a train-classifier dir: its success is reward and end
    encoder: Literal["mobilenet_v2", "resnet10"] | None = None  # the frozen camera backbone
    # the backbone's weights: the original SERL's resnet10_params.pkl, LeRobot's ResNet-10
    # model.safetensors, a torchvision MobileNetV2 .pth, or a serl .npz
    pretrained: Path | None = None
    # mirror the run to this Weights & Biases project (--wandb alone: "serl"); WANDB_MODE=offline
    # logs without an account. A resumed run goes on in the W&B run it had
    wandb: str | None = None
    # run the learner and actors as Ray actors: local (a Ray on this machine), auto (the
    # cluster this machine is a node of) or its HOST:PORT; Ray places them, restarts what fails
    ray: str | None = None
    learner_gpus: float = 0.0  # --ray: GPUs the learner asks Ray for
    actor_cpus: float = 1.0  # --ray: CPUs each actor asks Ray for
    # --ray: custom resources each actor asks for, e.g. '{"robot": 1}' (only a robot's node)
    actor_resources: JsonObject | None = None


def with_wandb_default(argv: list[str]) -> list[str]:
    """`--wandb` with no project (last, or before another flag) as `--wandb serl`."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--wandb" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(WANDB_PROJECT)
    return out


def parse_train_args(argv: list[str]) -> TrainArgs:
    """The flags over the recipe of the env they name: a first parse (over the recipe without
    its preset, which belongs to the recipe's agent) finds the env id, agent, seed and --resume,
    which choose the recipe and run directory that the second one fills."""
    argv = with_wandb_default(argv)
    env_id = argv[0] if argv and not argv[0].startswith("-") else DEFAULT_ENV
    probe = [a for a in argv if a not in ("-h", "--help")]  # help shows the recipe's defaults
    args = _parse(_agentless(env_id), probe)
    if args.config.env_id != env_id:  # named after other flags: parse over its recipe
        env_id = args.config.env_id
        args = _parse(_agentless(env_id), probe)
    c = args.config
    default = recipe(env_id, resume=args.resume, agent=c.agent, seed=c.seed)
    return _parse(TrainArgs(default), argv)


def _agentless(env_id: str) -> TrainArgs:
    return TrainArgs(dataclasses.replace(recipe(env_id), preset=None))


def _parse(default: TrainArgs, argv: list[str]) -> TrainArgs:
    return tyro.cli(TrainArgs, default=default, args=argv, prog="serl train")


def train_config(args: TrainArgs) -> TrainConfig:
    """The run's config: --encoder and --pretrained folded into the agent overrides."""
    cfg = args.config
    encoder = encoder_overrides(args.encoder, args.pretrained)
    if encoder:
        mine = cfg.agent_overrides
        overrides = {**mine, "encoder": {**mine.get("encoder", {}), **encoder}}
        cfg = dataclasses.replace(cfg, agent_overrides=overrides)
    if cfg.goal_examples:
        cfg = dataclasses.replace(cfg, goal_examples=str(Path(cfg.goal_examples).absolute()))
    return cfg


def encoder_overrides(backbone: str | None, pretrained: Path | None) -> dict[str, object]:
    """The encoder fields that --encoder and --pretrained set."""
    encoder: dict[str, object] = {}
    if backbone is not None:  # MobileNetV2 cut at stride 16 (8x8x96), ResNet-10 whole (4x4x512)
        encoder |= {
            "backbone": backbone,
            "feature_stride": 16 if backbone == "mobilenet_v2" else None,
        }
        if backbone != "mobilenet_v2" and pretrained is None:
            raise ConfigError(
                f"--encoder {backbone} needs --pretrained PATH (its weights: the "
                "original SERL's resnet10_params.pkl or LeRobot's model.safetensors)"
            )
    if pretrained is not None:
        encoder["pretrained_path"] = str(pretrained.absolute())
    return encoder


def run_train(argv: list[str]) -> int:
    """`serl train ARGS`."""
    from serl.train.envs import check_intervention_chunks
    from serl.train.launcher import train
    from serl.train.run_checkpoints import latest_checkpoint
    from serl.train.run_files import InterventionConfig, RewardConfig

    args = parse_train_args(argv)
    cfg = train_config(args)
    # the run files of --intervene and --reward-classifier; never touch another finished run
    writable = args.resume or latest_checkpoint(cfg.path) is None
    if args.intervene is not None:
        check_intervention_chunks(args.intervene, cfg.act_exec_horizon)
        if writable:
            InterventionConfig(kind=args.intervene).save(cfg.path)
    if args.reward_classifier is not None and writable:
        RewardConfig.for_env(cfg.env_id, args.reward_classifier.absolute()).save(cfg.path)
    return train(
        cfg,
        resume=args.resume,
        video=args.video,
        wandb=args.wandb,
        ray=args.ray,
        learner_gpus=args.learner_gpus,
        actor_cpus=args.actor_cpus,
        actor_resources=args.actor_resources,
    )


@dataclass(frozen=True)
class ForwardBackwardArgs:
    """Reset-free forward/backward training: two agents alternate episodes on one scene.

    Each direction rewards itself with its own classifier (--forward-classifier,
    --backward-classifier), else with the env's reward (the sim's truth). The real robot:
    serl/FrankaBinRelocationForward-v0 --backward-env-id serl/FrankaBinRelocationBackward-v0.
    Of the training options, --demos and --num-demos are unused (each direction has its own).
    """

    config: Annotated[ForwardBackwardConfig, Flattened]
    resume: bool = False  # continue the run in --run-dir from its checkpoints and replay


def run_train_fb(argv: list[str]) -> int:
    """`serl train-fb ARGS`."""
    from serl.train.forward_backward import train_forward_backward

    args = tyro.cli(
        ForwardBackwardArgs,
        default=ForwardBackwardArgs(ForwardBackwardConfig()),
        args=argv,
        prog="serl train-fb",
    )
    setup_logging()
    print(json.dumps(train_forward_backward(args.config, resume=args.resume)))
    return 0
