"""Hydra's sweep syntax -> Optuna distributions, parsed by Hydra's own override parser.

`choice(a,b)` and `a,b` -> categorical; `range(lo,hi,step=s)` -> stepped int/float with Hydra's
meaning (hi excluded); `interval(lo,hi)` -> uniform float, `int(interval(lo,hi))` -> int;
`tag(log, interval(lo,hi))` -> log-uniform; anything else is a fixed value given to every trial.
"""

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():
        values = list(override.sweep_iterator())
        if not values:
            raise ValueError(f"{override.input_line}: the range is empty")
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
        return IntDistribution(int(values[0]), int(values[-1]), step=int(value.step))
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"{override.input_line}: glob sweeps are not supported by the optuna sweeper")


def parse_search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """`key=sweep` strings -> (distributions by key, fixed `key: value` strings); a key given
    twice keeps its last form (command line after `params:`)."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return space, fixed


def suggest(trial: Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 step=distribution.step, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high,
                               step=distribution.step, log=distribution.log)


def grid_values(name: str, distribution: BaseDistribution) -> list:
    """GridSampler needs every value listed: choices, or the steps of a range."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if distribution.step is None or distribution.log:
        raise ValueError(f"the grid sampler cannot enumerate {name} (an interval): "
                         "give it as range(lo, hi, step=...) or choice(...)")
    n = int(round((distribution.high - distribution.low) / distribution.step)) + 1
    return [distribution.low + i * distribution.step for i in range(n)]
