"""Settings shared by the tests that run a whole tiny `serl train` (a DrQ, 40 env steps)."""

import socket


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# a DrQ small enough to compile and step in seconds
TINY_DRQ = {
    "hidden_dims": [16, 16],
    "num_qs": 2,
    "batch_size": 8,
    "critic_actor_ratio": 1,
    "encoder": {"bottleneck_dim": 8, "proprio_dim": 8},
}

SHORT_RUN = {
    "env_steps": 40,
    "random_steps": 10,
    "training_starts": 10,
    "updates_per_env_step": 0.5,
    "eval_every": 40,
    "eval_episodes": 1,
    "pace_slack": 20,
}

# a VICE as small: no mixup or gradient penalty, which double the compile time (test_vice
# covers them)
TINY_VICE = {
    **TINY_DRQ,
    "classifier": {
        "batch_size": 8,
        "image_size": None,
        "hidden_dims": [8],
        "encoder": {"bottleneck_dim": 8},
        "mixup_alpha": 0.0,
        "grad_penalty": 0.0,
    },
}
