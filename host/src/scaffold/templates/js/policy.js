// __NAME__: a scaling policy for the Docker Swarm autoscaler (contract 0.2.0).
//
// The rule to start from: add a replica while the service's mean CPU is at
// or above `cpu.upper`, remove one while it is at or below `cpu.lower`,
// nothing in between. Change `settings` and `decide` to your rule.
//
// - build: ./build.sh (componentize-js; leaves __NAME__.wasm here);
// - test: ./test.sh runs the component through the daemon's runtime.
//
// Values follow componentize-js: variants are `{ tag, val }`, enums are
// strings, `option<T>` is a value or `undefined`, `u64` is a BigInt.

import { log } from 'autoscaler:policy/host@0.2.0';

// The settings, in the order `decide` receives them in `state.settings`.
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

export function decide(event, state) {
    const cpu = state.metrics.find((a) => a.metric.tag === 'cpu');
    if (cpu === undefined || cpu.reporting === 0) {
        return undefined;
    }
    const [upper, lower] = state.settings.map((s) => s?.val);
    if (upper === undefined || lower === undefined) {
        log('warn', `${event.serviceName}: cpu.upper or cpu.lower missing`);
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
