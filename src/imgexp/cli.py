"""What every stage's entry point shares: Hydra main with the project's conf/, and user errors
shown as one line instead of a traceback.

Only Hydra and the standard library are imported here and in the entry modules: each stage
imports its heavy libraries (torch, Lightning, pandas...) inside its task function, so that
`--help`, `--cfg job` and a mistyped override answer at once.
"""

import contextlib
import difflib
import functools
import gc
import logging
import sys
import warnings
from collections.abc import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from imgexp.errors import ImgexpError, write_error
from imgexp.paths import CONFIG_DIR

log = logging.getLogger(__name__)

# Lightning's info lines nobody acts on: device inventory, an advert, an internal step count
LIGHTNING_NOISE = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:",
                   "Loading `train_dataloader` to estimate number of stepping batches")


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_libraries() -> None:
    """Keep what libraries print to what a user can act on; idempotent.

    Call it once the stage's libraries are imported: Lightning and torchmetrics attach console
    handlers of their own at import, which print every line a second time next to Hydra's.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(LIGHTNING_NOISE))
    # Lightning's own pytree helper still uses the LeafSpec torch deprecated: not ours to fix
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # torchdata 0.11's StatefulDataLoader calls an API torch 2.14 deprecated: not ours either
    warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)
    if "lightning" in sys.modules:
        logging.getLogger("lightning").removeHandler(sys.modules["lightning"]._console)
    if "torchmetrics" in sys.modules:
        logger = logging.getLogger("torchmetrics")
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)


@contextlib.contextmanager
def collector_paused():
    """Import a stage's libraries with Python's cyclic garbage collector paused.

    Importing torch and Lightning creates ~5*10^5 objects that live as long as the process.
    With the collector on, every time they grow by a quarter it walks all of them again: ~2 of
    the ~10 s a training run spends importing on 2 cores (bench_end_to_end). Paused, then
    frozen (moved out of the collector's reach: gc.freeze's documented use for long-lived
    start-up state), they are never walked. Frozen once per process: a later stage in the
    same process (a test, a multirun's in-process jobs) finds its libraries imported already.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
        if enabled:
            gc.enable()


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# what to write after `key=` in the error, by the key's last part
EXAMPLES = {"root": "/path/to/images", "gallery": "/path/to/images",
            "manifest": "/path/to/manifest.csv", "ckpt_path": "RUN/checkpoints/best.ckpt",
            "dirs": "'[RUN_OR_SWEEP_DIR,...]'", "name": "convnext_tiny"}


def _example(key: str) -> str:
    return EXAMPLES.get(key.rsplit(".", 1)[-1], "VALUE")


def unset_keys_error(keys: list[str]) -> ImgexpError:
    """`???` left in the config: name the keys and show how to set them."""
    verb = "is" if len(keys) == 1 else "are"
    return ImgexpError(f"{', '.join(keys)} {verb} not set: pass "
                       + " ".join(f"{key}={_example(key)}" for key in keys))


def _missing_key(exc: MissingMandatoryValue | InterpolationToMissingValueError) -> str:
    """The `???` key itself (for an interpolation, the one it points to)."""
    missing = exc.__context__ if isinstance(exc.__context__, MissingMandatoryValue) else exc
    return missing.full_key or exc.full_key or "a mandatory value"


def _one_repository_for_help() -> None:
    """Hydra's `--help` lists the options of every config group (~140 with Hydra's own) and
    builds a fresh copy of the whole config repository for each of them (most of the seconds
    `--help` took). Listing reads the repository and never changes it, so one copy per
    (config, overrides) serves every group."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.object_type import ObjectType

    repositories = {}

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG,
                          config_name=None, overrides=None):
        key = (id(self), config_name, tuple(overrides or ()))
        if key not in repositories:
            _, repositories[key] = self._parse_overrides_and_create_caching_repo(
                config_name, list(overrides or ()))
        return repositories[key].get_group_options(group_name, results_filter)

    ConfigLoaderImpl.get_group_options = get_group_options


# numbers in the config that Lightning also accepts as words (devices=auto)
# trainer.devices takes `auto`; the others have a check of their own that says what the value
# means (and runs where a test composes the config in-process, without this command line)
WORDS_ALLOWED = {"trainer.devices", "data.cache_budget_mb", "eval.knn.mmap_k"}


def _words_for_numbers(overrides, cfg) -> str | None:
    """`trainer.max_epochs=abc`: a word given for a key whose value is a number would reach
    Lightning or torch as a string and fail there with a traceback; say so at once."""
    for override in overrides:
        if override.is_delete() or override.key_or_group in WORDS_ALLOWED:
            continue
        old = OmegaConf.select(cfg, override.key_or_group, default=None,
                               throw_on_resolution_failure=False)
        new = override.value()
        if isinstance(old, int | float) and not isinstance(old, bool) and isinstance(new, str) \
                and "${" not in new:
            return (f"{override.key_or_group}={new} is not a number: give one "
                    f"(the config has {old})")
    return None


def _suggest_for_mistyped_keys() -> None:
    """A mistyped override (`trainer.max_epoch=3`) gets Hydra's "Could not override ... To
    append to your config use +trainer.max_epoch=3" and OmegaConf's struct dump: advice to add
    the typo. Say instead that the key does not exist and which existing keys are closest."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    apply = ConfigLoaderImpl._apply_overrides_to_config
    if getattr(apply, "suggests", False):
        return

    def apply_overrides(overrides, cfg):
        if problem := _words_for_numbers(overrides, cfg):
            raise ConfigCompositionException(problem)
        try:
            apply(overrides, cfg)
        except ConfigCompositionException as exc:
            cause = exc.__cause__
            if not isinstance(cause, ConfigAttributeError | ConfigKeyError) or not cause.full_key:
                raise
            key = cause.full_key
            parent, _, name = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            known = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
            close = [f"{parent}.{k}" if parent else k
                     for k in difflib.get_close_matches(name, known, n=3, cutoff=0.6)]
            # trainr.max_epochs=3 fails at key trainr; trainer={max_epoch:3} at a key inside it
            line = next((o.input_line for o in overrides
                         if f"{o.key_or_group}.".startswith(f"{key}.")), f"{key}=...")
            hint = f"did you mean {' or '.join(close)}?" if close else "`--cfg job` lists them"
            raise ConfigCompositionException(f"{key} is not a key of this config ({hint}); "
                                             f"add a new one with +{line}") from None

    apply_overrides.suggests = True
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)


