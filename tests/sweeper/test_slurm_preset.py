"""`hydra/launcher=slurm`: the project's SLURM preset over hydra-submitit-launcher composes
with the values the README promises, and they become the sbatch lines SLURM reads (no SLURM
here: the sbatch file is rendered, not submitted)."""

from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from submitit.slurm.slurm import _make_sbatch_string

from helpers.config import compose_config


def test_slurm_preset_composes_into_the_submitit_launcher_and_its_sbatch_lines(tmp_path):
    cfg = compose_config("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                   "hydra.launcher.timeout_min=90"], tmp_path)
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    # the preset's own values, not the plugin's defaults (gpus_per_task null, 256 at once)
    assert (launcher.partition, launcher.gpus_per_task, launcher.timeout_min,
            launcher.array_parallelism, launcher.cpus_per_task) == ("gpu", 1, 90, 8, 8)
    assert instantiate(launcher).params["partition"] == "gpu"  # what the launcher submits with

    params = OmegaConf.to_container(launcher, resolve=False)
    sbatch = _make_sbatch_string(
        command="python -m submitit.core._submit", folder=tmp_path, map_count=20,
        partition=params["partition"], gpus_per_task=params["gpus_per_task"],
        time=params["timeout_min"], array_parallelism=params["array_parallelism"],
        cpus_per_task=params["cpus_per_task"], mem=f"{params['mem_gb']}GB")
    for line in ("--partition=gpu", "--gpus-per-task=1", "--time=90", "--array=0-19%8",
                 "--cpus-per-task=8", "--mem=32GB"):
        assert f"#SBATCH {line}" in sbatch
