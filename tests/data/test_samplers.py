"""P x K batches and per-class oversampling: the guarantees the issue lists."""

from collections import Counter

import numpy as np
import pytest

from imgexp.data.samplers import OversamplingSampler, PKBatchSampler
from imgexp.errors import ImgexpError

# 6 classes: a big one, mid ones, one smaller than K and one with a single image
COUNTS = {0: 40, 1: 13, 2: 9, 3: 8, 4: 3, 5: 1}
LABELS = np.concatenate([[c] * n for c, n in COUNTS.items()])


def epoch(sampler, e=0):
    sampler.set_epoch(e)
    return list(sampler)


def test_pk_batches_cover_every_image_with_distinct_classes_of_k():
    sampler = PKBatchSampler(LABELS, batch_size=16, samples_per_class=4, seed=1)
    batches = epoch(sampler)
    assert len(batches) == len(sampler)
    seen = Counter(i for b in batches for i in b)
    assert set(seen) == set(range(len(LABELS)))  # an epoch covers every train image
    for batch in batches:
        classes = Counter(LABELS[batch].tolist())
        assert all(n == 4 for n in classes.values())  # K images of each class
        assert len(classes) <= 4  # at most P = 16 // 4 classes, never twice the same
        assert len(classes) >= 2  # every batch has negatives
    # chunks per class = ceil(n / K); batches = ceil(total chunks / P)
    chunks = sum(-(-n // 4) for n in COUNTS.values())
    assert len(batches) == max(-(-chunks // 4), -(-40 // 4))


def test_small_classes_are_padded_by_cycling_shuffled_images_evenly():
    batches = epoch(PKBatchSampler(LABELS, batch_size=16, samples_per_class=4, seed=2))
    uses = Counter(i for b in batches for i in b)
    for c, n in COUNTS.items():
        members = np.flatnonzero(LABELS == c)
        counts = [uses[i] for i in members]
        # each image used once before any repeats: use counts differ by at most one
        assert max(counts) - min(counts) <= 1
        assert sum(counts) == -(-n // 4) * 4
    single = np.flatnonzero(LABELS == 5)[0]
    batch = next(b for b in batches if single in b)
    assert batch.count(single) == 4  # K augmented copies: the anchor has positives


def test_a_class_chunks_land_in_different_batches():
    labels = np.repeat(np.arange(20), 8)  # 20 classes x 2 chunks of K = 4
    batches = epoch(PKBatchSampler(labels, batch_size=16, samples_per_class=4, seed=3))
    assert len(batches) == 10 and all(len(b) == 16 for b in batches)
    batches_of = {c: [i for i, b in enumerate(batches) if c in labels[b]] for c in range(20)}
    assert all(len(found) == 2 for found in batches_of.values())  # two chunks, two batches


def test_epochs_differ_and_repeat_with_the_seed():
    a = PKBatchSampler(LABELS, batch_size=16, samples_per_class=4, seed=5)
    b = PKBatchSampler(LABELS, batch_size=16, samples_per_class=4, seed=5)
    assert epoch(a, 0) == epoch(b, 0)
    assert epoch(a, 1) != epoch(a, 0)


def test_pk_with_min_per_class_oversamples_small_classes():
    sampler = PKBatchSampler(LABELS, batch_size=16, samples_per_class=4, min_per_class=12)
    per_class = Counter(LABELS[i] for b in epoch(sampler) for i in b)
    assert per_class[5] == 12 and per_class[4] == 12
    assert per_class[0] == 40 and per_class[1] == 16


def test_ddp_ranks_split_the_same_plan(monkeypatch):
    sampler = PKBatchSampler(LABELS, batch_size=16, samples_per_class=4, seed=7)
    plan = sampler.plan(0)
    shards = []
    for rank in range(2):
        monkeypatch.setattr("imgexp.data.samplers._rank_and_world", lambda r=rank: (r, 2))
        shards.append(epoch(sampler))
        assert len(shards[-1]) == len(sampler) == -(-len(plan) // 2)
    assert shards[0] + shards[1] != plan  # interleaved, not halves
    assert sorted(map(tuple, shards[0] + shards[1])) == sorted(
        map(tuple, plan + plan[:len(plan) % 2]))


def test_pk_bad_inputs_are_clear():
    with pytest.raises(ImgexpError, match="larger than every train class"):
        PKBatchSampler(LABELS, batch_size=128, samples_per_class=41)
    with pytest.raises(ImgexpError, match="K >= 2"):
        PKBatchSampler(LABELS, batch_size=16, samples_per_class=1)
    with pytest.raises(ImgexpError, match="at least 2 train classes"):
        PKBatchSampler(np.zeros(10, int), batch_size=8, samples_per_class=4)
    with pytest.raises(ImgexpError, match="batch_size >= 8"):
        PKBatchSampler(LABELS, batch_size=6, samples_per_class=4)


def test_more_classes_per_batch_than_exist_caps_p():
    sampler = PKBatchSampler(LABELS, batch_size=64, samples_per_class=4)
    assert sampler.p == 6
    assert max(len(b) for b in epoch(sampler)) <= 24


def test_oversampling_sampler_repeats_small_classes_only():
    sampler = OversamplingSampler(LABELS, min_per_class=10, seed=0)
    order = epoch(sampler)
    assert len(order) == len(sampler) == 40 + 13 + 10 + 10 + 10 + 10
    per_class = Counter(LABELS[order].tolist())
    assert per_class == {0: 40, 1: 13, 2: 10, 3: 10, 4: 10, 5: 10}
    uses = Counter(order)
    assert set(uses) == set(range(len(LABELS)))
    small = [uses[i] for i in np.flatnonzero(LABELS == 4)]
    assert max(small) - min(small) <= 1


def test_datamodule_builds_pk_and_oversampling_loaders(digits_root):
    from imgexp.data import ImageDataModule

    dm = ImageDataModule(root=str(digits_root), image_size=8, batch_size=20, sampler="pk",
                         samples_per_class=5)
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    assert Counter(batch["label"].tolist()) == dict.fromkeys(set(batch["label"].tolist()), 5)
    assert len(batch["label"]) == 20
    assert sum(len(b) for b in loader.batch_sampler) >= len(dm.datasets["train"])
    gallery = dm.gallery_dataloader()
    assert len(gallery.dataset) == len(dm.datasets["train"])
    assert gallery.dataset.augment is None

    over = ImageDataModule(root=str(digits_root), image_size=8, batch_size=20,
                           min_per_class=200)
    assert len(over.train_dataloader().sampler) == 200 * 10
    with pytest.raises(ImgexpError, match="min_per_class"):
        ImageDataModule(root=str(digits_root), sampler="balanced", min_per_class=5)
    with pytest.raises(ImgexpError, match="pk"):
        ImageDataModule(root=str(digits_root), sampler="pq")
