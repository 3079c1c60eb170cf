"""burst: a scaling policy written in Python (contract 0.3.0).

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

The daemon binds each service once (`bind-service`: its handle, id, name and typed
settings) before it decides for it, and again when its labels change;
`decide` then names the service by its handle. `SERVICES` keeps them.

Build: ./build.sh (componentize-py turns this file plus wit/ into a component).
"""

from typing import Dict, List, Optional

import wit_world
from wit_world.imports import host, types

# The services bound to this instance, by handle.
SERVICES: Dict[int, types.Service] = {}

# The settings, in the order `bind-service` receives them in `service.settings`.
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


def number(service: types.Service, name: str) -> Optional[float]:
    value = service.settings[INDEX[name]]
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

    def bind_service(self, service: types.Service) -> None:
        SERVICES[service.handle] = service

    def unbind_service(self, handle: int) -> None:
        SERVICES.pop(handle, None)

    def decide(self, service: int, event: types.Event, state: types.State) -> Optional[types.Decision]:
        bound = SERVICES.get(service)
        if bound is None or not isinstance(event.kind, types.EventKind_Crossing):
            return None
        name = metric_name(event.metric)
        if name is None:
            return None
        crossing = event.kind.value
        current = state.current_replicas
        if crossing.direction == types.Direction.UP:
            upper = number(bound, f"{name}.upper")
            if upper is None or not same(crossing.threshold, upper):
                return None
            step = number(bound, "burst.step") or 2.0
            if step < 1 or step != int(step):
                host.log(host.Level.WARN, f"{bound.name}: burst.step {step} is not a whole number >= 1; using 2")
                step = 2.0
            target = min(current + int(step), state.max_replicas)
        else:
            lower = number(bound, f"{name}.lower")
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
