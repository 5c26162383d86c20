"""Collect run directories (single runs or multiruns) into one table and write the comparison.

A run is any folder with `.hydra/config.yaml`; its row comes from `.hydra/overrides.yaml`
(which hyperparameters to show), `.hydra/config.yaml` and `.hydra/hydra.yaml` (each run's
resolved value of them), `metrics.json`, `run_info.json` and `csv/metrics.csv` (the curves);
`.hydra/hydra.yaml` holds the sweep's search space (which parameters are on a log scale).
"""

import json
import logging
import math
from pathlib import Path

import optuna
import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.imgexp_optuna_sweeper._search_space import parse_search_space
from imgexp.atomic import write_text_atomic
from imgexp.compare.plots import (
    UNSET,
    plot_curves,
    plot_importance,
    plot_parallel_coordinates,
)
from imgexp.errors import ImgexpError
from imgexp.tracking.wandb_run import INTERNAL_KEYS, configuration_of
from imgexp.training.optuna_storage import open_storage

log = logging.getLogger(__name__)


def _resume_launch(run_dir: Path) -> bool:
    """A resume continues in its checkpoint's own run directory (imgexp.train.fit): the folder it
    was launched in holds only that launch's config and log, not a run of its own."""
    if (run_dir / "metrics.json").is_file():
        return False
    ckpt = OmegaConf.load(run_dir / ".hydra" / "config.yaml").get("ckpt_path")
    return bool(ckpt) and Path(ckpt).parent.name == "checkpoints" \
        and Path(ckpt).resolve().parent.parent != run_dir.resolve()


def find_runs(dirs: list[str]) -> list[Path]:
    runs, empty = [], []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise ImgexpError(f"{d} is not a directory: pass run or multirun directories in dirs=")
        if (d / ".hydra" / "config.yaml").is_file():
            runs.append(d)
            continue
        found = [p for p in d.iterdir() if (p / ".hydra" / "config.yaml").is_file()]
        empty += [] if found else [d]
        runs += sorted(found, key=lambda p: (not p.name.isdigit(), int(p.name) if
                                             p.name.isdigit() else 0, p.name))
    if empty and not runs:
        raise ImgexpError(f"{empty[0]} holds no run directory (none has .hydra/config.yaml): "
                          "pass a run directory or a multirun/sweep directory")
    if empty:  # e.g. a sweep worker killed before its first trial: the others still compare
        log.warning("no run directory in %s: left out", ", ".join(map(str, empty)))
    if skipped := [r for r in runs if _resume_launch(r)]:
        log.info("Not runs of their own (resumes that continued in their checkpoint's run): %s",
                 ", ".join(map(str, skipped)))
    return [r for r in runs if r not in skipped]


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _search_space(run_dir: Path) -> dict:
    """The Optuna distributions of the sweep config the run was launched by (hparams_search's
    `hydra.sweeper.params`); {} for a single run or a sweeper without params."""
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    params = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.sweeper.params") \
        if hydra_yaml.is_file() else None
    if not params:
        return {}
    params = OmegaConf.to_container(params, resolve=False)
    try:
        return parse_search_space([f"{k}={v}" for k, v in params.items()])[0]
    except (ValueError, HydraException) as exc:  # e.g. a basic sweeper's glob(): no scale then
        log.info("%s: search space not read (%s)", hydra_yaml, exc)
        return {}


def load_run(run_dir: Path) -> dict:
    overrides = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
    parsed = OverridesParser.create().parse_overrides(overrides)
    overrides = [o.input_line for o in parsed if o.key_or_group not in INTERNAL_KEYS]
    params = {o.key_or_group: _number(o.get_value_element_as_str()) for o in parsed
              if o.key_or_group not in INTERNAL_KEYS and not o.is_delete()}
    metrics, info = _read_json(run_dir / "metrics.json"), _read_json(run_dir / "run_info.json")
    status = ("PRUNED" if metrics.get("trial/pruned") else "COMPLETE" if metrics else "FAIL")
    return {"run": run_dir, "overrides": overrides, "params": params, "metrics": metrics,
            "status": status, "epochs": metrics.get("epochs"),
            "wall_time_s": info.get("wall_time_s"), "env": info.get("env_hash"),
            "search_space": _search_space(run_dir)}


