"""Learner and actor loops, evaluation, checkpoints, logging and the local launcher."""
