// __NAME__: a scaling policy for the Docker Swarm autoscaler (contract autoscaler:policy@1.0.0).
//
// The rule to start from: add a replica while the service's mean CPU is at
// or above `cpu.upper`, remove one while it is at or below `cpu.lower`,
// nothing in between. Change `SETTINGS` and `rule` to your rule.
//
// - build: ./build.sh (clang for wasm32, wit-bindgen, wasm-tools; leaves
//   __NAME__.wasm here);
// - test: ./test.sh runs the component through the daemon's runtime.
//
// `rule(event, state, ret)` gets everything in each call: the event
// (`event->metric` names the metric, "cpu", "memory", "connections"...), the
// service's name and replica counts, its settings (`number(state,
// "cpu.upper")`) and the service view over its replicas (`metric(state,
// "cpu")`). It fills `ret` and returns true for a decision.
//
// The types are generated from wit/ into gen/policy.h. Strings
// (`policy_string_t`) are UTF-8 bytes with a length, not NUL-terminated.
// The bindings own every string and list: `decide` frees its arguments;
// what it returns is freed after the call by the generated code.

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/policy.h"

typedef autoscaler_policy_types_aggregate_t aggregate_t;
typedef autoscaler_policy_types_setting_value_t setting_value_t;

// The settings this policy reads (service labels `autoscale.<name>`);
// `state->settings` holds their values in this order.
static const struct {
    const char *name, *fallback, *doc;
} SETTINGS[] = {
    {"cpu.upper", "0.8", "mean CPU (fraction of the limit) at or above which a replica is added"},
    {"cpu.lower", "0.3", "mean CPU (fraction of the limit) at or below which a replica is removed"},
};
enum { SETTINGS_LEN = sizeof SETTINGS / sizeof SETTINGS[0] };

void exports_policy_settings(policy_list_setting_spec_t *ret) {
    ret->len = SETTINGS_LEN;
    ret->ptr = calloc(SETTINGS_LEN, sizeof *ret->ptr);
    for (size_t i = 0; i < SETTINGS_LEN; i++) {
        policy_string_dup(&ret->ptr[i].name, SETTINGS[i].name);
        ret->ptr[i].kind = AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER;
        ret->ptr[i].required = false;
        ret->ptr[i].default_.is_some = true;
        policy_string_dup(&ret->ptr[i].default_.val, SETTINGS[i].fallback);
        policy_string_dup(&ret->ptr[i].doc, SETTINGS[i].doc);
    }
}

static bool is(const policy_string_t *text, const char *name) {
    size_t len = strlen(name);
    return text->len == len && memcmp(text->ptr, name, len) == 0;
}

// The service view of the metric `name` (mean, min, max and sum over the
// replicas that report), or NULL when the daemon does not measure it.
static const aggregate_t *metric(const policy_state_t *state, const char *name) {
    for (size_t i = 0; i < state->metrics.len; i++) {
        if (is(&state->metrics.ptr[i].metric, name)) {
            return &state->metrics.ptr[i];
        }
    }
    return NULL;
}

// The requests the service holds: the larger of the requests in flight and
// the connections queued, summed over the reporting replicas; NAN when
// neither is reported.
//
// Not their sum: `inflight` counts a request from the arrival of its data,
// accept-queue time included, so a queued connection whose request has
// arrived is in both (docs/demand.md). `queue` is larger only when
// connections wait with no request yet (a SYN backlog, a client that has
// not sent), which `inflight` cannot see.
__attribute__((unused)) static double demand(const policy_state_t *state) {
    const aggregate_t *inflight = metric(state, "inflight"), *queue = metric(state, "queue");
    bool has_inflight = inflight != NULL && inflight->reporting > 0;
    bool has_queue = queue != NULL && queue->reporting > 0;
    if (!has_inflight && !has_queue) {
        return NAN;
    }
    double a = has_inflight ? inflight->value.sum : 0.0, b = has_queue ? queue->value.sum : 0.0;
    return fmax(a, b);
}

