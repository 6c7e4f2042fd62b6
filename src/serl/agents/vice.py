"""VICE: DrQ whose reward is a success classifier trained online against the agent's own frames.

Each learner step (one jit): the classifier takes a step on goal examples (positives) versus
the batch's next observations (negatives: what the agent reaches), with label smoothing,
mixup and an input-gradient penalty; the batch's rewards are then recomputed by the updated
classifier and DrQ takes its usual step. Both parts come back in the returned state (the
original's VICE returned the old agent: its classifier never learned).

Batch: the DrQ batch plus "goal_observations", {camera: [M, ...]} success examples.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from serl.agents import classifier as clf
from serl.agents import sac
from serl.agents.classifier import ClassifierConfig, ClassifierState
from serl.agents.common import AgentSpec, Params, as_float_batch
from serl.agents.drq import DrQConfig
from serl.agents.policy import ActorState

REWARDS = ("binary", "prob", "log_prob")


@dataclasses.dataclass(frozen=True)
class VICEConfig(DrQConfig):
    """DrQ config plus the online classifier and how its output becomes the reward.

    reward "binary": 1 when p > `threshold`; "prob": p; "log_prob": log p (VICE's paper
    form, clipped at `min_log_prob`). The classifier defaults to VICE's regularisation:
    label smoothing 0.2, mixup (alpha 1), gradient penalty 10.
    """

    agent: ClassVar[str] = "vice"

    classifier: ClassifierConfig = ClassifierConfig(  # noqa: RUF009 (frozen, hashable)
        label_smoothing=0.2, mixup_alpha=1.0, grad_penalty=10.0
    )
    reward: str = "binary"
    threshold: float = 0.5
    min_log_prob: float = -10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")


class VICEState(struct.PyTreeNode):
    """The DrQ agent and the classifier that rewards it."""

    agent: sac.SACState
    classifier: ClassifierState

    @property
    def config(self) -> VICEConfig:
        """The VICE config (the agent's)."""
        return self.agent.config

    @property
    def spec(self) -> AgentSpec:
        """The agent's observation/action spec."""
        return self.agent.spec

    @property
    def frozen(self) -> Params:
        """The agent's frozen parameters (what an actor receives once)."""
        return self.agent.frozen

    def actor_state(self) -> ActorState:
        """What an actor needs to act (the agent's policy)."""
        return self.agent.actor_state()


def classifier_rewards(
    config: VICEConfig, classifier: ClassifierState, observations: Mapping[str, Any]
) -> jax.Array:
    """The reward the classifier assigns to (next) observations."""
    logit = clf.logits(classifier, observations)
    if config.reward == "binary":
        return (jax.nn.sigmoid(logit) > config.threshold).astype(jnp.float32)
    if config.reward == "prob":
        return jax.nn.sigmoid(logit)
    return jnp.maximum(jax.nn.log_sigmoid(logit), config.min_log_prob)


def agent_rows(batch: Mapping[str, Any], n: int) -> jax.Array:
    """Indices of `n` batch rows the agent collected: demo rows (a demo ends in goal frames)
    only if there are too few others."""
    demo = batch.get("demo", jnp.zeros(batch["actions"].shape[0]))
    return jnp.argsort(demo, stable=True)[:n]


@functools.partial(jax.jit, donate_argnums=0)
def update(state: VICEState, batch: Mapping[str, Any]) -> tuple[VICEState, dict[str, jax.Array]]:
    """One VICE step: classifier step, rewards relabelled by it, DrQ step. Rebind the state."""
    config = state.config
    goals = batch["goal_observations"]
    cams = state.classifier.spec.keys
    n_goal = goals[cams[0]].shape[0]
    nxt = batch["next_observations"]
    negatives = agent_rows(batch, min(n_goal, nxt[cams[0]].shape[0]))
    # Positives: the goal examples; negatives: frames the agent itself reached.
    images = {k: jnp.concatenate([goals[k], nxt[k][negatives]], axis=0) for k in cams}
    labels = jnp.concatenate([jnp.ones(n_goal), jnp.zeros(len(negatives))])
    classifier, c_metrics = clf.update_step(state.classifier, images, labels)

    agent_batch = as_float_batch({k: v for k, v in batch.items() if k != "goal_observations"})
    rewards = jax.lax.stop_gradient(classifier_rewards(config, classifier, nxt))
    agent_batch["rewards"] = rewards
    agent, a_metrics = sac.update.__wrapped__(state.agent, agent_batch)
    metrics = {**a_metrics, **c_metrics, "vice/reward_mean": jnp.mean(rewards)}
    return VICEState(agent=agent, classifier=classifier), metrics


def init_state(
    config: VICEConfig, spec: AgentSpec, seed: int, load_pretrained: bool = True
) -> VICEState:
    """Freshly initialised state from a spec (`load_pretrained=False`: pure, for restoring)."""
    agent = sac.init_state(config, spec, seed, load_pretrained)
    example = {k: v[0] for k, v in spec.example().items()}
    cls_spec = clf.classifier_spec(example, config.classifier.image_keys)
    classifier = clf.init_state(config.classifier, cls_spec, seed + 1, load_pretrained)
    return VICEState(agent=agent, classifier=classifier)
