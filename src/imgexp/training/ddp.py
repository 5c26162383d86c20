"""Settings of a multi-process run that depend on where it runs.

The `trainer=ddp` preset is written for GPUs; the same preset on CPU (gloo, e.g. to test the
distributed code paths) must drop what only GPUs do, and the P x K batch sampler shards its
batches over the ranks itself, so Lightning must not wrap it in a DistributedSampler.
"""

import logging

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def is_rank_zero() -> bool:
    """True in the process that writes the run's files (the only one without DDP)."""
    return rank_zero_only.rank == 0


def adapt_trainer_config(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    distributed = "ddp" in str(trainer.get("strategy") or "")
    with open_dict(cfg):
        if trainer.get("sync_batchnorm") and trainer.get("accelerator") == "cpu":
            log.info("trainer.sync_batchnorm is for GPUs: on CPU each rank normalises its batch")
            trainer.sync_batchnorm = False
        if distributed and cfg.get("data", {}).get("sampler") == "pk" \
                and trainer.get("use_distributed_sampler", True):
            trainer.use_distributed_sampler = False  # PKBatchSampler shards by rank itself
