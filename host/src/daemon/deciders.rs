//! The threads that run policies: one per loaded policy, so that a slow or
//! stuck policy delays only the services bound to it, never the event loop
//! or another policy's services.
//!
//! Each policy's queue holds at most one job per service: a newer job for a
//! service replaces the one still waiting (coalescing), because only the
//! newest event and service view matter. A policy's backlog is therefore
//! bounded by the number of services bound to it, and a policy is never
//! called on stale states. Services are served in the order they became
//! ready. A panic while deciding is caught: the thread stays and the job
//! fails with a cause.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::model::{self, Decision, Event, State};
use crate::policy::{PolicyError, PolicySlot};
use crate::swarm::ServiceConfig;

/// One event to decide on, with what the actuator needs afterwards.
#[derive(Debug)]
pub struct Job {
    /// The service's policy.
    pub slot: Arc<PolicySlot>,
    /// Its name.
    pub policy: String,
    /// The service's labels when the event arrived.
    pub config: Arc<ServiceConfig>,
    /// The event, attributed to its service.
    pub event: Event,
    /// The service's state, with the service view.
    pub state: State,
}

/// A policy's answer to a [`Job`].
#[derive(Debug)]
pub struct Decided {
    /// The job.
    pub job: Job,
    /// What the policy said.
    pub result: Result<Option<Decision>, PolicyError>,
    /// CLOCK_MONOTONIC ns when it answered.
    pub decided_ns: u64,
    /// Time spent in `decide`.
    pub took: Duration,
}

/// Jobs waiting for one policy: at most one per service.
#[derive(Debug, Default)]
struct Waiting {
    /// The newest job of each service that has one.
    jobs: HashMap<String, Job>,
    /// Services in the order their job became ready.
    order: VecDeque<String>,
    /// No more jobs: the thread ends once the queue is empty.
    closed: bool,
}

/// One policy's queue, shared with its thread.
#[derive(Debug, Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    ready: Condvar,
}

/// One policy's thread and queue.
#[derive(Debug)]
struct Worker {
    queue: Arc<Queue>,
    thread: JoinHandle<()>,
}

/// Every policy's decider thread.
#[derive(Debug)]
pub struct Deciders {
    /// Policy name -> its worker.
    workers: HashMap<String, Worker>,
    /// Where answers go (the event loop).
    answers: mpsc::Sender<Decided>,
    /// Jobs replaced by a newer one for the same service before they ran.
    coalesced: Arc<AtomicU64>,
}

impl Deciders {
    /// No threads yet: one starts with the first job of each policy.
    pub fn new(answers: mpsc::Sender<Decided>) -> Deciders {
        Deciders { workers: HashMap::new(), answers, coalesced: Arc::default() }
    }

    /// Jobs replaced by a newer one before they ran, so far.
    pub fn coalesced(&self) -> Arc<AtomicU64> {
        self.coalesced.clone()
    }

    /// Queue `job` on its policy's thread, replacing the job still waiting
    /// for the same service, if any. Never blocks on a policy.
    pub fn submit(&mut self, job: Job) -> anyhow::Result<()> {
        let worker = match self.workers.get(&job.policy) {
            Some(worker) if !worker.thread.is_finished() => worker,
            _ => {
                let worker = spawn(&job.policy, self.answers.clone())?;
                self.workers.insert(job.policy.clone(), worker);
                &self.workers[&job.policy]
            }
        };
        let mut waiting = worker.queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let service = job.event.service_id.clone();
        if waiting.jobs.insert(service.clone(), job).is_some() {
            self.coalesced.fetch_add(1, Ordering::Relaxed);
        } else {
            waiting.order.push_back(service);
        }
        worker.queue.ready.notify_one();
        Ok(())
    }

    /// The policy was unloaded: its thread ends after the job it runs.
    pub fn retire(&mut self, policy: &str) {
        if let Some(worker) = self.workers.remove(policy) {
            close(&worker.queue, true);
        }
    }

    /// Stop every thread: waiting jobs are dropped, a call in progress ends
    /// within its time limit. Waits at most `grace`, then names the threads
    /// still busy and leaves them (a thread cannot be killed; the process
    /// is exiting).
    pub fn shutdown(self, grace: Duration) {
        for worker in self.workers.values() {
            close(&worker.queue, true);
        }
        let deadline = Instant::now() + grace;
        let mut busy = Vec::new();
        for (policy, worker) in self.workers {
            while !worker.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if worker.thread.is_finished() {
                let _ = worker.thread.join();
            } else {
                busy.push(policy);
            }
        }
        if !busy.is_empty() {
            tracing::warn!(
                "policies still running at shutdown after {}: {}",
                crate::units::human_duration(grace),
                busy.join(", ")
            );
        }
    }
}

/// Close a queue; with `drop_waiting`, forget the jobs not yet started.
fn close(queue: &Queue, drop_waiting: bool) {
    let mut waiting = queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
    waiting.closed = true;
    if drop_waiting {
        waiting.jobs.clear();
        waiting.order.clear();
    }
    queue.ready.notify_all();
}

fn spawn(policy: &str, answers: mpsc::Sender<Decided>) -> anyhow::Result<Worker> {
    let queue = Arc::new(Queue::default());
    let shared = queue.clone();
    let thread = std::thread::Builder::new()
        .name(format!("decide-{}", policy.chars().take(8).collect::<String>()))
        .spawn(move || run(&shared, &answers))
        .map_err(|e| anyhow::anyhow!("starting the decider thread of policy {policy}: {e}"))?;
    Ok(Worker { queue, thread })
}

/// The thread: take the next service's newest job, decide, answer.
fn run(queue: &Queue, answers: &mpsc::Sender<Decided>) {
    loop {
        let job = {
            let mut waiting = queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(service) = waiting.order.pop_front() {
                    if let Some(job) = waiting.jobs.remove(&service) {
                        break job;
                    }
                    continue;
                }
                if waiting.closed {
                    return;
                }
                waiting = queue.ready.wait(waiting).unwrap_or_else(|p| p.into_inner());
            }
        };
        let span = tracing::debug_span!(
            "decide", service = %job.event.service_name, policy = %job.policy,
            metric = %job.event.metric, value = job.event.value
        );
        let started = Instant::now();
        let result = span.in_scope(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| job.slot.decide(&job.event, &job.state))).unwrap_or_else(
                |panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(policy = %job.policy, "the decider panicked while running the policy: {what}; it goes on");
                    Err(PolicyError::Trap { policy: job.policy.clone(), reason: format!("the host panicked: {what}") })
                },
            )
        });
        let took = started.elapsed();
        let decided_ns = model::monotonic_ns();
        // The loop is gone: shutting down.
        if answers.blocking_send(Decided { job, result, decided_ns, took }).is_err() {
            return;
        }
    }
}
