// __NAME__: a scaling policy for the Docker Swarm autoscaler (contract 0.3.0).
//
// The rule to start from: add a replica while the service's mean CPU is at
// or above `cpu.upper`, remove one while it is at or below `cpu.lower`,
// nothing in between. Change `settings` and `decide` to your rule.
//
// - build: ./build.sh (componentize-js; leaves __NAME__.wasm here);
// - test: ./test.sh runs the component through the daemon's runtime.
//
// The daemon binds each service (`bindService`: its handle, id, name and
// typed settings) before it decides for it, and again when its labels
// change; `decide` names the service by its handle. `SERVICES` keeps them.
//
// Values follow componentize-js: variants are `{ tag, val }`, enums are
// strings, `option<T>` is a value or `undefined`, `u64` is a BigInt.

import { log } from 'autoscaler:policy/host@0.3.0';

// The settings, in the order `bindService` receives them in `service.settings`.
const SETTINGS = [
    {
        name: 'cpu.upper', kind: 'number', required: false, default: '0.8',
        doc: 'mean CPU (fraction of the limit) at or above which a replica is added',
    },
    {
        name: 'cpu.lower', kind: 'number', required: false, default: '0.3',
        doc: 'mean CPU (fraction of the limit) at or below which a replica is removed',
    },
];

export function settings() {
    return SETTINGS;
}

// The services bound to this instance, by handle.
const SERVICES = new Map();

export function bindService(service) {
    const [upper, lower] = service.settings.map((s) => s?.val);
    SERVICES.set(service.handle, { name: service.name, upper, lower });
}

export function unbindService(handle) {
    SERVICES.delete(handle);
}

export function decide(handle, event, state) {
    const cpu = state.cpu;
    if (cpu === undefined || cpu.reporting === 0) {
        return undefined;
    }
    const service = SERVICES.get(handle);
    if (service === undefined) {
        throw new Error(`decide for unbound service handle ${handle}`);
    }
    const { name, upper, lower } = service;
    if (upper === undefined || lower === undefined) {
        log('warn', `${name}: cpu.upper or cpu.lower missing`);
        return undefined;
    }
    const current = state.currentReplicas;
    const mean = cpu.value.mean;
    let target;
    if (mean >= upper) {
        target = Math.min(current + 1, state.maxReplicas);
    } else if (mean <= lower) {
        target = Math.max(current - 1, state.minReplicas);
    } else {
        return undefined;
    }
    if (target === current) {
        return undefined;
    }
    return { action: { tag: 'scale', val: target }, reason: `mean cpu ${mean.toFixed(2)}: ${current} -> ${target}` };
}
