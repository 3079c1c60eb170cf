"""burst: a scaling policy written in Python (contract 0.2.0, `wit/v0.2`).

It acts only on threshold crossings, the moment the kernel pushes them:

- a crossing of the metric's *upper* threshold going up (`<metric>.upper`)
  jumps out by `burst.step` replicas (default 2) at once, for spiky traffic
  where one replica at a time is too slow;
- a crossing of the metric's *lower* threshold going down (`<metric>.lower`)
  steps in by one;
- anything else is left alone: a crossing of the lower threshold going up is
  load coming back into the band, not a burst, and a crossing of the upper
  going down is load leaving the top of the band, not a lull. Periodic
  samples are ignored.

Watched metrics: cpu and connections; a metric without `<metric>.upper` or
`<metric>.lower` set never triggers the matching rule.

Build: ./build.sh (componentize-py turns this file plus wit/ into a component).
"""

from typing import List, Optional

import wit_world
from wit_world.imports import host, types

# The settings, in the order `decide` receives them in `state.settings`.
SETTINGS = [
    ("burst.step", "2", "replicas added by one burst (a whole number >= 1)"),
    ("cpu.upper", None, "CPU (fraction of the limit) whose upward crossing is a burst"),
    ("cpu.lower", None, "CPU (fraction of the limit) whose downward crossing steps in by one"),
    ("connections.upper", None, "open connections per replica whose upward crossing is a burst"),
    ("connections.lower", None, "open connections per replica whose downward crossing steps in by one"),
]
INDEX = {name: i for i, (name, _, _) in enumerate(SETTINGS)}

# A crossing's threshold is compared with the settings with this relative
# tolerance: the kernel probe may carry thresholds in fixed point.
TOLERANCE = 1e-3


def number(state: types.State, name: str) -> Optional[float]:
    value = state.settings[INDEX[name]]
    return value.value if isinstance(value, types.SettingValue_Number) else None


def same(threshold: float, setting: float) -> bool:
    """Whether a crossed threshold is this setting (any other threshold the
    probe watches, such as the lower one for an upward crossing, is not)."""
    return abs(threshold - setting) <= TOLERANCE * max(abs(setting), 1e-9)


def metric_name(metric: types.Metric) -> Optional[str]:
    if isinstance(metric, types.Metric_Cpu):
        return "cpu"
    if isinstance(metric, types.Metric_Connections):
        return "connections"
    return None


class WitWorld(wit_world.WitWorld):
    def settings(self) -> List[types.SettingSpec]:
        return [
            types.SettingSpec(name=name, kind=types.SettingType.NUMBER, required=False, default=default, doc=doc)
            for name, default, doc in SETTINGS
        ]

    def decide(self, event: types.Event, state: types.State) -> Optional[types.Decision]:
        if not isinstance(event.kind, types.EventKind_Crossing):
            return None
        name = metric_name(event.metric)
        if name is None:
            return None
        crossing = event.kind.value
        current = state.current_replicas
        if crossing.direction == types.Direction.UP:
            upper = number(state, f"{name}.upper")
            if upper is None or not same(crossing.threshold, upper):
                return None
            step = number(state, "burst.step") or 2.0
            if step < 1 or step != int(step):
                host.log(host.Level.WARN, f"{event.service_name}: burst.step {step} is not a whole number >= 1; using 2")
                step = 2.0
            target = min(current + int(step), state.max_replicas)
        else:
            lower = number(state, f"{name}.lower")
            if lower is None or not same(crossing.threshold, lower):
                return None
            target = max(current - 1, state.min_replicas)
        if target == current:
            return None
        way = "up" if crossing.direction == types.Direction.UP else "down"
        return types.Decision(
            action=types.Action_Scale(target),
            reason=f"{name} {event.value:.3f} crossed {crossing.threshold:g} going {way}: {current} -> {target}",
        )
