// __NAME__: a scaling policy for the Docker Swarm autoscaler (contract 0.2.0).
//
// The rule to start from: add a replica while the service's mean CPU is at
// or above `cpu.upper`, remove one while it is at or below `cpu.lower`,
// nothing in between. Change `SPECS` and `rule` to your rule.
//
// - build: ./build.sh (clang for wasm32, wit-bindgen, wasm-tools; leaves
//   __NAME__.wasm here);
// - test: ./test.sh runs the component through the daemon's runtime.
//
// The types are generated from wit/ into gen/policy.h. The bindings own
// every string and list: `decide` frees its arguments; what it returns is
// freed after the call by the generated code. printf goes to the daemon's
// log, tagged with the policy's name.

#include <stdio.h>
#include <stdlib.h>

#include "gen/policy.h"

// The settings, in the order `decide` receives them in `state->settings`.
enum { CPU_UPPER, CPU_LOWER, SETTINGS };

static const struct {
    const char *name, *fallback, *doc;
} SPECS[SETTINGS] = {
    [CPU_UPPER] = {"cpu.upper", "0.8", "mean CPU (fraction of the limit) at or above which a replica is added"},
    [CPU_LOWER] = {"cpu.lower", "0.3", "mean CPU (fraction of the limit) at or below which a replica is removed"},
};

void exports_policy_settings(policy_list_setting_spec_t *ret) {
    ret->len = SETTINGS;
    ret->ptr = calloc(SETTINGS, sizeof *ret->ptr);
    for (size_t i = 0; i < SETTINGS; i++) {
        policy_string_dup(&ret->ptr[i].name, SPECS[i].name);
        ret->ptr[i].kind = AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER;
        ret->ptr[i].required = false;
        ret->ptr[i].default_.is_some = true;
        policy_string_dup(&ret->ptr[i].default_.val, SPECS[i].fallback);
        policy_string_dup(&ret->ptr[i].doc, SPECS[i].doc);
    }
}

// A number setting; false if it has no value.
static bool number(const policy_state_t *state, size_t index, double *out) {
    if (index >= state->settings.len || !state->settings.ptr[index].is_some ||
        state->settings.ptr[index].val.tag != AUTOSCALER_POLICY_TYPES_SETTING_VALUE_NUMBER) {
        return false;
    }
    *out = state->settings.ptr[index].val.val.number;
    return true;
}

// The rule, on borrowed arguments: fills `ret` and returns true to decide.
static bool rule(const policy_event_t *event, const policy_state_t *state, policy_decision_t *ret) {
    (void)event;
    const autoscaler_policy_types_aggregate_t *cpu = NULL;
    for (size_t i = 0; i < state->metrics.len; i++) {
        if (state->metrics.ptr[i].metric.tag == AUTOSCALER_POLICY_TYPES_METRIC_CPU) {
            cpu = &state->metrics.ptr[i];
        }
    }
    double upper, lower;
    if (cpu == NULL || cpu->reporting == 0 || !number(state, CPU_UPPER, &upper) || !number(state, CPU_LOWER, &lower)) {
        return false;
    }
    uint32_t current = state->current_replicas, target;
    double mean = cpu->value.mean;
    if (mean >= upper) {
        target = current < state->max_replicas ? current + 1 : state->max_replicas;
    } else if (mean <= lower) {
        target = current > state->min_replicas ? current - 1 : state->min_replicas;
    } else {
        return false;
    }
    if (target == current) {
        return false;
    }
    char reason[96];
    snprintf(reason, sizeof reason, "mean cpu %.2f: %u -> %u", mean, current, target);
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
