// __NAME__: a scaling policy for the Docker Swarm autoscaler (contract autoscaler:policy@1.0.0).
//
// The rule to start from: add a replica while the service's mean CPU is at
// or above `cpu.upper`, remove one while it is at or below `cpu.lower`,
// nothing in between. Change `SETTINGS` and `rule` to your rule.
//
// - build: ./build.sh (componentize-js; leaves __NAME__.wasm here);
// - test: ./test.sh runs the component through the daemon's runtime.
//
// `rule(event, state)` gets everything in each call: the event
// (`event.metric` names the metric, 'cpu', 'memory', 'connections'...), the
// service's name and replica counts, its settings (`setting(state,
// 'cpu.upper')`) and the service view over its replicas (`metric(state,
// 'cpu')`). It returns a decision or `undefined`.
//
// Values follow componentize-js: variants are `{ tag, val }`, enums are
// strings, `option<T>` is a value or `undefined`, `u64` is a BigInt
// (`state.nowNs`, durations).

import { log } from 'autoscaler:policy/host@1.0.0';

// The settings this policy reads (service labels `autoscale.<name>`);
// `state.settings` holds their values in this order.
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
const INDEX = new Map(SETTINGS.map((spec, i) => [spec.name, i]));

export function settings() {
    return SETTINGS;
}

// The value of the setting `name` (a number, a BigInt of nanoseconds for a
// duration, a boolean, a string), or `undefined`.
function setting(state, name) {
    return state.settings[INDEX.get(name)]?.val;
}

// The service view of the metric `name` (mean, min, max and sum over the
// replicas that report), or `undefined` when the daemon does not measure it.
function metric(state, name) {
    return state.metrics.find((aggregate) => aggregate.metric === name);
}

// The requests the service holds: the larger of the requests in flight and
// the connections queued, summed over the reporting replicas; `undefined`
// when neither is reported.
//
// Not their sum: `inflight` counts a request from the arrival of its data,
// accept-queue time included, so a queued connection whose request has
// arrived is in both (docs/demand.md). `queue` is larger only when
// connections wait with no request yet (a SYN backlog, a client that has
// not sent), which `inflight` cannot see.
function demand(state) {
    const sums = [metric(state, 'inflight'), metric(state, 'queue')]
        .filter((aggregate) => aggregate !== undefined && aggregate.reporting > 0)
        .map((aggregate) => aggregate.value.sum);
    return sums.length === 0 ? undefined : Math.max(0, ...sums);
}

// The rule: a decision for this event and state, or `undefined`.
function rule(event, state) {
    const cpu = metric(state, 'cpu');
    // Demand past saturation (docs/demand.md): requests in flight and waiting
    // to be accepted, summed over the replicas; with it a rule can ask for
    // the count the load needs in one step:
    //   const held = demand(state); // also metric(state, 'request-rate'), 'response-time-p95'
    //   const needed = held === undefined ? undefined : Math.ceil(held / 10); // 10 per replica
    if (cpu === undefined || cpu.reporting === 0) {
        return undefined; // not measured, or every replica still warming up
    }
    const upper = setting(state, 'cpu.upper');
    const lower = setting(state, 'cpu.lower');
    if (!(lower < upper)) {
        log('warn', `${state.serviceName}: cpu.lower must be below cpu.upper`);
        return undefined;
    }
    const current = state.currentReplicas;
    const mean = cpu.value.mean;
    let target;
    if (mean >= upper) {
        target = Math.min(current + 1, state.maxReplicas);
    } else if (mean <= lower) {
        // To keep the count and refuse scale-in for a while instead:
        // return { action: { tag: 'hold', val: 60_000_000_000n }, reason: '...' };
        target = Math.max(current - 1, state.minReplicas);
    } else {
        return undefined;
    }
    if (target === current) {
        return undefined;
    }
    const held = demand(state);
    const also = held === undefined ? '' : ` (demand ${held})`;
    return { action: { tag: 'scale', val: target }, reason: `mean cpu ${mean.toFixed(2)}: ${current} -> ${target}${also}` };
}

// What the daemon calls. An exception in `rule` is logged with its stack
// before the call fails (componentize-js itself reports nothing but a
// trap), so `host policy run` and the daemon's log show where it happened.
// A decision the contract cannot carry is refused here rather than
// silently converted.
export function decide(event, state) {
    try {
        return checked(rule(event, state));
    } catch (err) {
        log('error', err instanceof Error ? `${err}\n${err.stack ?? ''}`.trimEnd() : `uncaught ${typeof err}: ${err}`);
        throw err;
    }
}

// `decision` unchanged, or a TypeError naming what does not fit:
// `scale` is a whole count of replicas (a Number, 0 to 2^32-1; 2.5 is not
// rounded for you), `hold` is nanoseconds as a BigInt (`60_000_000_000n`).
function checked(decision) {
    if (decision === undefined) {
        return decision;
    }
    const { tag, val } = decision.action ?? {};
    if (tag === 'scale' && !(Number.isInteger(val) && val >= 0 && val <= 0xffffffff)) {
        throw new TypeError(`scale: ${val} is not a whole replica count (0 to 4294967295); round it first (Math.ceil)`);
    }
    if (tag === 'hold' && !(typeof val === 'bigint' && val >= 0n && val < 1n << 64n)) {
        throw new TypeError(`hold: ${val} (${typeof val}) is not nanoseconds as a BigInt; write 60_000_000_000n, or BigInt(seconds) * 1_000_000_000n`);
    }
    if (tag !== 'scale' && tag !== 'hold') {
        throw new TypeError(`action ${tag}: a decision's action is { tag: 'scale', val } or { tag: 'hold', val }`);
    }
    return decision;
}
