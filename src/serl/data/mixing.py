"""Demo/online batch mixing (the RLPD recipe) and a background prefetch iterator."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from serl.data.schema import Batch, as_bits

T = TypeVar("T")


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


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Iterator[T], Generic[T]):
    """Calls `produce()` in a background thread and yields its results in order.

    At most `depth` results wait in the queue. An exception raised by `produce` is re-raised
    by `next()` in the consumer (after the results made before it), then the iterator stops.
    `close()` (or leaving a `with` block) stops the thread and waits for it; it is idempotent.
    """

    def __init__(
        self, produce: Callable[[], T], depth: int = 2, name: str = "serl-prefetch"
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth: must be >= 1, got {depth}")
        self._produce = produce
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: Any = self._produce()
            except BaseException as error:  # handed to the consumer, who decides
                item = _Failure(error)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return

    def __next__(self) -> T:
        while not self._done:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    break  # closed from another thread
                continue
            if isinstance(item, _Failure):
                self.close()
                raise item.error
            return item
        raise StopIteration

    def close(self) -> None:
        """Stop the producer thread and drop what it prefetched."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prefetch_batches(
    sampler: Sampler,
    batch_size: int,
    rng: np.random.Generator,
    depth: int = 2,
    transform: Callable[[Batch], Any] | None = None,
) -> Prefetcher[Any]:
    """Sample batches in a background thread; `transform` (e.g. jax.device_put) runs there too.

    The thread owns `rng` from now on (numpy Generators are not thread-safe).
    """

    def produce() -> Any:
        batch = sampler.sample(batch_size, rng)
        return batch if transform is None else transform(batch)

    return Prefetcher(produce, depth=depth)
