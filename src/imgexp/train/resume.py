"""A resume (`ckpt_path=RUN/checkpoints/last.ckpt`) trains on with the run's own config.

The base is the resolved config the checkpoint carries: what its weights were trained with,
also for a checkpoint copied out of its run, or a run whose .hydra/config.yaml a relaunch with
`hydra.run.dir=RUN` has overwritten with the defaults. Hydra composed the defaults plus the
command line; of that, only what the command line set goes on top, and only where it changes
nothing the weights depend on: more epochs, where output and logs go, how progress shows, the
user's own callbacks. The rest (data, model, task, augmentation, optimizer, scheduler, seed, the
other trainer keys, the project's and Lightning's callbacks) is refused in one line, before
anything is written.
"""

import logging
from pathlib import Path

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from imgexp.atomic import write_text_atomic
from imgexp.errors import ImgexpError
from imgexp.models.factory import read_checkpoint
from imgexp.models.safe_load import check_targets, untrusted_targets

log = logging.getLogger(__name__)

# what a resume may change (a key or a folder of keys): none of it reaches the weights (the
# decoded-image cache holds the same pixels; loader workers are not here: with augmentation
# their random streams are the data)
HARMLESS = ("test", "task_name", "optimized_metric", "paths", "logger", "data.cache",
            "data.cache_budget_mb",
            "trainer.devices", "trainer.accelerator", "trainer.num_nodes", "trainer.strategy",
            "trainer.enable_progress_bar", "trainer.enable_model_summary",
            "trainer.log_every_n_steps", "trainer.default_root_dir",
            "callbacks.progress_bar", "callbacks.lr_monitor")
_ABSENT = object()


def resumed_config(cfg: DictConfig) -> DictConfig:
    """cfg as composed by Hydra, or for a resume the run's config with the command line's
    harmless overrides on top (a refused one raises ImgexpError naming it)."""
    if not cfg.get("ckpt_path"):
        return cfg
    ckpt = read_checkpoint(cfg.ckpt_path)
    saved = ckpt["imgexp"].get("config") if isinstance(ckpt["imgexp"], dict) else None
    if not isinstance(saved, dict) or "trainer" not in saved:
        raise ImgexpError(f"{cfg.ckpt_path} carries no training config to resume with: "
                          "resume from a last.ckpt that imgexp-train wrote")
    run = _relocatable(OmegaConf.create(saved), cfg)
    run.ckpt_path = cfg.ckpt_path  # also when it came from a file, not the command line
    changes, origin = {}, {}
    for key, override in _command_line_keys(cfg, run).items():
        diff = _diff(run, cfg, key)
        changes.update(diff)
        origin.update(dict.fromkeys(diff, override))
    for leaf, (old, new) in sorted(changes.items()):
        _check(leaf, old, new, run, cfg, origin[leaf])
    for leaf in changes:
        _apply(run, cfg, leaf)
    # the run's callbacks and loggers are called too: only imgexp's, or what this command
    # line names itself (the user's own code)
    check_targets(cfg.ckpt_path, OmegaConf.to_container(run), skip=("hydra",),
                  also=[t for _, t in untrusted_targets(OmegaConf.to_container(cfg))])
    _check_unfinished(cfg.ckpt_path, ckpt, run)
    OmegaConf.set_struct(run, True)
    _record(run)
    shown = list(dict.fromkeys(origin[leaf] for leaf in sorted(changes)))
    log.info("Resuming %s with the config it was trained with%s", cfg.ckpt_path,
             f"; on top: {', '.join(shown)}" if shown else "")
    if "trainer.max_epochs" in changes:
        log.info(_more_epochs(run, ckpt, *changes["trainer.max_epochs"]))
    return run


def _check_unfinished(path, ckpt: dict, run: DictConfig) -> None:
    """A finished run has nothing to resume: Lightning would only test it again and
    metrics.json would lose its train/val figures."""
    done = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}) \
        .get("current", {}).get("processed")  # completed is counted after the last save
    if isinstance(done, int) and done >= run.trainer.max_epochs:
        raise ImgexpError(f"{path} ends a finished run ({done} of {run.trainer.max_epochs} "
                          f"epochs): nothing to resume; add epochs (trainer.max_epochs="
                          f"{done + 1} or more) or evaluate it (imgexp-eval ckpt_path={path})")


def _record(run: DictConfig) -> None:
    """Hydra saved this launch's composition (the defaults) as its .hydra/config.yaml: save the
    config the resume runs instead."""
    hydra = HydraConfig.get()
    if hydra.output_subdir is not None:
        write_text_atomic(Path(hydra.runtime.output_dir) / hydra.output_subdir / "config.yaml",
                          OmegaConf.to_yaml(run))


def _relocatable(run: DictConfig, cfg: DictConfig) -> DictConfig:
    """The saved config resolved every path against the run's folder of the time: make them
    follow paths.output_dir again (this launch's, until the resume moves it into the run)."""
    old = str(run.paths.output_dir)

    def follow(value):
        if isinstance(value, dict):
            return {k: follow(v) for k, v in value.items()}
        if isinstance(value, list):
            return [follow(v) for v in value]
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            return "${paths.output_dir}" + value[len(old):]
        return value

    run = OmegaConf.create(follow(OmegaConf.to_container(run)))
    run.paths.output_dir = _unresolved(cfg, "paths.output_dir")
    return run


