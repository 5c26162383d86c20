"""What every stage's entry point shares: Hydra main with the project's conf/, and user errors
shown as one line instead of a traceback."""

import functools
import logging
import sys
from collections.abc import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from imgexp.errors import ImgexpError
from imgexp.paths import CONFIG_DIR

log = logging.getLogger("imgexp")


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def stage_main(config_name: str) -> Callable:
    """Decorate `fn(cfg)` into a Hydra app reading conf/<config_name>.yaml.

    In a single run an ImgexpError exits with status 1 after one line on stderr; in a multirun
    it is raised so the sweeper records the job as failed and carries on.
    """

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], None]:
        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
        @functools.wraps(fn)
        def main(cfg: DictConfig):
            try:
                return fn(cfg)
            except ImgexpError as exc:
                if _in_multirun():
                    raise
                log.error("%s", exc)
                print(f"error: {exc}", file=sys.stderr)
                sys.exit(1)

        return main

    return decorate
