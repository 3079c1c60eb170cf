// headroom: a scaling policy written in JavaScript (contract 0.3.0).
//
// It sizes the service for its open connections: enough replicas that each
// carries at most `headroom.per-replica` connections (default 50), counted
// over the replicas that report (the service view's `sum`). It decides on
// every connections event, sample or crossing, and ignores other metrics.
// Scale-in is at most `headroom.step-in` replicas at a time (default 1), so
// a short lull does not drop half the service at once; the daemon's
// cooldowns and bounds still apply on top.
//
// The daemon binds each service once (`bindService`: its handle, id, name
// and typed settings) before it decides for it, and again when its labels
// change; `decide` then names the service by its handle. `SERVICES` keeps
// what each handle's settings say.
//
// Build: ./build.sh (componentize-js turns this file plus wit/ into a
// component). The shape of the values follows componentize-js (jco):
// variants are `{ tag, val }`, enums are strings, `option<T>` is a value or
// `undefined`, and `u64` is a BigInt.

import { log } from 'autoscaler:policy/host@0.3.0';

// The settings, in the order `bindService` receives them in `service.settings`.
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

export function settings() {
    return SETTINGS;
}

// The services bound to this instance, by handle: name and settings.
const SERVICES = new Map();

export function bindService(service) {
    const [perReplica, stepIn] = service.settings.map((s) => (s === undefined ? undefined : s.val));
    SERVICES.set(service.handle, { name: service.name, perReplica, stepIn });
}

export function unbindService(handle) {
    SERVICES.delete(handle);
}

export function decide(handle, event, state) {
    if (event.metric.tag !== 'connections') {
        return undefined;
    }
    const connections = state.connections;
    if (connections === undefined || connections.reporting === 0) {
        // Every replica still warming up: nothing to decide on yet.
        return undefined;
    }
    const service = SERVICES.get(handle);
    if (service === undefined) {
        // The daemon binds before it decides; a handle it never bound is its bug.
        throw new Error(`decide for unbound service handle ${handle}`);
    }
    const { name, perReplica, stepIn } = service;
    if (!(perReplica > 0) || !(stepIn >= 1) || !Number.isInteger(stepIn)) {
        log('warn', `${name}: headroom.per-replica must be > 0 and headroom.step-in a whole number >= 1`);
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