def _command_line_keys(cfg: DictConfig, run: DictConfig) -> dict[str, str]:
    """key -> the override that sets it: a value override its key, a group choice its folder
    (model/backbone=timm: model.backbone); a global group (experiment=...) whatever its file
    sets, found as what differs from the defaults composed without the command line."""
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    keys, global_groups = {}, []
    for override in overrides:
        key = override.key_or_group.replace("/", ".")
        top = key.split(".")[0]
        if _select(cfg, top) is _ABSENT and _select(run, top) is _ABSENT:
            global_groups.append(override.input_line)
        else:
            keys[key] = override.input_line
    if global_groups:
        defaults = compose(config_name=HydraConfig.get().job.config_name)
        keys = {leaf: " ".join(global_groups) for leaf in _diff(defaults, cfg, "")} | keys
    return keys


def _diff(a: DictConfig, b: DictConfig, key: str) -> dict[str, tuple]:
    """leaf -> (value in a, value in b), resolved, for the leaves under key that differ."""
    old, new = _leaves(a, key), _leaves(b, key)
    return {leaf: (old.get(leaf, _ABSENT), new.get(leaf, _ABSENT))
            for leaf in old.keys() | new.keys() if old.get(leaf, _ABSENT) != new.get(leaf, _ABSENT)}


def _leaves(cfg: DictConfig, key: str) -> dict[str, object]:
    node = _select(cfg, key) if key else cfg
    if node is _ABSENT:
        return {}
    if not isinstance(node, DictConfig | ListConfig):
        return {key: node}
    value = OmegaConf.to_container(node, resolve=True)

    def flat(value, prefix):
        if isinstance(value, dict) and value:
            return {leaf: v for k, item in value.items()
                    for leaf, v in flat(item, f"{prefix}.{k}" if prefix else str(k)).items()}
        return {prefix: value}

    return flat(value, key)


def _select(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)


def _check(leaf: str, old, new, run: DictConfig, cfg: DictConfig, override: str) -> None:
    if leaf == "trainer.max_epochs" and old is not _ABSENT and new is not _ABSENT:
        if new < old:
            raise ImgexpError(f"{override}: the resumed run was planned for {old} epochs; a "
                              "resume can add epochs, not remove them (drop ckpt_path for a "
                              "new, shorter run)")
        return
    if any(leaf == key or leaf.startswith(key + ".") for key in HARMLESS) \
            or _own_callback(leaf, run, cfg):
        return
    raise ImgexpError(f"{override} would change {leaf} of the resumed run ({_shown(old)} -> "
                      f"{_shown(new)}): a resume keeps the run's data, model and schedule; drop "
                      "it, or drop ckpt_path to start a new run")


def _own_callback(leaf: str, run: DictConfig, cfg: DictConfig) -> bool:
    """A callback of the user's own code (+callbacks.NAME._target_=mypackage.Cls), not the
    project's or Lightning's recipe: theirs to add or drop on a resume."""
    parts = leaf.split(".")
    if parts[0] != "callbacks" or len(parts) < 2:
        return False
    targets = [_select(c, f"callbacks.{parts[1]}._target_") for c in (run, cfg)]
    targets = [str(t) for t in targets if t is not _ABSENT]
    return bool(targets) and not any(t.startswith(("imgexp.", "lightning.")) for t in targets)


def _shown(value) -> str:
    text = "(unset)" if value is _ABSENT else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unresolved(cfg: DictConfig, key: str):
    parent_key, _, name = key.rpartition(".")
    parent = _select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or name not in parent:
        return _ABSENT
    return OmegaConf.to_container(parent, resolve=False)[name]


def _apply(run: DictConfig, cfg: DictConfig, leaf: str) -> None:
    """Set leaf in run as the command line composed it (interpolations kept), or delete it."""
    value = _unresolved(cfg, leaf)
    parent_key, _, name = leaf.rpartition(".")
    if value is not _ABSENT:
        OmegaConf.update(run, leaf, value, merge=False, force_add=True)
        return
    parent = _select(run, parent_key) if parent_key else run
    if isinstance(parent, DictConfig) and name in parent:
        del parent[name]
        if parent_key and not parent:  # ~callbacks.progress_bar: the whole callback goes
            _apply(run, cfg, parent_key)


def _more_epochs(run: DictConfig, ckpt: dict, old: int, new: int) -> str:
    scheduler = run.get("scheduler")
    steps = ckpt.get("global_step")
    if not scheduler or "_target_" not in scheduler:
        return f"trainer.max_epochs {old} -> {new}: trains on from step {steps}"
    name = str(scheduler._target_).rsplit(".", 1)[-1]
    return (f"trainer.max_epochs {old} -> {new}: the {name} learning-rate schedule is re-planned "
            f"over {new} epochs from step {steps}, where it stands (not the schedule of an "
            f"uninterrupted {new}-epoch run)")
