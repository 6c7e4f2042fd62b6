"""The `serl` command: one subcommand per job a user runs.

`serl train` and `serl train-fb` take their options from the training configs themselves
(`serl.cli.train`); they import JAX, so they are dispatched before the light subcommands are
parsed.
"""

from __future__ import annotations

import sys

import tyro

from serl.cli.recording import demos, record_demos, record_transitions, train_classifier
from serl.cli.runs import actor, evaluate, learner
from serl.cli.tools import render, robot_server, weights


def train() -> None:
    """Train on an env with its recipe: `serl train ENV_ID --help` lists every option."""


def train_fb() -> None:
    """Reset-free forward/backward training: `serl train-fb --help` lists every option."""


COMMANDS = {
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
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `serl` command."""
    from serl.cache import enable_compilation_cache

    enable_compilation_cache()  # before anything compiles: every serl process shares it
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from serl.cli.train import run_train

        return run_train(argv[1:])
    if argv[:1] == ["train-fb"]:
        from serl.cli.train import run_train_fb

        return run_train_fb(argv[1:])
    code = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="serl")
    return code if isinstance(code, int) else 0


def entry_point() -> None:
    """Console-script entry: exit with the subcommand's code; a user's mistake in one line."""
    import os
    import signal

    from serl.errors import UserError

    # SIGTERM (kill, a job scheduler) as Ctrl-C: `serl train` stops the processes it started
    # (the learner checkpoints) instead of leaving them running; learner and actor set their own
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = main()
    except UserError as e:
        if os.environ.get("SERL_DEBUG"):
            raise
        print(f"serl: {e}\n(SERL_DEBUG=1 shows the traceback)", file=sys.stderr)
        code = 1
    raise SystemExit(code)