def stage_main(config_name: str) -> Callable:
    """Decorate `fn(cfg)` into a Hydra app reading conf/<config_name>.yaml.

    In a single run an ImgexpError (or a mandatory `???` key left unset) exits with status 1
    after one line on stderr; in a multirun it is raised so the sweeper records the job as
    failed and carries on.
    """

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], None]:
        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
        @functools.wraps(fn)
        def main(cfg: DictConfig):
            try:
                # checked before the stage imports its libraries: the answer comes at once
                if missing := sorted(OmegaConf.missing_keys(cfg)):
                    raise unset_keys_error(missing)
                try:
                    return fn(cfg)
                except (MissingMandatoryValue, InterpolationToMissingValueError) as exc:
                    raise unset_keys_error([_missing_key(exc)]) from exc
            except Exception as exc:
                # Hydra's instantiate wraps what a constructor raises (data.cache=bogus) in
                # InstantiationException: the project's own message is the cause
                error = exc if isinstance(exc, ImgexpError) else exc.__cause__
                # a full disk met by a library's own write (a logger's CSV, W&B): one line too
                error = error or write_error(exc, HydraConfig.get().runtime.output_dir, True)
                if not isinstance(error, ImgexpError):
                    if _in_multirun():  # a launcher in other processes (joblib, submitit)
                        # hands the sweep the exception alone: the job's log keeps where it was
                        log.exception("job failed")
                    raise
                if _in_multirun():  # the job's log says why; the sweep records it and goes on
                    log.error("error: %s", error)
                    raise
                print(f"error: {error}", file=sys.stderr)
                sys.exit(1)

        @functools.wraps(main)
        def entry():
            if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
                _one_repository_for_help()
            _suggest_for_mistyped_keys()
            return main()

        return entry

    return decorate
