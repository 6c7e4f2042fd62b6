"""Settings shared by the tests that run a whole tiny `serl train` (a DrQ, 40 env steps)."""

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
