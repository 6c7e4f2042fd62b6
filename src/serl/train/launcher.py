"""`serl train`: one learner and K actors as processes on this machine, with progress bars
(with --ray, as Ray actors: `serl.train.ray_launcher`).

The launcher records demos if the recipe wants them, starts the learner and the actors (which
wait for its address), shows progress, restarts an actor that crashes and resumes a
learner that dies mid-run (each where it left off), stops everything cleanly on Ctrl-C, and at
the end writes a learning-curve PNG and an mp4 of evaluation episodes into the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
from pathlib import Path

from tqdm import tqdm

from serl.data import EpisodeStore, Schema
from serl.data.lerobot import is_lerobot_dataset
from serl.errors import ConfigError, PathExists, PathNotFound, ProcessFailed
from serl.networks import resolve_pretrained
from serl.train.config import TrainConfig
from serl.train.demos import with_observation_norm
from serl.train.envs import env_schema, make_env
from serl.train.ray_launcher import RayLauncher
from serl.train.run_checkpoints import latest_checkpoint
from serl.train.run_files import LEARNER_FILE, run_token, written_address
from serl.train.supervision import (
    MAX_ACTOR_RESTARTS,
    MAX_LEARNER_RESTARTS,
    RunProgress,
    actor_args,
    crash_report,
    start_serl,
    stop_process,
)
from serl.train.wandb_mirror import WandbMirror


def _exit_name(code: int) -> str:
    """A return code as a person reads it: "exit code 1", "killed by SIGKILL"."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def prepare_run(cfg: TrainConfig, resume: bool) -> TrainConfig:
    """Check the run dir, the env and the stores a run reads (before any process starts), reuse
    the config on resume, record demos the recipe asks for and add their observation
    statistics; the config.json every process reads."""
    run = cfg.path
    if resume and (run / "config.json").exists():
        cfg = dataclasses.replace(TrainConfig.load(run), env_steps=cfg.env_steps)
    elif latest_checkpoint(run) is not None:
        raise PathExists(
            f"{run} already holds a run; continue it with --resume or choose another --run-dir"
        )
    schema = _check_env(cfg)
    if cfg.demos is not None and is_lerobot_dataset(Path(cfg.demos)):
        # converted once into the run (checked against the env), then read like any demos
        demos = run / "demos"
        if not demos.exists():
            from serl.train.demos import import_lerobot

            print(f"importing LeRobotDataset {cfg.demos} into {demos}")
            import_lerobot(Path(cfg.demos), demos, env_id=cfg.env_id, env_kwargs=cfg.env_kwargs)
        cfg = dataclasses.replace(cfg, demos=str(demos))
    if cfg.demos is None and cfg.num_demos > 0:
        demos = run / "demos"
        if not demos.exists():
            from serl.train.recording import record_demos

            record_demos(cfg.env_id, cfg.num_demos, demos, seed=cfg.seed, env_kwargs=cfg.env_kwargs)
        cfg = dataclasses.replace(cfg, demos=str(demos))
    _check_store("--demos", cfg.demos, schema)
    _check_store("--goal-examples", cfg.goal_examples, None)
    # in config.json before the actors, which start beside the learner, read it
    cfg = with_observation_norm(cfg)
    encoder = getattr(cfg.agent_config, "encoder", None)
    if encoder is not None and encoder.pretrained_path is not None:
        # convert another tool's weight file once, here, and fail before any process starts
        resolve_pretrained(encoder.backbone, encoder.pretrained_path)
    cfg.save()
    return cfg


def _check_env(cfg: TrainConfig) -> Schema:
    """Make the run's env once, so a mistyped id or unusable spaces fail before any process
    starts; its per-step schema (what demo stores must match)."""
    env = make_env(cfg.env_id, **cfg.env_kwargs)
    try:
        return env_schema(env)
    finally:
        env.close()


def _check_store(flag: str, path: str | None, schema: Schema | None) -> None:
    """An episode store a run reads: present, readable, and (`schema`) of the run's env."""
    if path is None:
        return
    if not Path(path).exists():
        raise PathNotFound(f"{flag} {path}: no such episode store")
    with EpisodeStore.open(path) as store:
        if schema is not None and store.schema != schema:
            raise ConfigError(
                f"{flag} {path}: its observations and actions differ from the env's "
                f"(store: {store.schema.to_json()}, env: {schema.to_json()})"
            )


