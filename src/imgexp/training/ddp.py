"""Settings of a multi-process run that depend on where it runs.

The `trainer=ddp` preset is written for GPUs; the same preset on CPU (gloo, e.g. to test the
distributed code paths) must drop what only GPUs do, and the P x K batch sampler shards its
batches over the ranks itself, so Lightning must not wrap it in a DistributedSampler.
"""

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict, read_write

from imgexp.device import bf16_native

log = logging.getLogger(__name__)
# what Lightning's launcher leaves in os.environ after starting ranks 1..: with LOCAL_RANK set,
# the next fit in this process would believe its ranks were started by someone else
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def is_rank_zero() -> bool:
    """True in the process that writes the run's files (the only one without DDP)."""
    return rank_zero_only.rank == 0


def is_ddp(trainer: DictConfig) -> bool:
    return "ddp" in str(trainer.get("strategy") or "")


def adapt_trainer_config(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    distributed = is_ddp(trainer)
    with open_dict(cfg):
        if trainer.get("sync_batchnorm") and trainer.get("accelerator") == "cpu":
            log.info("trainer.sync_batchnorm is for GPUs: on CPU each rank normalises its batch")
            trainer.sync_batchnorm = False
        if str(trainer.get("precision", "")).startswith("bf16") \
                and trainer.get("accelerator") == "cpu" and not bf16_native(torch.device("cpu")):
            # as inference says it (imgexp.device): the same warning for training
            log.warning("trainer.precision=%s on a CPU without native bf16: emulated, usually "
                        "slower than fp32 (trainer.precision=32-true)", trainer.precision)
        if distributed and cfg.get("data", {}).get("sampler") == "pk" \
                and trainer.get("use_distributed_sampler", True):
            trainer.use_distributed_sampler = False  # PKBatchSampler shards by rank itself


@contextmanager
def ddp_job_of_a_sweep(trainer: DictConfig) -> Iterator[None]:
    """One DDP run as a job of a multirun (an Optuna trial), started in the sweep's process.

    Lightning starts ranks 1.. by running this process's command line again with
    `hydra.run.dir` added: in a multirun that command is the whole sweep, so every rank 1 would
    be a sweep of its own, taking new trials and training them as rank 1 of this one. Inside
    this block the command line is this job's own overrides (its `optuna_trial` included) and
    the run directory the job's; afterwards the command line, the launcher's environment and
    the process group are undone, so the sweep's next trial launches its own ranks.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not (is_ddp(trainer) and HydraConfig.initialized()
            and HydraConfig.get().mode == RunMode.MULTIRUN):
        yield
        return
    import torch.distributed

    hydra = HydraConfig.get()
    argv, env = sys.argv, {key: os.environ.get(key) for key in LAUNCH_ENV}
    sys.argv = [argv[0], *hydra.overrides.task]
    with read_write(hydra.run):
        hydra.run.dir = hydra.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
