// step: a scaling policy written in C (contract autoscaler:policy@1.0.0).
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
// Each call is self-contained: `state` carries the service's name, its
// parsed settings and the service view, so the policy keeps nothing between
// calls.
//
// Build: ./build.sh (clang for wasm32 with wasi-libc, wit-bindgen's C
// bindings in gen/, wasm-tools to make the component). The bindings own
// every string and list: `decide` frees its arguments, the daemon frees
// the returned values through the generated post-return functions.
// Strings (`policy_string_t`) are UTF-8 bytes with a length, not
// NUL-terminated.

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/policy.h"

typedef autoscaler_policy_types_aggregate_t aggregate_t;
typedef autoscaler_policy_types_setting_value_t setting_value_t;

// The settings; `state->settings` holds their values in this order.
static const struct {
    const char *name;
    autoscaler_policy_types_setting_type_t kind;
    const char *fallback;
    const char *doc;
} SETTINGS[] = {
    {"cpu.upper", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER, "0.75",
     "mean CPU (fraction of the limit) at or above which replicas are added"},
    {"cpu.lower", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER, "0.25",
     "mean CPU (fraction of the limit) at or below which a replica is removed"},
    {"step.size", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_NUMBER, "1",
     "replicas added by one decision (a whole number >= 1)"},
    {"step.settle", AUTOSCALER_POLICY_TYPES_SETTING_TYPE_DURATION, "60s",
     "no scale-in this soon after a scale-up: hold it instead"},
};
enum { SETTINGS_LEN = sizeof SETTINGS / sizeof SETTINGS[0] };

void exports_policy_settings(policy_list_setting_spec_t *ret) {
    ret->len = SETTINGS_LEN;
    ret->ptr = calloc(SETTINGS_LEN, sizeof *ret->ptr);
    for (size_t i = 0; i < SETTINGS_LEN; i++) {
        policy_string_dup(&ret->ptr[i].name, SETTINGS[i].name);
        ret->ptr[i].kind = SETTINGS[i].kind;
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

// The service view of the metric `name`, or NULL when the daemon does not
// measure it for this service.
static const aggregate_t *metric(const policy_state_t *state, const char *name) {
    for (size_t i = 0; i < state->metrics.len; i++) {
        if (is(&state->metrics.ptr[i].metric, name)) {
            return &state->metrics.ptr[i];
        }
    }
    return NULL;
}

// The value of the setting `name`, or NULL when it has none.
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

// A duration setting in nanoseconds, or `fallback` when it has no value.
static uint64_t duration_ns(const policy_state_t *state, const char *name, uint64_t fallback) {
    const setting_value_t *value = setting(state, name);
    return value && value->tag == AUTOSCALER_POLICY_TYPES_SETTING_VALUE_DURATION_NS ? value->val.duration_ns : fallback;
}

// A line in the daemon's log, printf-style, naming the service.
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

// A decision: `action` (already filled in) with a printf-style reason.
__attribute__((format(printf, 2, 3))) static bool reason(policy_decision_t *ret, const char *format, ...) {
    char text[160];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    policy_string_dup(&ret->reason, text);
    return true;
}

// The decision rule, on borrowed arguments; fills `ret` and returns true
// for a decision.
static bool rule(const policy_event_t *event, const policy_state_t *state, policy_decision_t *ret) {
    if (!is(&event->metric, "cpu")) {
        return false;
    }
    const aggregate_t *cpu = metric(state, "cpu");
    if (cpu == NULL || cpu->reporting == 0) {
        return false;  // every replica still warming up
    }
    double upper = number(state, "cpu.upper");
    double lower = number(state, "cpu.lower");
    double size = number(state, "step.size");
    uint64_t settle = duration_ns(state, "step.settle", 60000000000ull);
    if (!(size >= 1) || size != floor(size) || !(lower < upper)) {
        say(AUTOSCALER_POLICY_HOST_LEVEL_WARN, state,
            "step.size must be a whole number >= 1 and cpu.lower below cpu.upper; no decision");
        return false;
    }
    double mean = cpu->value.mean;
    uint32_t current = state->current_replicas;
    if (mean >= upper) {
        uint64_t wanted = (uint64_t)current + (uint64_t)size;
        uint32_t target = wanted > state->max_replicas ? state->max_replicas : (uint32_t)wanted;
        if (target == current) {
            return false;
        }
        ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_SCALE;
        ret->action.val.scale = target;
        return reason(ret, "cpu mean %.2f >= %.2f: %u -> %u", mean, upper, current, target);
    }
    if (mean > lower) {
        return false;
    }
    uint64_t now = state->now_ns;
    if (state->last_scale_up_ns.is_some && now - state->last_scale_up_ns.val < settle) {
        if (state->hold_until_ns.is_some && state->hold_until_ns.val > now) {
            return false;  // already held
        }
        uint64_t since = now - state->last_scale_up_ns.val;
        ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_HOLD;
        ret->action.val.hold = settle - since;
        return reason(ret, "cpu mean %.2f <= %.2f, but scaled up %.1f s ago: hold scale-in for the settle time", mean,
                      lower, (double)since / 1e9);
    }
    uint32_t target = current > state->min_replicas ? current - 1 : state->min_replicas;
    if (target == current) {
        return false;
    }
    ret->action.tag = AUTOSCALER_POLICY_TYPES_ACTION_SCALE;
    ret->action.val.scale = target;
    return reason(ret, "cpu mean %.2f <= %.2f: %u -> %u", mean, lower, current, target);
}

bool exports_policy_decide(policy_event_t *event, policy_state_t *state, policy_decision_t *ret) {
    bool decided = rule(event, state, ret);
    policy_event_free(event);
    policy_state_free(state);
    return decided;
}
