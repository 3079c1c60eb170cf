// step: a scaling policy written in C (contract 0.3.0).
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
// The daemon binds each service once (`bind_service`: its handle, id, name
// and typed settings) before it decides for it, and again when its labels
// change; `decide` then names the service by its handle. `services` keeps
// each handle's settings, read once at binding. Handles are small numbers
// the daemon reuses, so the table is an array indexed by handle.
//
// Build: ./build.sh (clang for wasm32 with wasi-libc, wit-bindgen's C
// bindings in gen/, wasm-tools to make the component). The bindings own
// every string and list: each export frees its arguments, the daemon frees
// the returned values through the generated post-return functions.

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/policy.h"

// The settings, in the order `bind_service` receives them in `service->settings`.
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
static double number(const autoscaler_policy_types_list_option_setting_value_t *settings, size_t index, double fallback) {
    if (index >= settings->len) {
        return fallback;
    }
    const autoscaler_policy_types_option_setting_value_t *value = &settings->ptr[index];
    if (!value->is_some || value->val.tag != AUTOSCALER_POLICY_TYPES_SETTING_VALUE_NUMBER) {
        return fallback;
    }
    return value->val.val.number;
}

static uint64_t duration_ns(const autoscaler_policy_types_list_option_setting_value_t *settings, size_t index, uint64_t fallback) {
    if (index >= settings->len) {
        return fallback;
    }
    const autoscaler_policy_types_option_setting_value_t *value = &settings->ptr[index];
    if (!value->is_some || value->val.tag != AUTOSCALER_POLICY_TYPES_SETTING_VALUE_DURATION_NS) {
        return fallback;
    }
    return value->val.val.duration_ns;
}

// One bound service's settings.
struct bound {
    bool bound;
    double upper, lower, size;
    uint64_t settle_ns;
};

static struct bound *services;
static size_t services_len;

void exports_policy_bind_service(policy_service_t *service) {
    uint32_t handle = service->handle;
    if (handle >= services_len) {
        size_t len = services_len ? services_len : 16;
        while (len <= handle) {
            len *= 2;
        }
        struct bound *grown = realloc(services, len * sizeof *grown);
        if (grown == NULL) {
            abort();  // a trap: the daemon replaces the instance and binds again
        }
        memset(grown + services_len, 0, (len - services_len) * sizeof *grown);
        services = grown;
        services_len = len;
    }
    const autoscaler_policy_types_list_option_setting_value_t *settings = &service->settings;
    services[handle] = (struct bound){
        .bound = true,
        .upper = number(settings, CPU_UPPER, 0.75),
        .lower = number(settings, CPU_LOWER, 0.25),
        .size = number(settings, STEP_SIZE, 1),
        .settle_ns = duration_ns(settings, STEP_SETTLE, 60000000000ull),
    };
    policy_service_free(service);
}

void exports_policy_unbind_service(uint32_t handle) {
    if (handle < services_len) {
        services[handle].bound = false;
    }
}

static void warn(const char *text) {
    policy_string_t message;
    set_string(&message, text);
    autoscaler_policy_host_log(AUTOSCALER_POLICY_HOST_LEVEL_WARN, &message);
    policy_string_free(&message);
}

// The decision rule, on borrowed arguments; fills `ret` and returns true
// for a decision.
static bool rule(const struct bound *service, const autoscaler_policy_types_event_t *event,
                 const autoscaler_policy_types_state_t *state, autoscaler_policy_types_decision_t *ret) {
    if (event->metric.tag != AUTOSCALER_POLICY_TYPES_METRIC_CPU) {
        return false;
    }
    if (!state->cpu.is_some || state->cpu.val.reporting == 0) {
        return false;  // every replica still warming up
    }
    const autoscaler_policy_types_aggregate_t *cpu = &state->cpu.val;
    double upper = service->upper;
    double lower = service->lower;
    double size = service->size;
    uint64_t settle = service->settle_ns;
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

bool exports_policy_decide(uint32_t handle, policy_event_t *event, policy_state_t *state, policy_decision_t *ret) {
    if (handle >= services_len || !services[handle].bound) {
        // The daemon binds before it decides; a handle it never bound is its bug.
        warn("step: decide for a service handle that was never bound");
        abort();
    }
    bool decided = rule(&services[handle], event, state, ret);
    policy_event_free(event);
    policy_state_free(state);
    return decided;
}
