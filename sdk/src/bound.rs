//! The services the daemon bound to this instance (contract 0.3
//! `bind-service`), by handle, and the [`Event`] and [`State`] a call's
//! arguments make with them.
//!
//! The daemon gives each service a small handle, binds it (its id, name and
//! typed settings) before its first `decide` in an instance and again when
//! its settings change, and unbinds it when it stops asking. The table is a
//! vector indexed by handle; a call looks its service up there and clones
//! three reference counts, so nothing is copied or parsed per call. A
//! component instance has one thread, so the thread-local is a plain
//! global there.

use std::cell::RefCell;
use std::sync::Arc;

use crate::bindings::autoscaler::policy::types as wit;
use crate::declared::ensure_declared;
use crate::view::{ContainerId, Metrics, SharedStr};
use crate::{Event, Level, SettingSpec, SettingValue, State};

/// Handles at or above this are refused: the contract promises small
/// numbers (the daemon reuses freed ones), and the table is indexed by them.
const MAX_HANDLE: u32 = 1 << 16;

/// What `bind-service` said about a service.
#[derive(Debug)]
struct Binding {
    /// The Swarm service id.
    id: SharedStr,
    /// The Swarm service name.
    name: SharedStr,
    /// The declared settings' values, in declared order.
    settings: Arc<[Option<SettingValue>]>,
}

thread_local! {
    /// Bindings by handle; `None` for a handle not bound.
    static BOUND: RefCell<Vec<Option<Binding>>> = const { RefCell::new(Vec::new()) };
}

/// The exported `bind-service`: remember `service` under its handle, replacing
/// an earlier binding of the handle. Also declares the policy's settings in a
/// fresh instance, so that they are read by name from the first call.
pub fn bind(service: wit::Service, settings: fn() -> Vec<SettingSpec>) {
    ensure_declared(settings);
    if service.handle >= MAX_HANDLE {
        crate::log(Level::Error, &format!("service {} bound with handle {}: too large", service.name, service.handle));
        return;
    }
    let handle = service.handle as usize;
    let binding = Binding { id: service.id.into(), name: service.name.into(), settings: Arc::from(service.settings) };
    BOUND.with_borrow_mut(|bound| {
        if bound.len() <= handle {
            bound.resize_with(handle + 1, || None);
        }
        bound[handle] = Some(binding);
    });
}

/// The exported `unbind-service`: forget the service bound under `handle`.
pub fn unbind(handle: u32) {
    BOUND.with_borrow_mut(|bound| {
        if let Some(slot) = bound.get_mut(handle as usize) {
            *slot = None;
        }
    });
}

/// The event and state of a call for the service bound under `handle`;
/// `None` (and a log line) if nothing is bound there, which the daemon
/// never does.
pub fn view(handle: u32, event: wit::Event, state: wit::State) -> Option<(Event, State)> {
    let shared = BOUND.with_borrow(|bound| {
        let binding = bound.get(handle as usize)?.as_ref()?;
        Some((binding.id.clone(), binding.name.clone(), binding.settings.clone()))
    });
    let Some((service_id, service_name, settings)) = shared else {
        crate::log(Level::Error, &format!("decide for service handle {handle}, which was never bound; no decision"));
        return None;
    };
    let event = Event {
        metric: event.metric,
        value: event.value,
        unit: event.unit,
        kind: event.kind,
        container: event.container,
        container_id: ContainerId::from_number(event.container),
        service_id,
        service_name,
        timestamp_ns: event.timestamp_ns,
    };
    let state = State {
        current_replicas: state.current_replicas,
        min_replicas: state.min_replicas,
        max_replicas: state.max_replicas,
        now_ns: state.now_ns,
        last_scale_up_ns: state.last_scale_up_ns,
        last_scale_down_ns: state.last_scale_down_ns,
        hold_until_ns: state.hold_until_ns,
        metrics: Metrics {
            cpu: state.cpu,
            memory: state.memory,
            connections: state.connections,
            others: state.other_metrics.unwrap_or_default(),
        },
        settings,
    };
    Some((event, state))
}