class Launcher:
    """Learner and actor processes of one run on localhost."""

    def __init__(self, cfg: TrainConfig, resume: bool, mirror: WandbMirror | None = None) -> None:
        self.cfg = cfg
        self.mirror = mirror
        self.run = cfg.path
        self.token = run_token(self.run)
        self.logs = self.run / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.restarts = 0
        self.learner_restarts = 0
        self._start_processes(resume)

    def _start_processes(self, resume: bool) -> None:
        """The learner and the actors at once: the actors start up while the learner does,
        and connect once it has written its address (RUN_DIR/learner.json)."""
        (self.run / LEARNER_FILE).unlink(missing_ok=True)
        args = ["learner", "--run-dir", str(self.run)] + (["--resume"] if resume else [])
        self.learner = self._spawn(args, "learner")
        self.actors = {i: self._start_actor(i) for i in range(self.cfg.actors)}
        try:
            self._wait_for_learner()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        return start_serl(args, self.logs / f"{name}.log", self.token)

    def _wait_for_learner(self, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if written_address(self.run / LEARNER_FILE) is not None:
                return
            if self.learner.poll() is not None:
                raise ProcessFailed(
                    f"the learner exited ({_exit_name(self.learner.returncode)}) before listening: "
                    + crash_report(self.logs / "learner.log")
                )
            time.sleep(0.1)
        raise ProcessFailed(f"the learner did not start listening within {timeout:.0f} s")

    def _start_actor(self, index: int) -> subprocess.Popen:
        # a restarted actor learns from the learner how many of its steps are stored
        learner, config = str(self.run / LEARNER_FILE), str(self.run / "config.json")
        return self._spawn(
            actor_args(learner, config, index, self.cfg.actor_nice), f"actor-{index}"
        )

    def supervise(self) -> int:
        """Show progress until the learner exits; restart crashed actors. Returns its code."""
        with RunProgress(self.cfg, self.mirror) as progress:
            while self.learner.poll() is None or self._resume_crashed_learner():
                self._restart_crashed_actors()
                progress.show()
                time.sleep(0.5)
        for proc in self.actors.values():
            stop_process(proc)
        return self.learner.returncode

    def _resume_crashed_learner(self) -> bool:
        """Resume a learner that died mid-run (its replay, newest checkpoint) and restart the
        actors for its new address; they go on from what it stored. False if it finished, or
        died too often."""
        code = self.learner.returncode
        if code == 0 or self.learner_restarts >= MAX_LEARNER_RESTARTS:
            return False
        self.learner_restarts += 1
        tqdm.write(f"the learner stopped ({_exit_name(code)}); resuming it")
        for proc in self.actors.values():
            proc.kill()  # what the learner did not acknowledge, the new actors take again
            proc.wait()
        self._start_processes(resume=True)
        return True

    def _restart_crashed_actors(self) -> None:
        for index, proc in self.actors.items():
            code = proc.poll()
            if code is None or code == 0:
                continue
            if self.restarts >= MAX_ACTOR_RESTARTS:
                log = self.logs / f"actor-{index}.log"
                raise ProcessFailed(f"actor {index} keeps failing: {crash_report(log)}")
            self.restarts += 1
            tqdm.write(f"actor {index} exited with {code}; restarting it")
            self.actors[index] = self._start_actor(index)

    def stop(self) -> None:
        """SIGTERM everyone (the learner checkpoints on it), then wait."""
        for proc in [*self.actors.values(), self.learner]:
            stop_process(proc)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    video: bool = True,
    wandb: str | None = None,
    ray: str | None = None,
    learner_gpus: float = 0.0,
    actor_cpus: float = 1.0,
    actor_resources: dict[str, float] | None = None,
) -> int:
    """Run a whole training job; returns the exit code. `wandb`: a W&B project to mirror the
    run to (on --resume, a run that was mirrored goes on in its W&B run); `ray`: a Ray address
    (or "local") to run the learner and actors on, with the resources they declare."""
    cfg = prepare_run(cfg, resume)
    print(
        f"serl train {cfg.env_id}: run dir {cfg.path} (TensorBoard: tensorboard --logdir "
        f"{cfg.path / 'tb'})"
    )
    mirror = WandbMirror.for_run(cfg.path, wandb, resume)
    media: list[Path] = []
    try:
        if ray is None:
            launcher: Launcher | RayLauncher = Launcher(cfg, resume, mirror)
        else:
            launcher = RayLauncher(cfg, ray, learner_gpus, actor_cpus, mirror, actor_resources)
        code = _supervise(launcher, cfg)
        if code == 0:
            media = finish_run(cfg, video)
    finally:
        if mirror is not None:
            mirror.finish(media)
    return code


def _supervise(launcher: Launcher | RayLauncher, cfg: TrainConfig) -> int:
    try:
        code = launcher.supervise()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping (the learner writes a final checkpoint)")
        launcher.stop()
        return 130
    except BaseException:
        launcher.stop()
        raise
    if code != 0:
        print(
            f"the learner failed ({_exit_name(code)}): "
            f"{crash_report(launcher.logs / 'learner.log')}"
        )
        print(f"continue the run with: serl train {cfg.env_id} --run-dir {cfg.path} --resume")
    return code


def finish_run(cfg: TrainConfig, video: bool) -> list[Path]:
    """Learning-curve PNG and an mp4 of the final policy, for people; the files written."""
    from serl.train.evaluation import evaluate_run
    from serl.train.reports import plot_learning_curves, read_eval_csv

    run = cfg.path
    written = []
    if (run / "eval.csv").exists():
        rows = read_eval_csv(run / "eval.csv")
        plot_learning_curves({cfg.env_id: rows}, run / "learning_curve.png")
        written.append(run / "learning_curve.png")
        if rows:
            print(f"final evaluation: {json.dumps(rows[-1])}")
    if video:
        try:
            evaluate_run(run, episodes=1, video=run / "eval.mp4")
            written.append(run / "eval.mp4")
        except RuntimeError as e:
            print(f"no video: {e}")
    if written:
        print("wrote " + " and ".join(map(str, written)))
    return written
