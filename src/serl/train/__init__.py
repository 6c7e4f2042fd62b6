"""Training: the env loop, recording, the learner and actor processes and their launcher,
evaluation, reward models, reset-free training (ARCHITECTURE.md maps each job to its module)."""
