"""__NAME__: a scaling policy for the Docker Swarm autoscaler (contract 0.2.0).

The rule to start from: add a replica while the service's mean CPU is at or
above `cpu.upper`, remove one while it is at or below `cpu.lower`, nothing in
between. Change `settings` and `decide` to your rule.

- build: ./build.sh (componentize-py; leaves __NAME__.wasm here);
- test: ./test.sh runs the component through the daemon's runtime.

The types come from wit/ (componentize-py generates them): variants are
classes (`types.Metric_Cpu`, `types.SettingValue_Number(value)`), enums are
`Enum`s, `option<T>` is `Optional[T]`.
"""

from typing import List, Optional

import wit_world
from wit_world.imports import host, types

# The settings, in the order `decide` receives them in `state.settings`.
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


def number(state: types.State, index: int) -> Optional[float]:
    value = state.settings[index]
    return value.value if isinstance(value, types.SettingValue_Number) else None


class WitWorld(wit_world.WitWorld):
    def settings(self) -> List[types.SettingSpec]:
        return SETTINGS

    def decide(self, event: types.Event, state: types.State) -> Optional[types.Decision]:
        cpu = next((a for a in state.metrics if isinstance(a.metric, types.Metric_Cpu)), None)
        if cpu is None or cpu.reporting == 0:
            return None
        upper, lower = number(state, 0), number(state, 1)
        if upper is None or lower is None:
            host.log(host.Level.WARN, f"{event.service_name}: cpu.upper or cpu.lower missing")
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
