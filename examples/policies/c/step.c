// step: a scaling policy written in C (contract 0.2.0, `wit/v0.2`).
//
// It decides on the service view of CPU (the mean over the replicas that
// report), on every CPU event:
// - mean at or above `cpu.upper` (default 0.75): add `step.size` replicas
//   (default 1);
// - mean at or below `cpu.lower` (default 0.25): remove one replica, unless
//   the service was scaled up less than `step.settle` ago (default 60s):
//   then hold scale-in for the rest of that time instead, so that a replica
//   added for a burst is not removed while the burst may come back;
// - in between: nothing.
//
// Build: ./build.sh (clang for wasm32 with wasi-libc, wit-bindgen's C
// bindings in gen/, wasm-tools to make the component). The bindings own
// every string and list: `decide` frees its arguments, the daemon frees the
// returned values through the generated post-return functions.

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/policy.h"

// The settings, in the order `decide` receives them in `state->settings`.
enum { CPU_UPPER, CPU_LOWER, STEP_SIZE, STEP_SETTLE, SETTINGS };

struct spec {
    const char *name;
    autoscaler_policy_types_setting_type_t kind;
    const char *fallback;
    const char *doc;
};

static const struct spec SPECS[SETTINGS] = {
    [CPU_UPPER] = {"cpu.upper", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER, "0.75",
                   "mean CPU (fraction of the limit) at or above which replicas are added"},
    [CPU_LOWER] = {"cpu.lower", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER, "0.25",
                   "mean CPU (fraction of the limit) at or below which a replica is removed"},
    [STEP_SIZE] = {"step.size", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER, "1",
                   "replicas added by one decision (a whole number >= 1)"},
    [STEP_SETTLE] = {"step.settle", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_DURATION, "60s",
                     "no scale-in this soon after a scale-up: hold it instead"},
};

static void set_string(policy_string_t *out, const char *text) {
    policy_string_dup(out, text);
}

void exports_policy_settings(policy_list_setting_spec_t *ret) {
    ret->len = SETTINGS;
    ret->ptr = calloc(SETTINGS, sizeof(autoscaler_policy_types_setting_spec_t));
    for (size_t i = 0; i < SETTINGS; i++) {
        autoscaler_policy_types_setting_spec_t *spec = &ret->ptr[i];
        set_string(&spec->name, SPECS[i].name);
        spec->kind = SPECS[i].kind;
        spec->required = false;
        spec->default_.is_some = true;
        set_string(&spec->default_.val, SPECS[i].fallback);
        set_string(&spec->doc, SPECS[i].doc);
    }
}

// The value of a number setting, or `fallback` if it is absent.
static double number(const autoscaler_policy_types_state_t *state, size_t index, double fallback) {
    if (index >= state->settings.len) {
        return fallback;
    }
    const autoscaler_policy_types_option_setting_value_t *value = &state->settings.ptr[index];
    if (!value->is_some || value->val.tag != AUTOSCALER_POLICY_TYPES_SETTING_VALUE_NUMBER) {
        return fallback;
    }
    return value->val.val.number;
}

static uint64_t duration_ns(const autoscaler_policy_types_state_t *state, size_t index, uint64_t fallback) {
    if (index >= state->settings.len) {
        return fallback;
    }
    const autoscaler_policy_types_option_setting_value_t *value = &state->settings.ptr[index];
    if (!value->is_some || value->val.tag != AUTOSCALER_POLICY_TYPES_SETTING_VALUE_DURATION_NS) {
        return fallback;
    }
    return value->val.val.duration_ns;
}

static void warn(const char *text) {
    policy_string_t message;
    set_string(&message, text);
    autoscaler_policy_host_log(AUTOSCALER_POLICY_HOST_LEVEL_WARN, &message);
    policy_string_free(&message);
}

// The decision rule, on borrowed arguments; fills `ret` and returns true
// for a decision.
static bool rule(const autoscaler_policy_types_event_t *event, const autoscaler_policy_types_state_t *state,
                 autoscaler_policy_types_decision_t *ret) {
    if (event->metric.tag != AUTOSCALER_POLICY_TYPES_METRIC_CPU) {
        return false;
    }
    const autoscaler_policy_types_aggregate_t *cpu = NULL;
    for (size_t i = 0; i < state->metrics.len; i++) {
        if (state->metrics.ptr[i].metric.tag == AUTOSCALER_POLICY_TYPES_METRIC_CPU) {
            cpu = &state->metrics.ptr[i];
        }
    }
    if (cpu == NULL || cpu->reporting == 0) {
        return false;  // every replica still warming up
    }
    double upper = number(state, CPU_UPPER, 0.75);
    double lower = number(state, CPU_LOWER, 0.25);
    double size = number(state, STEP_SIZE, 1);
    uint64_t settle = duration_ns(state, STEP_SETTLE, 60000000000ull);
    if (size < 1 || size != floor(size) || lower >= upper) {
        warn("step: step.size must be a whole number >= 1 and cpu.lower below cpu.upper; no decision");
        return false;
    }
    double mean = cpu->value.mean;
    uint32_t current = state->current_replicas;
    char reason[160];
    if (mean >= upper) {
        uint64_t wanted = (uint64_t)current + (uint64_t)size;
        uint32_t target = wanted > state->max_replicas ? state->max_replicas : (uint32_t)wanted;
        if (target == current) {
            return false;
        }
        snprintf(reason, sizeof reason, "cpu mean %.2f >= %.2f: %u -> %u", mean, upper, current, target);
        ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_SCALE;
        ret->action.val.scale = target;
    } else if (mean <= lower) {
        uint64_t now = state->now_ns;
        if (state->last_scale_up_ns.is_some && now - state->last_scale_up_ns.val < settle) {
            if (state->hold_until_ns.is_some && state->hold_until_ns.val > now) {
                return false;  // already held
            }
            uint64_t remaining = settle - (now - state->last_scale_up_ns.val);
            snprintf(reason, sizeof reason, "cpu mean %.2f <= %.2f, but scaled up %.1f s ago: hold scale-in for the settle time",
                     mean, lower, (double)(now - state->last_scale_up_ns.val) / 1e9);
            ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_HOLD;
            ret->action.val.hold = remaining;
        } else {
            uint32_t target = current > state->min_replicas ? current - 1 : state->min_replicas;
            if (target == current) {
                return false;
            }
            snprintf(reason, sizeof reason, "cpu mean %.2f <= %.2f: %u -> %u", mean, lower, current, target);
            ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_SCALE;
            ret->action.val.scale = target;
        }
    } else {
        return false;
    }
    set_string(&ret->reason, reason);
    return true;
}

bool exports_policy_decide(policy_event_t *event, policy_state_t *state, policy_decision_t *ret) {
    bool decided = rule(event, state, ret);
    policy_event_free(event);
    policy_state_free(state);
    return decided;
}
