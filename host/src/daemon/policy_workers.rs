//! The policy workers: one thread per loaded policy that runs its calls, so
//! that a slow or stuck policy delays only the services that use it, never
//! the event loop or another policy's services. (Multi-node mode's decider,
//! `cluster/decider.rs`, is a network endpoint and unrelated.)
//!
//! Each policy's queue holds at most one job per service: a newer job for a
//! service replaces the one still waiting (coalescing), because only the
//! newest event and service view matter. A policy's backlog is therefore
//! bounded by the number of services that use it, and a policy is never
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
    /// The thread waits for a job: only then does a new one wake it (a
    /// wake is a system call, and at thousands of readings a second the
    /// thread is mostly busy).
    idle: bool,
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

/// Every policy's worker.
#[derive(Debug)]
pub struct PolicyWorkers {
    /// Policy name -> its worker.
    workers: HashMap<String, Worker>,
    /// Where answers go (the event loop).
    answers: mpsc::Sender<Decided>,
    /// Jobs replaced by a newer one for the same service before they ran.
    coalesced: Arc<AtomicU64>,
}

impl PolicyWorkers {
    /// No threads yet: one starts with the first job of each policy.
    pub fn new(answers: mpsc::Sender<Decided>) -> PolicyWorkers {
        PolicyWorkers { workers: HashMap::new(), answers, coalesced: Arc::default() }
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
        if waiting.idle {
            worker.queue.ready.notify_one();
        }
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
        .map_err(|e| anyhow::anyhow!("starting the worker thread of policy {policy}: {e}"))?;
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
                waiting.idle = true;
                waiting = queue.ready.wait(waiting).unwrap_or_else(|p| p.into_inner());
                waiting.idle = false;
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
                    tracing::error!(policy = %job.policy, "the policy worker panicked while running the policy: {what}; it goes on");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::testing::{self, MISBEHAVE, THRESHOLD};

    /// A job of `policy` for service `service` at `cpu` (the service mean).
    fn job(set: &crate::policy::PolicySet, policy: &str, service: &str, cpu: f64, fault: &str) -> Job {
        let band = [("cpu.upper", "0.6"), ("cpu.lower", "0.1"), ("fault", fault)];
        let config = testing::config(
            service,
            &[
                ("autoscale.enable", "true"),
                ("autoscale.policy", policy),
                ("autoscale.min", "1"),
                ("autoscale.max", "5"),
            ],
        );
        Job {
            slot: set.get(policy).expect("loaded"),
            policy: policy.to_string(),
            config,
            event: Event::cpu(cpu).of(&format!("c-{service}"), service, service),
            state: {
                let slot = set.get(policy).expect("loaded");
                let (_, _, specs) = slot.declaration();
                let labels: Vec<(String, String)> = band.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let settings = crate::model::settings::resolve(&specs, &labels).expect("the band fits the policy");
                State::replicas(2, 1, 5).with_settings(settings.into()).with_cpu(&[cpu])
            },
        }
    }

    /// Wait until `policy`'s thread has taken every job off its queue.
    async fn taken(policy_workers: &PolicyWorkers, policy: &str) {
        let start = Instant::now();
        while !policy_workers.workers[policy].queue.waiting.lock().expect("queue").jobs.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "the thread never took its jobs");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_newer_job_replaces_the_one_still_waiting_for_the_same_service() {
        let set = testing::policy_set(&[("threshold", THRESHOLD)]);
        // Room for one answer: while the loop does not read, the thread
        // holds its second answer and the queue fills behind it.
        let (tx, mut answers) = mpsc::channel(1);
        let mut policy_workers = PolicyWorkers::new(tx);
        for cpu in [0.91, 0.92] {
            policy_workers.submit(job(&set, "threshold", "s1", cpu, "none")).expect("submit");
            taken(&policy_workers, "threshold").await;
        }
        // The thread answered 0.91 and waits to hand over 0.92; three newer
        // events of the same service wait: only the newest is decided.
        for cpu in [0.93, 0.94, 0.95] {
            policy_workers.submit(job(&set, "threshold", "s1", cpu, "none")).expect("submit");
        }
        assert_eq!(policy_workers.coalesced().load(Ordering::Relaxed), 2);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let done = testing::answer(&mut answers).await;
            assert_eq!(done.result.as_ref().ok().cloned().flatten().and_then(|d| d.target()), Some(3));
            seen.push(done.job.event.value);
        }
        assert_eq!(seen, [0.91, 0.92, 0.95], "the stale jobs were dropped, in order otherwise");
        assert!(testing::no_answer(&mut answers, Duration::from_millis(200)).await.is_none());
    }

