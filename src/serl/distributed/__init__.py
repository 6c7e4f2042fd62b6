"""Actor-learner transport over gRPC."""
