"""__NAME__: a scaling policy for the Docker Swarm autoscaler (contract autoscaler:policy@1.0.0).

The rule to start from: add a replica while the service's mean CPU is at or
above `cpu.upper`, remove one while it is at or below `cpu.lower`, nothing in
between. Change `SETTINGS` and `decide` to your rule.

- build: ./build.sh (componentize-py; leaves __NAME__.wasm here);
- test: ./test.sh runs the component through the daemon's runtime.

`decide(event, state)` gets everything in each call: the event (`event.metric`
names the metric, "cpu", "memory", "connections"...), the service's name and
replica counts, its settings (`setting(state, "cpu.upper")`) and the service
view over its replicas (`metric(state, "cpu")`). It returns a decision or None.

The types come from wit/ (componentize-py generates them): variants are
classes (`types.Action_Scale(3)`, `types.Action_Hold(30 * 10**9)`), enums are
`Enum`s, `option<T>` is `Optional[T]`.
"""

from typing import List, Optional

import wit_world
from wit_world.imports import host, types

# The settings this policy reads (service labels `autoscale.<name>`);
# `state.settings` holds their values in this order.
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
INDEX = {spec.name: i for i, spec in enumerate(SETTINGS)}


def setting(state: types.State, name: str):
    """The value of the setting `name` (a float for a number, nanoseconds for
    a duration, a bool for a flag, a str for text), or None."""
    value = state.settings[INDEX[name]]
    return None if value is None else value.value


def metric(state: types.State, name: str) -> Optional[types.Aggregate]:
    """The service view of the metric `name` (mean, min, max and sum over the
    replicas that report), or None when the daemon does not measure it."""
    return next((aggregate for aggregate in state.metrics if aggregate.metric == name), None)


def demand(state: types.State) -> Optional[float]:
    """The requests the service holds: the larger of the requests in flight
    and the connections queued, summed over the reporting replicas; None
    when neither is reported.

    Not their sum: `inflight` counts a request from the arrival of its data,
    accept-queue time included, so a queued connection whose request has
    arrived is in both (docs/demand.md). `queue` is larger only when
    connections wait with no request yet (a SYN backlog, a client that has
    not sent), which `inflight` cannot see."""
    reported = (metric(state, "inflight"), metric(state, "queue"))
    sums = [a.value.sum for a in reported if a is not None and a.reporting > 0]
    return max(0.0, *sums) if sums else None


def decide(event: types.Event, state: types.State) -> Optional[types.Decision]:
    cpu = metric(state, "cpu")
    # Demand past saturation (docs/demand.md): requests in flight and waiting
    # to be accepted, summed over the replicas; with it a rule can ask for the
    # count the load needs in one step:
    #   held = demand(state)  # also metric(state, "request-rate"), "response-time-p95"
    #   needed = math.ceil(held / 10) if held is not None else None  # 10 per replica
    if cpu is None or cpu.reporting == 0:
        return None  # not measured, or every replica still warming up
    upper, lower = setting(state, "cpu.upper"), setting(state, "cpu.lower")
    if upper is None or lower is None or lower >= upper:
        host.log(host.Level.WARN, f"{state.service_name}: cpu.lower must be below cpu.upper")
        return None
    current, mean = state.current_replicas, cpu.value.mean
    if mean >= upper:
        target = min(current + 1, state.max_replicas)
    elif mean <= lower:
        # To keep the count and refuse scale-in for a while instead:
        # return types.Decision(action=types.Action_Hold(60 * 10**9), reason="...")
        target = max(current - 1, state.min_replicas)
    else:
        return None
    if target == current:
        return None
    held = demand(state)
    also = "" if held is None else f" (demand {held:g})"
    return types.Decision(action=types.Action_Scale(target), reason=f"mean cpu {mean:.2f}: {current} -> {target}{also}")


class WitWorld(wit_world.WitWorld):
    """The exports componentize-py looks for: the two above."""

    def settings(self) -> List[types.SettingSpec]:
        return SETTINGS

    def decide(self, event: types.Event, state: types.State) -> Optional[types.Decision]:
        return decide(event, state)