def _resolved_values(run_dir: Path, keys: set[str]) -> dict:
    """The values `keys` had in the run: its composed config, or for a config group
    (`model/backbone`, `experiment`) the option Hydra chose; UNSET where the run has no such key.
    Written as an override writes them, so a value set by an experiment or hparams_search file
    matches the same value given on another run's command line."""
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    choices = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.choices",
                               throw_on_resolution_failure=False) if hydra_yaml.is_file() else None
    choices = OmegaConf.to_container(choices) if choices else {}
    values = {}
    for key in keys:
        value = choices[key] if key in choices else OmegaConf.select(
            config, key, default=UNSET, throw_on_resolution_failure=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        values[key] = value if value is UNSET else _number(
            Override._get_value_element_as_str(value))
    return values


def resolve_params(runs: list[dict]) -> None:
    """Every run gets a value for every hyperparameter any run overrode: the one it ran with,
    not "(unset)" for a value that came from a file rather than the command line."""
    keys = {k for r in runs for k in r["params"]}
    for r in runs:
        r["params"].update(_resolved_values(r["run"], keys - r["params"].keys()))


def label_runs(runs: list[dict]) -> None:
    """Each run's name in the tables and legends: its folder, or parent/folder for every run
    when two have the same folder name (two multiruns both have a job 0)."""
    names = [r["run"].name for r in runs]
    qualify = len(set(names)) < len(names)
    for r in runs:
        r["label"] = f"{r['run'].parent.name}/{r['run'].name}" if qualify else r["run"].name


def _varying(runs: list[dict]) -> tuple[list[str], list[str]]:
    """Parameter keys whose value differs between runs, and the overrides all runs share."""
    keys = sorted({k for r in runs for k in r["params"]})
    varying = [k for k in keys if len({str(r["params"].get(k)) for r in runs}) > 1]
    shared = [o for o in runs[0]["overrides"] if all(o in r["overrides"] for r in runs)]
    return varying, shared


def leaderboard(runs: list[dict], metrics: list[str], mode: str) -> pd.DataFrame:
    varying, shared = _varying(runs)
    rows = []
    for r in runs:
        row = {"run": r["label"], "status": r["status"],
               "overrides": " ".join(o for o in r["overrides"] if o not in shared)}
        row.update({k: r["params"].get(k, UNSET) for k in varying})
        row.update({m: r["metrics"].get(m) for m in metrics})
        row.update(epochs=r["epochs"], wall_time_s=r["wall_time_s"], env=r["env"],
                   path=str(r["run"]))  # env: the installed versions' hash (run_info.json)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(metrics[0], ascending=mode != "max", na_position="last",
                             kind="stable").reset_index(drop=True)


def by_configuration(runs: list[dict], metrics: list[str], replicate_keys) -> pd.DataFrame:
    """Mean ± std of each metric over runs that differ only in fold/seed (complete runs)."""
    _, shared = _varying(runs)
    groups: dict[str, list[dict]] = {}
    for r in runs:
        configuration, replicated = configuration_of(
            [o for o in r["overrides"] if o not in shared], tuple(replicate_keys))
        if replicated and r["status"] == "COMPLETE":
            groups.setdefault(configuration, []).append(r)
    rows = []
    for configuration, members in groups.items():
        row = {"configuration": configuration, "runs": len(members)}
        for m in metrics:
            values = pd.Series([r["metrics"].get(m) for r in members], dtype=float).dropna()
            row[f"{m} mean"] = values.mean() if len(values) else math.nan
            row[f"{m} std"] = values.std(ddof=1) if len(values) > 1 else 0.0
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(f"{metrics[0]} mean", ascending=False) if rows else table


def load_studies(results_files: list[Path]) -> list[optuna.Study]:
    """The Optuna studies named by optimization_results.yaml files (a storage that is gone or
    moved is warned about and skipped: the leaderboard does not need it). The workers of one
    study each wrote a file naming it: it is loaded once."""
    studies, seen = [], set()
    for results in results_files:
        meta = OmegaConf.load(results)
        if (meta.storage, meta.study_name) in seen:
            continue
        seen.add((meta.storage, meta.study_name))
        try:
            studies.append(optuna.load_study(study_name=meta.study_name,
                                             storage=open_storage(meta.storage)))
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            log.warning("study of %s not loaded (no importances): %s", results.parent, exc)
    return studies


def log_scale_params(runs: list[dict], studies: list[optuna.Study]) -> frozenset[str]:
    """Hyperparameters searched on a log scale: `tag(log, ...)` in a run's sweep config, or a
    log distribution in a study (which also knows the search space given on the command line)."""
    spaces = [r["search_space"] for r in runs]
    spaces += [t.distributions for s in studies for t in s.get_trials(deepcopy=False)]
    return frozenset(k for space in spaces for k, d in space.items() if getattr(d, "log", False))


def _markdown(table: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return "" if v is None else str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def _mean_std_table(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    shown = table[["configuration", "runs"]].copy()
    for m in metrics:
        shown[m] = [f"{mu:.4f} ± {sd:.4f}" for mu, sd in zip(table[f"{m} mean"],
                                                            table[f"{m} std"], strict=True)]
    return shown


def compare_runs(cfg: DictConfig, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = list(cfg.metrics)
    runs = [load_run(d) for d in find_runs(list(cfg.dirs))]
    resolve_params(runs)
    label_runs(runs)
    board = leaderboard(runs, metrics, cfg.mode)
    written = [write_text_atomic(out_dir / "leaderboard.csv", board.to_csv(index=False))]
    _, shared = _varying(runs)
    md = [f"# Leaderboard ({len(runs)} runs, ranked by {metrics[0]})\n",
          f"Shared overrides: `{' '.join(shared) or 'none'}`\n",
          _markdown(board.drop(columns=["path"]))]
    configs = by_configuration(runs, metrics, cfg.replicate_keys)
    if len(configs):
        written.append(write_text_atomic(out_dir / "leaderboard_by_config.csv",
                                     configs.to_csv(index=False)))
        md += [f"\n## Mean ± std over {', '.join(cfg.replicate_keys)}\n",
               _markdown(_mean_std_table(configs, metrics))]
    written.append(write_text_atomic(out_dir / "leaderboard.md", "\n".join(md)))
    written.append(plot_curves(runs, cfg.curve_metric, out_dir / "curves.png"))
    studies = load_studies([Path(d) / "optimization_results.yaml" for d in cfg.dirs
                            if (Path(d) / "optimization_results.yaml").is_file()])
    written.append(plot_parallel_coordinates(board, metrics[0], out_dir /
                                             "parallel_coordinates.html",
                                             log_scale_params(runs, studies)))
    if studies:
        written.append(plot_importance(studies, out_dir / "importance.png"))
    else:
        log.info("no Optuna study among dirs (optimization_results.yaml): no importance.png")
    return [p for p in written if p is not None]
