"""burst: a scaling policy written in Python.

On an upward threshold crossing it jumps out by `burst.step` replicas
(default 2) at once, for spiky traffic where one replica at a time is too
slow; on a downward crossing to or below `<metric>.lower` it steps in by one.
Periodic samples are ignored: this policy acts only on what the kernel pushes
the moment it happens.

Build: ./build.sh (componentize-py turns this file plus wit/ into a component).
"""

from typing import Optional

import wit_world
from wit_world.imports import host, types


def metric_name(metric: types.Metric) -> str:
    if isinstance(metric, types.Metric_Other):
        return metric.value
    return {
        types.Metric_Cpu: "cpu",
        types.Metric_Memory: "memory",
        types.Metric_Connections: "connections",
    }[type(metric)]


class WitWorld(wit_world.WitWorld):
    def decide(self, event: types.Event, state: types.State) -> Optional[types.Decision]:
        if not isinstance(event.kind, types.EventKind_Crossing):
            return None
        crossing = event.kind.value
        settings = dict(state.settings)
        name = metric_name(event.metric)
        try:
            step = int(settings.get("burst.step", "2"))
        except ValueError:
            host.log(host.Level.WARN, f"{event.service_name}: burst.step is not a whole number; using 2")
            step = 2
        current = state.current_replicas
        if crossing.direction == types.Direction.UP:
            target = min(current + max(step, 1), state.max_replicas)
        else:
            lower = settings.get(f"{name}.lower")
            try:
                if lower is None or event.value > float(lower):
                    return None
            except ValueError:
                host.log(host.Level.WARN, f"{event.service_name}: {name}.lower is not a number")
                return None
            target = max(current - 1, state.min_replicas)
        if target == current:
            return None
        direction = "up" if crossing.direction == types.Direction.UP else "down"
        return types.Decision(
            target_replicas=target,
            reason=f"{name} {event.value:.3f} crossed {crossing.threshold} going {direction}: {current} -> {target}",
        )