// The value of the setting `name` (`tag` says which case of `val`), or
// NULL when it has none.
static const setting_value_t *setting(const policy_state_t *state, const char *name) {
    for (size_t i = 0; i < SETTINGS_LEN && i < state->settings.len; i++) {
        if (strcmp(SETTINGS[i].name, name) == 0) {
            return state->settings.ptr[i].is_some ? &state->settings.ptr[i].val : NULL;
        }
    }
    return NULL;
}

// A number setting, or NAN when it has no value.
static double number(const policy_state_t *state, const char *name) {
    const setting_value_t *value = setting(state, name);
    return value && value->tag == AUTOSCALER_POLICY_TYPES_SETTING_VALUE_NUMBER ? value->val.number : NAN;
}

// A line in the daemon's log at `level`, printf-style, naming the service:
// the host `log` import (autoscaler_policy_host_log in gen/policy.h).
// Plain printf/fprintf(stderr) output reaches the same log at info, and is
// shown with the error when a call fails.
__attribute__((format(printf, 3, 4))) static void say(autoscaler_policy_host_level_t level,
                                                      const policy_state_t *state, const char *format, ...) {
    char line[256];
    int at = snprintf(line, sizeof line, "%.*s: ", (int)state->service_name.len, (const char *)state->service_name.ptr);
    if (at < 0 || (size_t)at >= sizeof line) {
        at = 0;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(line + at, sizeof line - at, format, args);
    va_end(args);
    policy_string_t message = {(uint8_t *)line, strlen(line)};
    autoscaler_policy_host_log(level, &message);
}

// The rule, on borrowed arguments: fills `ret` and returns true to decide.
static bool rule(const policy_event_t *event, const policy_state_t *state, policy_decision_t *ret) {
    (void)event;
    const aggregate_t *cpu = metric(state, "cpu");
    // Demand past saturation (docs/demand.md): requests in flight and waiting
    // to be accepted, summed over the replicas; with it a rule can ask for
    // the count the load needs in one step:
    //   double held = demand(state);  // also metric(state, "request-rate"), "response-time-p95"
    //   uint32_t needed = isnan(held) ? 0 : (uint32_t)ceil(held / 10);  // 10 per replica
    if (cpu == NULL || cpu->reporting == 0) {
        return false;  // not measured, or every replica still warming up
    }
    double upper = number(state, "cpu.upper"), lower = number(state, "cpu.lower");
    if (!(lower < upper)) {
        say(AUTOSCALER_POLICY_HOST_LEVEL_WARN, state, "cpu.lower must be below cpu.upper");
        return false;
    }
    uint32_t current = state->current_replicas, target;
    double mean = cpu->value.mean;
    if (mean >= upper) {
        target = current < state->max_replicas ? current + 1 : state->max_replicas;
    } else if (mean <= lower) {
        // To keep the count and refuse scale-in for a while instead:
        // ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_HOLD;
        // ret->action.val.hold = 60000000000ull;  // nanoseconds
        target = current > state->min_replicas ? current - 1 : state->min_replicas;
    } else {
        return false;
    }
    if (target == current) {
        return false;
    }
    char reason[128];
    double held = demand(state);
    int at = snprintf(reason, sizeof reason, "mean cpu %.2f: %u -> %u", mean, current, target);
    if (!isnan(held) && at > 0 && (size_t)at < sizeof reason) {
        snprintf(reason + at, sizeof reason - at, " (demand %g)", held);
    }
    ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_SCALE;
    ret->action.val.scale = target;
    policy_string_dup(&ret->reason, reason);
    return true;
}

bool exports_policy_decide(policy_event_t *event, policy_state_t *state, policy_decision_t *ret) {
    bool decided = rule(event, state, ret);
    policy_event_free(event);
    policy_state_free(state);
    return decided;
}
