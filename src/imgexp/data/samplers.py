"""Train samplers: a shuffle and class-balanced draws for softmax training, P x K batches and
per-class oversampling for metric learning.

All draw a fresh random order every epoch (seeded by seed + the epoch given to set_epoch, never
by how often they were iterated — a loader with workers iterates its sampler twice — so runs
repeat and a resumed run continues the same sequence) and never touch the files: an image repeated in
an epoch is decoded again and augmented on the fly. SeededDraws pairs each draw with the seed
of its augmentation, from (seed, epoch, position in the epoch): a draw is augmented the same
whichever loader worker runs it and whatever ran before, so a resumed run has no augmentation
state to restore.
"""

import logging

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler

from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)


def cycled(indices: np.ndarray, length: int) -> np.ndarray:
    """`indices` repeated in order up to `length`: each is used once before any repeats."""
    return np.resize(indices, length) if length > len(indices) else indices


def class_indices(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, epoch]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class ShuffleSampler(RandomSampler):
    """torch's shuffle drawn from (seed, epoch) instead of the global RNG, which a resumed run
    does not restore. Lightning calls set_epoch before each epoch."""

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source, generator=epoch_generator(seed, 0))
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = epoch_generator(self.seed, self.epoch)  # each iter() the same draw
        return super().__iter__()


class BalancedSampler(WeightedRandomSampler):
    """Classes drawn equally often (with replacement), from (seed, epoch) like ShuffleSampler."""

    def __init__(self, labels, seed: int = 0):
        labels = np.asarray(labels)
        weights = torch.as_tensor(1.0 / np.bincount(labels)[labels], dtype=torch.double)
        super().__init__(weights, num_samples=len(labels), replacement=True,
                         generator=epoch_generator(seed, 0))
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = epoch_generator(self.seed, self.epoch)  # each iter() the same draw
        return super().__iter__()


class OversamplingSampler(Sampler[int]):
    """Every index once per epoch, plus repeats of the images of classes smaller than
    `min_per_class` (cycled through a shuffled order) so each class reaches that count."""

    def __init__(self, labels, min_per_class: int, seed: int = 0):
        self.by_class = class_indices(np.asarray(labels))
        self.min_per_class, self.seed, self.epoch = int(min_per_class), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(max(len(ix), self.min_per_class) for ix in self.by_class.values())

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = [cycled(rng.permutation(ix), max(len(ix), self.min_per_class))
                 for ix in self.by_class.values()]
        return iter(rng.permutation(np.concatenate(order)).tolist())


class PKBatchSampler(Sampler[list[int]]):
    """Batches of P classes x K images, covering every train image each epoch.

    Each class is shuffled and cut into chunks of K; the last chunk (or a class smaller than
    K) is filled by cycling the class's shuffled images, so every image is used once before
    any repeats and a one-image class gives K augmented copies (an anchor always has a
    positive). Chunks are dealt round-robin over ceil(chunks / P) batches, so a class never
    appears twice in a batch and its chunks spread over the epoch instead of coming back to
    back. Under DDP each rank takes every world_size-th batch (same plan on every rank).
    """

    def __init__(self, labels, batch_size: int, samples_per_class: int,
                 min_per_class: int = 0, seed: int = 0):
        labels = np.asarray(labels)
        self.by_class = class_indices(labels)
        k = int(samples_per_class)
        largest = max((len(ix) for ix in self.by_class.values()), default=0)
        if k < 2:
            raise ImgexpError(f"data.samples_per_class={k}: P x K batches need K >= 2 "
                              "images per class so that anchors have positives")
        if k > largest:
            raise ImgexpError(f"data.samples_per_class={k} is larger than every train class "
                              f"(the largest has {largest} images): lower it to <= {largest}")
        if len(self.by_class) < 2:
            raise ImgexpError("data.sampler=pk needs at least 2 train classes (negatives)")
        p = batch_size // k
        if p < 2:
            raise ImgexpError(f"data.batch_size={batch_size} holds fewer than 2 classes of "
                              f"data.samples_per_class={k}: use batch_size >= {2 * k}")
        if p > len(self.by_class):
            log.warning("data.batch_size=%d / K=%d asks for %d classes per batch but there are "
                        "%d: batches hold %d images", batch_size, k, p, len(self.by_class),
                        len(self.by_class) * k)
            p = len(self.by_class)
        self.p, self.k = p, k
        self.min_per_class, self.seed, self.epoch = int(min_per_class), seed, 0
        self.chunks = {c: -(-max(len(ix), self.min_per_class) // k)
                       for c, ix in self.by_class.items()}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _num_batches(self) -> int:
        return max(-(-sum(self.chunks.values()) // self.p), max(self.chunks.values()))

    def __len__(self) -> int:
        _, world = _rank_and_world()
        return -(-self._num_batches() // world)

    def plan(self, epoch: int) -> list[list[int]]:
        """All batches of one epoch (before DDP sharding)."""
        rng = np.random.default_rng([self.seed, epoch])
        n_batches = self._num_batches()
        batches: list[list[int]] = [[] for _ in range(n_batches)]
        slot = int(rng.integers(n_batches))
        for c in rng.permutation(list(self.by_class)):
            ix, n_chunks = self.by_class[int(c)], self.chunks[int(c)]
            filled = cycled(rng.permutation(ix), n_chunks * self.k)
            for chunk in filled.reshape(n_chunks, self.k):
                batches[slot % n_batches].extend(chunk.tolist())
                slot += 1
        return [batches[i] for i in rng.permutation(n_batches)]

    def __iter__(self):
        rank, world = _rank_and_world()
        batches = self.plan(self.epoch)
        # every rank gets the same number of batches: pad by wrapping around
        batches += batches[:(-len(batches)) % world]
        return iter(batches[rank::world])


# keeps the augmentation seeds apart from the orders epoch_generator draws from (seed, epoch)
AUGMENT_STREAM = 1


class SeededDraws(Sampler):
    """The draws of `sampler` (indices, or batches of indices for a batch sampler) as
    (index, augmentation seed) pairs, the seed from (seed, epoch, position in the epoch): an
    image drawn twice in an epoch is augmented twice differently, the same draw the same way
    on every run. The wrapped sampler is `.sampler` so that Lightning's set_epoch reaches a
    batch sampler too (it looks for loader.batch_sampler.sampler)."""

    def __init__(self, sampler, seed: int, batches: bool = False):
        self.sampler, self.seed, self.batches = sampler, seed, batches

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        epoch, draws = self.sampler.epoch, list(self.sampler)
        n = sum(map(len, draws)) if self.batches else len(draws)
        seeds = iter(np.random.SeedSequence([self.seed, epoch, AUGMENT_STREAM])
                     .generate_state(n).tolist())
        if self.batches:
            return iter([[(i, next(seeds)) for i in batch] for batch in draws])
        return iter([(i, next(seeds)) for i in draws])
