"""Demo/online batch mixing (the RLPD recipe)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from serl.data.schema import Batch, as_bits


class Sampler(Protocol):
    """Anything that samples batches: a buffer or a MixedSampler."""

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Sample a batch of `batch_size` transitions."""
        ...


def demo_rows(batch_size: int, demo_fraction: float) -> np.ndarray:
    """Boolean mask of the rows drawn from demos: round(B * fraction) rows, evenly spread.

    Spreading (not concatenating) keeps the fraction in every contiguous slice, so a learner
    that splits a batch into minibatches (high UTD) gives each the configured mix.
    """
    n_demo = int(np.floor(batch_size * demo_fraction + 0.5))
    r = np.arange(batch_size)
    return (r + 1) * n_demo // batch_size > r * n_demo // batch_size


class MixedSampler:
    """Draws `demo_fraction` of each batch from `demo` and the rest from `online` (RLPD: 0.5)."""

    def __init__(
        self, demo: Sampler, online: Sampler, demo_fraction: float = 0.5, mark_demos: bool = False
    ) -> None:
        if not 0.0 <= demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction: must be in [0, 1], got {demo_fraction}")
        self.demo, self.online, self.demo_fraction = demo, online, float(demo_fraction)
        self.mark_demos = mark_demos  # add batch["demo"]: 1.0 on rows drawn from the demos

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Sample a mixed batch; rows from the two sources are interleaved (see `demo_rows`)."""
        mask = demo_rows(batch_size, self.demo_fraction)
        n_demo = int(mask.sum())
        if n_demo == batch_size:
            batch = self.demo.sample(batch_size, rng)
        elif n_demo == 0:
            batch = self.online.sample(batch_size, rng)
        else:
            demo = self.demo.sample(n_demo, rng)
            online = self.online.sample(batch_size - n_demo, rng)
            batch = _interleave(demo, online, mask)
        if self.mark_demos:
            batch["demo"] = mask.astype(np.float32)
        return batch


def _interleave(a: Any, b: Any, mask: np.ndarray) -> Any:
    if isinstance(a, dict):
        return {k: _interleave(a[k], b[k], mask) for k in a}
    out = np.empty((len(mask), *a.shape[1:]), a.dtype)
    as_bits(out)[mask] = as_bits(a)
    as_bits(out)[~mask] = as_bits(b)
    return out
