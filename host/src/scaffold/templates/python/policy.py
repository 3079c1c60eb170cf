"""__NAME__: a scaling policy for the Docker Swarm autoscaler (contract 0.3.0).

The rule to start from: add a replica while the service's mean CPU is at or
above `cpu.upper`, remove one while it is at or below `cpu.lower`, nothing in
between. Change `settings` and `decide` to your rule.

- build: ./build.sh (componentize-py; leaves __NAME__.wasm here);
- test: ./test.sh runs the component through the daemon's runtime.

The types come from wit/ (componentize-py generates them): variants are
classes (`types.Metric_Cpu`, `types.SettingValue_Number(value)`), enums are
`Enum`s, `option<T>` is `Optional[T]`.

The daemon binds each service once (`bind-service`: its handle, id, name and
settings) before it decides for it, and again when its labels change;
`decide` then names the service by its handle. `SERVICES` keeps them.
"""

from typing import Dict, List, Optional

import wit_world
from wit_world.imports import host, types

# The services bound to this instance, by handle.
SERVICES: Dict[int, types.Service] = {}

# The settings, in the order `bind-service` receives them in `service.settings`.
SETTINGS = [
    types.SettingSpec(
        name="cpu.upper", kind=types.SettingType.NUMBER, required=False, default="0.8",
        doc="mean CPU (fraction of the limit) at or above which a replica is added",
    ),
    types.SettingSpec(
        name="cpu.lower", kind=types.SettingType.NUMBER, required=False, default="0.3",
        doc="mean CPU (fraction of the limit) at or below which a replica is removed",
    ),
]


def number(service: types.Service, index: int) -> Optional[float]:
    value = service.settings[index]
    return value.value if isinstance(value, types.SettingValue_Number) else None


class WitWorld(wit_world.WitWorld):
    def settings(self) -> List[types.SettingSpec]:
        return SETTINGS

    def bind_service(self, service: types.Service) -> None:
        SERVICES[service.handle] = service

    def unbind_service(self, handle: int) -> None:
        SERVICES.pop(handle, None)

    def decide(self, service: int, event: types.Event, state: types.State) -> Optional[types.Decision]:
        bound = SERVICES.get(service)
        cpu = state.cpu
        if bound is None or cpu is None or cpu.reporting == 0:
            return None
        upper, lower = number(bound, 0), number(bound, 1)
        if upper is None or lower is None:
            host.log(host.Level.WARN, f"{bound.name}: cpu.upper or cpu.lower missing")
            return None
        current, mean = state.current_replicas, cpu.value.mean
        if mean >= upper:
            target = min(current + 1, state.max_replicas)
        elif mean <= lower:
            target = max(current - 1, state.min_replicas)
        else:
            return None
        if target == current:
            return None
        return types.Decision(action=types.Action_Scale(target), reason=f"mean cpu {mean:.2f}: {current} -> {target}")
