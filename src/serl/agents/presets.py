"""Named agent configs: the original's SAC-state and DrQ recipes, RLPD, BC.

Data-side parts of a recipe (random steps, replay capacity, 50/50 demo mixing for RLPD) are
the training layer's; see REFERENCE.md. A learner step samples `config.sample_size`
transitions (batch_size * critic_actor_ratio for SAC/DrQ).
"""

from __future__ import annotations

import dataclasses

from serl.agents.bc import BCConfig
from serl.agents.common import EncoderConfig
from serl.agents.drq import DrQConfig
from serl.agents.gripper import GripperSACConfig
from serl.agents.sac import SACConfig
from serl.agents.vice import VICEConfig

# SAC from demonstrations (the pick-cube default): HIL-SERL's 2 critics and discount 0.97, the
# original's 8 critic steps per actor step, plus behaviour cloning (weight 2.5) of the batch's
# demo rows in the actor loss. Env steps to 90% over 3 seeds (bench/results/
# learn_pick_cube_*.json): 17k / 14k / 12k with 2 critic steps and weight 1; 11k / 15k / 12k with
# 4; 9k / 11k / 11k with 8; 9k / 10k / 11k with 8 and weight 2.5. Ten critics (min over 2) with 4
# critic steps learnt no faster on seed 0 at 4x the update's cost. More critic steps cost update
# time: the run stays limited by its updates (bench/results/loop_efficiency.json).
SAC_DEMO = SACConfig(num_qs=2, num_min_qs=2, discount=0.97, critic_actor_ratio=8, bc_weight=2.5)

PRESETS: dict[str, SACConfig | BCConfig] = {
    # The original's state SAC: MLP 256x256 LayerNorm tanh, 10 critics min over 2, discount
    # 0.99, tau 0.005, Adam 3e-4, temperature 0.01, target entropy -|A|/2, 8 critic minibatches
    # of 256 per learner step.
    "sac_state": SACConfig(),
    # The original's DrQ: ResNet-10 (frozen; give it ImageNet weights with
    # `encoder.pretrained_path`), spatial learned embeddings (8), dropout 0.1, bottleneck 256,
    # proprio 64, discount 0.96, critic_actor_ratio 4, random shift pad 4.
    "drq": DrQConfig(),
    # DrQ with the original's small conv encoder, trained from scratch (runs with no weight file).
    "drq_small": DrQConfig(
        encoder=EncoderConfig(
            backbone="small", pooling="mean", dropout_rate=0.0, freeze_backbone=False
        )
    ),
    # RLPD: 10 LayerNorm critics min over 2, ReLU, temperature 1.0 with entropy backup, UTD 20,
    # actor on the last minibatch. The 50/50 demo/online batch is built by the data layer.
    "rlpd": SACConfig(
        activation="relu",
        actor_layer_norm=False,
        init_temperature=1.0,
        backup_entropy=True,
        critic_actor_ratio=20,
    ),
    "sac_demo": SAC_DEMO,
    # sac_demo on cameras: a frozen ImageNet MobileNetV2 (stride 16: 8x8x96 per 128x128 frame)
    # whose features are computed once per frame and stored (`cache_features`); only the head
    # trains (spatial learned embeddings, a 128-d bottleneck per camera, proprio, MLPs), one
    # critic step per actor step on minibatches of 128 (bench/results/learn_pick_cube_vision.json).
    # The update is the run's critical path on a CPU: the 128-d bottleneck made it ~20% cheaper
    # than 256-d, minibatches of 128 ~45% cheaper than 256 (~34 env steps/s against ~21); with
    # 128 the 3 seeds took 26k / 20k / 22k env steps to 90% in the last bench run (26k / 18k /
    # 26k in the one before; 256: 20k / 18k / 24k), 2.19x the state recipe's median wall time.
    # Cutting the backbone at stride 8 (16x16x32) learnt far slower and ran no faster.
    # `encode_once` made the update cheaper too, but with it seed 1 failed to learn, twice (30%
    # at 30k env steps; 15% at 22k with the 128-d bottleneck).
    "drq_cached": DrQConfig(
        **{
            f.name: getattr(SAC_DEMO, f.name)
            for f in dataclasses.fields(SAC_DEMO)
            if f.name not in ("encoder", "critic_actor_ratio", "batch_size")
        },
        critic_actor_ratio=1,
        batch_size=128,
        encoder=EncoderConfig(
            backbone="mobilenet_v2",
            feature_stride=16,
            pretrained_path="imagenet",
            freeze_backbone=True,
            cache_features=True,
            dropout_rate=0.0,
            bottleneck_dim=128,
        ),
    ),
    # sac_demo for runs with interventions: the cloning is Q-filtered, because corrections give
    # opposite labels (open / close) close together, which unfiltered cloning averages into
    # neither (bench/results/hil_pick_cube.json, measured with sac_demo's earlier 2 critic steps
    # per actor step and cloning weight 1, kept here).
    "sac_hil": dataclasses.replace(SAC_DEMO, bc_q_filter=True, critic_actor_ratio=2, bc_weight=1.0),
    "bc": BCConfig(),
    # HIL-SERL's gripper learning: the state SAC for the arm plus a discrete close / stay /
    # open critic (double DQN) for the action's last entry. Pair with `GripperPenalty`.
    "sac_gripper": GripperSACConfig(),
    # VICE on drq_small: a success classifier (label smoothing 0.2, mixup, gradient penalty 10)
    # trained online on goal examples vs the agent's frames; binary reward at p > 0.5. Its
    # batches carry "goal_observations" (`serl train --agent vice` samples them per step).
    "vice_small": VICEConfig(
        encoder=EncoderConfig(
            backbone="small", pooling="mean", dropout_rate=0.0, freeze_backbone=False
        )
    ),
}
