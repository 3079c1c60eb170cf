"""burst: a scaling policy written in Python (contract autoscaler:policy@1.0.0).

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

Each call is self-contained: `state` carries the service's name, its parsed
settings and the service view, so the policy keeps nothing between calls.

Build: ./build.sh (componentize-py turns this file plus wit/ into a component).
"""

from typing import List, Optional

import wit_world
from wit_world.imports import host, types


def number(name: str, default: Optional[str], doc: str) -> types.SettingSpec:
    return types.SettingSpec(name=name, kind=types.SettingType.NUMBER, required=False, default=default, doc=doc)


# The settings; `state.settings` holds their values in this order.
SETTINGS = [
    number("burst.step", "2", "replicas added by one burst (a whole number >= 1)"),
    number("cpu.upper", None, "CPU (fraction of the limit) whose upward crossing is a burst"),
    number("cpu.lower", None, "CPU (fraction of the limit) whose downward crossing steps in by one"),
    number("connections.upper", None, "open connections per replica whose upward crossing is a burst"),
    number("connections.lower", None, "open connections per replica whose downward crossing steps in by one"),
]
INDEX = {spec.name: i for i, spec in enumerate(SETTINGS)}

# The metrics this policy watches.
WATCHED = ("cpu", "connections")

# A crossing's threshold is compared with the settings with this relative
# tolerance: the kernel probe may carry thresholds in fixed point.
TOLERANCE = 1e-3


def setting(state: types.State, name: str):
    """The value of the setting `name` (a float for a number), or None."""
    value = state.settings[INDEX[name]]
    return None if value is None else value.value


def same(threshold: float, setting: float) -> bool:
    """Whether a crossed threshold is this setting (any other threshold the
    probe watches, such as the lower one for an upward crossing, is not)."""
    return abs(threshold - setting) <= TOLERANCE * max(abs(setting), 1e-9)


def decide(event: types.Event, state: types.State) -> Optional[types.Decision]:
    if event.metric not in WATCHED or not isinstance(event.kind, types.EventKind_Crossing):
        return None
    name = event.metric
    crossing = event.kind.value
    current = state.current_replicas
    if crossing.direction == types.Direction.UP:
        upper = setting(state, f"{name}.upper")
        if upper is None or not same(crossing.threshold, upper):
            return None
        step = setting(state, "burst.step") or 2.0
        if step < 1 or step != int(step):
            host.log(host.Level.WARN, f"{state.service_name}: burst.step {step} is not a whole number >= 1; using 2")
            step = 2.0
        target = min(current + int(step), state.max_replicas)
    else:
        lower = setting(state, f"{name}.lower")
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


class WitWorld(wit_world.WitWorld):
    """The exports componentize-py looks for: the two functions above."""

    def settings(self) -> List[types.SettingSpec]:
        return SETTINGS

    def decide(self, event: types.Event, state: types.State) -> Optional[types.Decision]:
        return decide(event, state)