    /// The thread is woken only while it waits: a job submitted while it
    /// is busy, or just as it goes idle, is still decided.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_is_decided_whether_the_thread_was_busy_or_idle() {
        let set = testing::policy_set(&[("threshold", THRESHOLD)]);
        let (tx, mut answers) = mpsc::channel(1024);
        let mut policy_workers = PolicyWorkers::new(tx);
        for round in 0..50 {
            // One job after the thread went idle, then a burst while busy.
            let burst = if round % 2 == 0 { 1 } else { 20 };
            for k in 0..burst {
                policy_workers.submit(job(&set, "threshold", &format!("s{k}"), 0.9, "none")).expect("submit");
            }
            for _ in 0..burst {
                let done = testing::answer(&mut answers).await;
                assert!(done.result.is_ok(), "{:?}", done.result);
            }
            if round % 5 == 0 {
                // Let the thread reach its wait.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(policy_workers.coalesced().load(Ordering::Relaxed), 0);
        assert!(testing::no_answer(&mut answers, Duration::from_millis(100)).await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_policy_delays_only_its_own_services() {
        let set = testing::policy_set(&[("threshold", THRESHOLD), ("sleepy", MISBEHAVE)]);
        let (tx, mut answers) = mpsc::channel(64);
        let mut policy_workers = PolicyWorkers::new(tx);
        // The sleepy policy sleeps through its whole time limit (2 s).
        let slow_started = Instant::now();
        policy_workers.submit(job(&set, "sleepy", "slow", 0.9, "sleep")).expect("submit");
        for i in 0..5 {
            let service = format!("fast-{i}");
            policy_workers.submit(job(&set, "threshold", &service, 0.9, "none")).expect("submit");
            let done = testing::answer(&mut answers).await;
            assert_eq!(done.job.policy, "threshold", "answered while the sleepy policy runs");
            assert_eq!(done.job.event.service_id, service);
        }
        let fast_done = slow_started.elapsed();
        let slow = testing::answer(&mut answers).await;
        assert_eq!(slow.job.policy, "sleepy");
        assert!(matches!(slow.result, Err(PolicyError::Timeout { .. })), "{:?}", slow.result);
        assert!(fast_done < testing::TIME_LIMIT, "five fast answers took {fast_done:?}");
        policy_workers.shutdown(Duration::from_secs(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retired_policy_drops_its_waiting_jobs_and_comes_back_with_a_new_thread() {
        let set = testing::policy_set(&[("threshold", THRESHOLD)]);
        let (tx, mut answers) = mpsc::channel(1);
        let mut policy_workers = PolicyWorkers::new(tx);
        policy_workers.submit(job(&set, "threshold", "s1", 0.91, "none")).expect("submit");
        policy_workers.submit(job(&set, "threshold", "s2", 0.92, "none")).expect("submit");
        taken(&policy_workers, "threshold").await;
        policy_workers.submit(job(&set, "threshold", "s3", 0.93, "none")).expect("submit");
        // Unloaded: s3's job, still waiting, is never decided.
        policy_workers.retire("threshold");
        let first: Vec<f64> = [testing::answer(&mut answers).await, testing::answer(&mut answers).await]
            .iter()
            .map(|d| d.job.event.value)
            .collect();
        assert_eq!(first, [0.91, 0.92]);
        assert!(testing::no_answer(&mut answers, Duration::from_millis(200)).await.is_none());
        // Loaded again: a new thread.
        policy_workers.submit(job(&set, "threshold", "s4", 0.94, "none")).expect("submit");
        assert_eq!(testing::answer(&mut answers).await.job.event.service_id, "s4");
    }
}
