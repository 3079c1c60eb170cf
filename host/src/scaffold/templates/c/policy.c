// __NAME__: a scaling policy for the Docker Swarm autoscaler (contract 0.3.0).
//
// The rule to start from: add a replica while the service's mean CPU is at
// or above `cpu.upper`, remove one while it is at or below `cpu.lower`,
// nothing in between. Change `SPECS`, `struct bound` (what `bind_service`
// keeps of a service) and `rule` to your rule.
//
// - build: ./build.sh (clang for wasm32, wit-bindgen, wasm-tools; leaves
//   __NAME__.wasm here);
// - test: ./test.sh runs the component through the daemon's runtime.
//
// The daemon binds each service (`bind_service`: its handle, id, name and
// typed settings) before it decides for it, and again when its labels
// change; `decide` names the service by its handle. `services` keeps each
// handle's settings; handles are small numbers the daemon reuses.
//
// The types are generated from wit/ into gen/policy.h. The bindings own
// every string and list: each export frees its arguments; what it returns
// is freed after the call by the generated code. printf goes to the daemon's
// log, tagged with the policy's name.

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/policy.h"

// The settings, in the order `bind_service` receives them in `service->settings`.
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

// One bound service: its settings, NAN where one has no value.
struct bound {
    bool bound;
    double upper, lower;
};

static struct bound *services;
static size_t services_len;

// A number setting, or NAN if it has no value.
static double number(const autoscaler_policy_types_list_option_setting_value_t *settings, size_t index) {
    if (index >= settings->len || !settings->ptr[index].is_some ||
        settings->ptr[index].val.tag != AUTOSCALER_POLICY_TYPES_SETTING_VALUE_NUMBER) {
        return NAN;
    }
    return settings->ptr[index].val.val.number;
}

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
    services[handle] = (struct bound){
        .bound = true,
        .upper = number(&service->settings, CPU_UPPER),
        .lower = number(&service->settings, CPU_LOWER),
    };
    policy_service_free(service);
}

void exports_policy_unbind_service(uint32_t handle) {
    if (handle < services_len) {
        services[handle].bound = false;
    }
}

// The rule, on borrowed arguments: fills `ret` and returns true to decide.
static bool rule(const struct bound *service, const policy_event_t *event, const policy_state_t *state,
                 policy_decision_t *ret) {
    (void)event;
    double upper = service->upper, lower = service->lower;
    if (!state->cpu.is_some || state->cpu.val.reporting == 0 || isnan(upper) || isnan(lower)) {
        return false;
    }
    uint32_t current = state->current_replicas, target;
    double mean = state->cpu.val.value.mean;
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

bool exports_policy_decide(uint32_t handle, policy_event_t *event, policy_state_t *state, policy_decision_t *ret) {
    if (handle >= services_len || !services[handle].bound) {
        abort();  // the daemon binds before it decides: a trap, and it binds again
    }
    bool decided = rule(&services[handle], event, state, ret);
    policy_event_free(event);
    policy_state_free(state);
    return decided;
}
