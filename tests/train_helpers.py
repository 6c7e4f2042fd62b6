"""Settings shared by the tests that run a whole (tiny) `serl train`: 40 env steps, one eval."""

SHORT_RUN = {
    "env_steps": 40,
    "random_steps": 10,
    "training_starts": 10,
    "updates_per_env_step": 0.5,
    "eval_every": 40,
    "eval_episodes": 1,
    "pace_slack": 20,
}
