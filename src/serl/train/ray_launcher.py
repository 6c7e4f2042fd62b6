"""`serl train --ray ADDRESS`: the learner and the actors as Ray actors, placed and restarted by
Ray, on this machine (`local`) or the cluster this machine belongs to (`auto`, an address).

Each Ray actor hosts one serl process (`serl learner` or `serl actor`, the same programs the
local launcher starts) and exits with it when it fails, so Ray's restart policy is the restart
policy: a restarted actor goes on from the steps the learner holds; a restarted learner resumes
from its newest checkpoint and replay, on the same address, so the actors ride through it as
they ride through a network outage (what it had not acknowledged they send again). The data
plane stays serl's gRPC transport (exactly-once, auth, back-pressure, spilling). The learner is
pinned to the driver's node: the run directory (checkpoints, replay, eval.csv, TensorBoard) is
local to it and a restarted learner finds it there. The run's config and token reach the actors
through Ray, as arguments, not as copied files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from serl.errors import ConfigError, ProcessFailed
from serl.train.config import TrainConfig
from serl.train.run_checkpoints import latest_checkpoint
from serl.train.run_files import run_token
from serl.train.supervision import (
    MAX_ACTOR_RESTARTS,
    MAX_LEARNER_RESTARTS,
    RunProgress,
    actor_args,
    crash_report,
    start_serl,
    stop_process,
)


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--ray needs Ray: pip install 'serl[ray]'") from e
    return ray


class ProcessHost:
    """A Ray actor hosting one serl process; it exits when the process fails, for Ray to
    restart it (its constructor, run again, starts the process again)."""

    def __init__(
        self,
        argv: list[str],
        log: str,
        token: str,
        files: dict[str, str] | None = None,
        resume_run: str | None = None,
    ) -> None:
        # files: written on this node (e.g. the actor's config.json), "{dir}" in argv is their
        # directory; resume_run: a learner's run dir, resumed if it holds a checkpoint
        here = Path(tempfile.mkdtemp(prefix="serl-ray-"))
        for name, text in (files or {}).items():
            (here / name).write_text(text)
        argv = [a.replace("{dir}", str(here)) for a in argv]
        if resume_run is not None and latest_checkpoint(Path(resume_run)) is not None:
            argv.append("--resume")
        log_path = Path(log)
        if not log_path.parent.is_dir():  # a node without the run directory: its own logs
            log_path = here / log_path.name
        if os.nice(0) > 0:  # a cluster's nodes started without RAY_worker_niceness=0
            with log_path.open("a") as out:
                out.write(f"serl: Ray runs this process at nice {os.nice(0)} (see README)\n")
        self.proc = start_serl(argv, log_path, token)
        self.stopping = False
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        if self.proc.wait() != 0 and not self.stopping:
            os._exit(1)  # the process failed: so does this Ray actor, and Ray restarts it

    def wait(self) -> int:
        """The process's exit code, once it has exited (0: done)."""
        return self.proc.wait()

    def pid(self) -> int:
        """The hosted process's pid (on this actor's node)."""
        return self.proc.pid

    def stop(self) -> int:
        """SIGTERM the process (a learner checkpoints on it) and wait for it."""
        self.stopping = True
        return stop_process(self.proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class RayLauncher:
    """One run's learner and actors on Ray; `supervise` and `stop` as the local launcher's."""

    def __init__(
        self,
        cfg: TrainConfig,
        address: str,
        learner_gpus: float = 0.0,
        actor_cpus: float = 1.0,
        mirror: Any = None,
        actor_resources: dict[str, float] | None = None,
    ) -> None:
        if address.startswith("ray://"):  # a Ray Client driver: the run dir would stay here
            raise ConfigError(
                f"--ray {address}: run serl train on the cluster itself, which holds the run "
                "directory: on its head with --ray auto, or from here with `ray job submit "
                "--address http://HEAD:8265 -- serl train ENV_ID --ray auto`"
            )
        ray = self.ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.cfg, self.run, self.mirror = cfg, cfg.path, mirror
        self.learner, self.actors = None, []
        self.logs = self.run / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            stop_on_sigterm = signal.getsignal(signal.SIGTERM)
            try:
                ray.init(**_init_args(address, cfg.actors, actor_cpus, actor_resources or {}))
            except ConnectionError as e:
                raise ConfigError(
                    f"--ray {address}: no Ray cluster answers ({e}); start one (ray start "
                    "--head) or run on this machine with --ray local"
                ) from e
            # ray.init takes SIGTERM (and exits at once): keep serl's, which stops the run cleanly
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, stop_on_sigterm)
        cluster = address != "local"
        host = ray.util.get_node_ip_address() if cluster else "127.0.0.1"
        # one port for the run's life: a learner Ray restarts listens where the actors look
        port = cfg.port or _free_port()
        self.address = f"{host}:{port}"
        cfg = dataclasses.replace(cfg, host="0.0.0.0" if cluster else cfg.host, port=port)
        cfg.save()
        config = json.dumps(cfg.to_json())
        token = run_token(self.run)
        node = ray.get_runtime_context().get_node_id()
        gpus = next((n["Resources"].get("GPU", 0) for n in ray.nodes() if n["NodeID"] == node), 0)
        if learner_gpus > gpus:
            self.stop()
            raise ConfigError(
                f"--learner-gpus {learner_gpus:g}: the learner runs on this node, beside its run "
                f"directory, and Ray sees {gpus:g} GPUs here; run serl train on the GPU's node"
            )
        here = NodeAffinitySchedulingStrategy(node, soft=False)
        host_actor = ray.remote(ProcessHost)
        self.learner = host_actor.options(
            num_cpus=1,
            num_gpus=learner_gpus,
            max_restarts=MAX_LEARNER_RESTARTS,
            max_task_retries=MAX_LEARNER_RESTARTS,
            max_concurrency=4,
            scheduling_strategy=here,
        ).remote(
            ["learner", "--run-dir", str(self.run.absolute())],
            str((self.logs / "learner.log").absolute()),
            token,
            resume_run=str(self.run.absolute()),
        )
        self.actors = [
            host_actor.options(
                num_cpus=actor_cpus,
                resources=actor_resources or {},  # e.g. {"robot": 1}: only a robot's node
                max_restarts=MAX_ACTOR_RESTARTS,
                max_task_retries=MAX_ACTOR_RESTARTS,
                max_concurrency=4,
                scheduling_strategy="SPREAD",  # over the cluster's nodes
            ).remote(
                actor_args(self.address, "{dir}/config.json", i, cfg.actor_nice),
                str((self.logs / f"actor-{i}.log").absolute()),
                token,
                files={"config.json": config},
            )
            for i in range(cfg.actors)
        ]

    def supervise(self) -> int:
        """Show progress until the learner exits (Ray restarting what fails); its code."""
        ray = self.ray
        learner = self.learner.wait.remote()  # retried on a restarted learner: its final code
        actors = {ref: i for i, a in enumerate(self.actors) for ref in [a.wait.remote()]}
        started, hinted = time.monotonic(), False
        with RunProgress(self.cfg, self.mirror) as progress:
            while True:
                done, _ = ray.wait([learner, *actors], num_returns=1, timeout=0.5)
                progress.show()
                if not hinted and not progress.env.n and time.monotonic() - started > 180:
                    hinted = True  # e.g. no node offers what the actors ask for
                    tqdm.write(
                        "no env step after 3 minutes: `ray status` shows what Ray cannot place "
                        "(--actor-cpus, --actor-resources)"
                    )
                if not done:
                    continue
                if done[0] is learner:
                    code = self._result(learner, "learner", self.logs / "learner.log")
                    self.stop()  # the actors are done (or the run failed): release all
                    return code
                index = actors.pop(done[0])
                self._result(done[0], f"actor {index}", self.logs / f"actor-{index}.log")

    def _result(self, ref: Any, name: str, log: Path) -> int:
        """A finished process's code; past its restarts, ProcessFailed with its log's end."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            raise ProcessFailed(
                f"{name} kept failing (Ray gave up restarting it): {crash_report(log)}"
            ) from e

    def stop(self) -> None:
        """Stop the actors and the learner (it checkpoints) and release them; shut down a Ray
        this started. (Ray kills what a killed host process still runs.)"""
        ray = self.ray
        if not ray.is_initialized():
            return  # stopped already
        hosts = [*self.actors, *([self.learner] if self.learner is not None else [])]
        for group in (self.actors, hosts[len(self.actors) :]):  # the actors, then the learner
            stops = [host.stop.remote() for host in group]  # SIGTERM: the learner checkpoints
            ray.wait(stops, num_returns=len(stops), timeout=90)
        for host in hosts:
            ray.kill(host, no_restart=True)
        if self.started_ray:
            ray.shutdown()


def _init_args(
    address: str, actors: int, actor_cpus: float, actor_resources: dict[str, float]
) -> dict[str, Any]:
    """ray.init's arguments: `local` starts a Ray on this machine with CPUs (and custom
    resources) enough to place the learner and every actor (the local launcher shares the
    cores the same way)."""
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "local":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local run reports nothing
        # Ray's workers run at nice 15, which no child can undo: the learner at 0, the actors
        # at their --actor-nice above it, as the local launcher runs them
        os.environ.setdefault("RAY_worker_niceness", "0")
        needed = 1 + actors * actor_cpus
        resources = {k: v * actors for k, v in actor_resources.items()}
        cpus = max(os.cpu_count() or 1, int(needed + 0.999))
        return {"num_cpus": cpus, "resources": resources, **quiet}
    return {"address": address, **quiet}
