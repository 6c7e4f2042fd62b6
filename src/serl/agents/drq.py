"""DrQ: SAC on pixels with per-camera encoders (shared by actor and critic, trained through the
critic only) and random-shift augmentation of observations and next observations.

The learner step is SAC's (`serl.agents.sac.update`); DrQ differs in its config: an image
encoder, the original's DrQ defaults (discount 0.96, critic_actor_ratio 4) and `shift_pad`.
With cached features (`EncoderConfig.cache_features`) the batches carry feature maps, which
`feature_shift_pad` shifts by whole cells instead (0: no augmentation).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax

from serl.agents.augment import shift_observations
from serl.agents.common import AgentSpec, EncoderConfig
from serl.agents.sac import SACConfig


@dataclasses.dataclass(frozen=True)
class DrQConfig(SACConfig):
    """SAC config plus image augmentation; defaults are the original's DrQ (ResNet-10, frozen)."""

    agent: ClassVar[str] = "drq"

    discount: float = 0.96
    critic_actor_ratio: int = 4
    encoder: EncoderConfig | None = EncoderConfig(freeze_backbone=True)  # noqa: RUF009 (hashable)
    shift_pad: int = 4  # pixels
    feature_shift_pad: int = 0  # feature-map cells, for cached features

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder is None:
            raise ValueError("DrQ needs an image encoder config")

    def augment(self, batch: dict[str, Any], key: jax.Array, spec: AgentSpec) -> dict[str, Any]:
        """Random shift (pad, crop back) of every camera, obs and next_obs apart: of the pixels
        by `shift_pad`, or of cached feature maps by `feature_shift_pad` cells."""
        pad = self.feature_shift_pad if self.encoder.cache_features else self.shift_pad
        return shift_observations(batch, key, spec.image_keys(self.encoder), pad)
