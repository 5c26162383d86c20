"""The pieces of a DDP run that need no second process (tests/train/test_ddp.py runs two)."""

import logging

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from imgexp.models.embedding import first_occurrences
from imgexp.training.ddp import adapt_trainer_config


def test_gathered_padded_shards_give_each_image_once_in_order():
    data = list(range(7))
    shards = [list(DistributedSampler(data, num_replicas=2, rank=r, shuffle=False))
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4  # rank 1 padded with a repeat of image 0
    gathered = torch.tensor(shards).flatten()  # what all_gather(...).flatten(0, 1) gives
    assert gathered[first_occurrences(gathered)].tolist() == data


def config(**trainer):
    return OmegaConf.create({"trainer": {"strategy": "ddp", "sync_batchnorm": True, **trainer},
                             "data": {"sampler": "pk"}})


def test_ddp_preset_on_cpu_drops_sync_batchnorm_and_keeps_pk_sharding():
    cpu, gpu = config(accelerator="cpu"), config(accelerator="gpu")
    adapt_trainer_config(cpu)
    adapt_trainer_config(gpu)
    assert cpu.trainer.sync_batchnorm is False and gpu.trainer.sync_batchnorm is True
    assert cpu.trainer.use_distributed_sampler is False  # P x K shards its batches itself


def test_one_process_config_is_left_alone():
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu"}, "data": {"sampler": "pk"}})
    adapt_trainer_config(cfg)
    assert "use_distributed_sampler" not in cfg.trainer


@pytest.mark.parametrize("native", [False, True])
def test_bf16_training_on_a_cpu_without_it_warns(native, monkeypatch, caplog):
    """The ddp preset trains in bf16-mixed: on a CPU that only emulates bf16 that is slower
    than fp32, which inference already said and training did not."""
    import imgexp.training.ddp as ddp

    monkeypatch.setattr(ddp, "bf16_native", lambda device: native)
    cfg = config(accelerator="cpu")
    cfg.trainer.precision = "bf16-mixed"
    with caplog.at_level(logging.WARNING, logger="imgexp.training.ddp"):
        adapt_trainer_config(cfg)
    assert ("emulated" in caplog.text) is not native
    assert cfg.trainer.precision == "bf16-mixed"  # said, not changed
