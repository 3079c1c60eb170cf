// headroom: a scaling policy written in JavaScript (contract autoscaler:policy@1.0.0).
//
// It sizes the service for its open connections: enough replicas that each
// carries at most `headroom.per-replica` connections (default 50), counted
// over the replicas that report (the service view's `sum`). It decides on
// every connections event, sample or crossing, and ignores other metrics.
// Scale-in is at most `headroom.step-in` replicas at a time (default 1), so
// a short lull does not drop half the service at once; the daemon's
// cooldowns and bounds still apply on top.
//
// Each call is self-contained: `state` carries the service's name, its
// parsed settings and the service view, so the policy keeps nothing between
// calls.
//
// Build: ./build.sh (componentize-js turns this file plus wit/ into a
// component). The shape of the values follows componentize-js (jco):
// variants are `{ tag, val }`, enums are strings, `option<T>` is a value or
// `undefined`, and `u64` is a BigInt.

import { log } from 'autoscaler:policy/host@1.0.0';

// The settings; `state.settings` holds their values in this order.
const SETTINGS = [
    {
        name: 'headroom.per-replica',
        kind: 'number',
        required: false,
        default: '50',
        doc: 'open connections one replica should carry at most',
    },
    {
        name: 'headroom.step-in',
        kind: 'number',
        required: false,
        default: '1',
        doc: 'most replicas removed by one decision (a whole number >= 1)',
    },
];
const INDEX = new Map(SETTINGS.map((spec, i) => [spec.name, i]));

export function settings() {
    return SETTINGS;
}

// The value of the setting `name` (a number for a number setting), or
// `undefined` when it has none.
function setting(state, name) {
    return state.settings[INDEX.get(name)]?.val;
}

// The service view of the metric `name` (an aggregate), or `undefined` when
// the daemon does not measure it for this service.
function metric(state, name) {
    return state.metrics.find((aggregate) => aggregate.metric === name);
}

export function decide(event, state) {
    if (event.metric !== 'connections') {
        return undefined;
    }
    const connections = metric(state, 'connections');
    if (connections === undefined || connections.reporting === 0) {
        // Every replica still warming up: nothing to decide on yet.
        return undefined;
    }
    const perReplica = setting(state, 'headroom.per-replica');
    const stepIn = setting(state, 'headroom.step-in');
    if (!(perReplica > 0) || !(stepIn >= 1) || !Number.isInteger(stepIn)) {
        log('warn', `${state.serviceName}: headroom.per-replica must be > 0 and headroom.step-in a whole number >= 1`);
        return undefined;
    }
    const total = connections.value.sum;
    const current = state.currentReplicas;
    let wanted = Math.max(1, Math.ceil(total / perReplica));
    if (wanted < current) {
        wanted = Math.max(wanted, current - stepIn);
    }
    const target = Math.min(Math.max(wanted, state.minReplicas), state.maxReplicas);
    if (target === current) {
        return undefined;
    }
    return {
        action: { tag: 'scale', val: target },
        reason: `${total} connections over ${connections.reporting} replicas, ${perReplica} per replica: ${current} -> ${target}`,
    };
}
