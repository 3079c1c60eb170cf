// SPDX-License-Identifier: GPL-2.0
/* Per-container CPU, memory and connection accounting, pushed through a ring
 * buffer. Built by host/build.rs (clang -target bpf, CO-RE), loaded by
 * host/src/probe/ebpf.rs with aya.
 *
 * Keys: a container is its cgroup in the v2 (default) hierarchy, whose id is
 * what both `task->cgroups->dfl_cgrp` and `sk->sk_cgrp_data.cgroup` give, on
 * hybrid and on pure v2 hosts alike. Userspace gives each tracked container
 * a slot (0..PROBE_MAX_TRACKED) and writes `configs[slot]`, zeroes
 * `state[slot]`, then maps the cgroup id to the slot in `slots` and bumps
 * `control.generation`. Everything here only reads those, and nothing is
 * pushed for a cgroup that is not in `slots`.
 *
 * Programs:
 * - tp_btf/sched_switch: the hot path, run on every context switch of the
 *   host. It resolves the incoming task's container through a small per-CPU
 *   cache (cgroup id -> slot, valid for one generation), so a switch between
 *   untracked tasks costs four pointer loads, one array load and no helper
 *   call. When a tracked task leaves the CPU it adds the task's run time
 *   since it came on (the scheduler's own `se.sum_exec_runtime`, brought up
 *   to date just before this tracepoint, so no clock is read) to a per-CPU
 *   counter of the slot (no atomics, no shared cache line). At most once a millisecond per container it also
 *   reads the memcg page counter (memory is charged in task context, so
 *   growth is seen when the task that grew it is switched out) and notes the
 *   task group, whose CFS bandwidth counters tell throttling.
 * - tp_btf/inet_sock_set_state: counts accepted TCP connections and those
 *   still open, attributed by the socket's cgroup (the transition runs in
 *   softirq context, where the current task is unrelated). For a container
 *   whose `wake` entry is armed (the daemon froze it), the first accepted
 *   connection also pushes a wake event at once. A socket that starts
 *   listening on a parked port pushes a listen event (the replica of a
 *   removed service is back).
 * - classifier on_tc_ingress (park.h; tc ingress of every interface, attached only
 *   while a port is parked): the kernel half of `autoscale.zero=remove`.
 *   A connection attempt (bare SYN) to a parked port that no socket would
 *   take is dropped without an answer, so the client retransmits it about
 *   a second later, by when the service has a replica again; the first
 *   attempt pushes an event that makes the daemon scale the service back
 *   to one replica. Every other packet passes untouched.
 * - the tick (one bpf_timer, every `check_ns`, 1 ms by default): it notes
 *   since when each CPU runs its current task (the running slice of a task
 *   never switched out counts from there, less than a tick short); for every
 *   CPU running a tracked task, whether the container's on-CPU time in the
 *   current window already proves an upward CPU crossing (more than
 *   `upper x window` of CPU within the window: the window will close at or
 *   above `upper` whatever happens next); and every `window_ns` it closes
 *   the window of every container (CPU value, memory re-read, connection
 *   crossings held back by the rate bound, samples). The close is what
 *   notices a container going quiet: an idle container makes no switches.
 *
 * The CPU value of a container with a limit is a fraction of it, never above
 * 1: a window in which the kernel throttled the container (a CFS period
 * ended with its quota used up) reads 1.0, because the on-CPU time of one
 * window says anything from 0.1 to 1.2 of the limit for a container held at
 * it (CFS hands quota out in per-CPU slices that straddle periods).
 *
 * Crossings are pushed the moment a value is computed on the other side of a
 * threshold; connection thresholds have hysteresis and a least gap between
 * two events; every container has a budget of crossing events per window,
 * so that one cannot fill the ring buffer that all share (samples are
 * bounded by the sample interval). A crossing over budget is
 * held (the band state does not change) and re-evaluated at the next close.
 */
#include "kernel.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include <bpf/bpf_endian.h>

#include "probe.h"
#include "net.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load (read-only afterwards). */
const volatile __u64 window_ns = 100000000ULL;
const volatile __u64 check_ns = 1000000ULL;
const volatile __u64 sample_ns = 1000000000ULL;
const volatile __u64 page_size = 4096;
const volatile __u32 nr_cpus = 1;

#define MAX_CPUS 1024
#define MAX_TRACKED PROBE_MAX_TRACKED
/* Least time between two memcg reads from sched_switch for one container:
 * a context-switch-heavy container would otherwise pay for the reads on
 * every switch, for no news (usage moves by pages, not per switch). */
#define MEM_READ_MIN_NS 1000000ULL
/* Entries of the per-CPU cgroup id -> slot cache (a power of two). */
#define CACHE_WAYS 8
#define PPM 1000000ULL

#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

#include "state.h"

static __always_inline void count_drop(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &which);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void emit(__u64 cgid, __u32 metric, __u32 kind, __u64 value, __u64 threshold, __u32 flags,
				 __u64 now)
{
	struct probe_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(PROBE_DROP_RING);
		return;
	}
	e->timestamp_ns = now;
	e->cgroup_id = cgid;
	e->value = value;
	e->threshold = threshold;
	e->metric = metric;
	e->kind = kind;
	e->flags = flags;
	e->_pad = 0;
	/* Crossings wake the reader at once; samples let the kernel batch. */
	bpf_ringbuf_submit(e, kind == PROBE_KIND_SAMPLE ? 0 : BPF_RB_FORCE_WAKEUP);
}

/* Take `n` crossing events from the container's budget for this window
 * (samples are bounded by `sample_ns` and do not count). Racy
 * between CPUs by design: the bound can be overshot by a few events, never
 * by a flood. */
static __always_inline int take_budget(struct cg_state *st, const struct tracked_cfg *cfg, __u64 n)
{
	if (!cfg->budget)
		return 1;
	if (READ_ONCE(st->spent) + n > cfg->budget)
		return 0;
	__sync_fetch_and_add(&st->spent, n);
	return 1;
}

/* Crossing state: per metric m (PROBE_METRIC_*) bit 2m is "at or above the
 * upper threshold", bit 2m+1 "below the lower threshold"; the thresholds are
 * cfg->bands[m], set when PROBE_HAS_UPPER(m) / PROBE_HAS_LOWER(m) is.
 * All zero is "inside the band", the state a container starts in. With
 * hysteresis h, a set upper bit clears only below `upper - h` and a set
 * lower bit only at `lower + h`. A compare-and-swap makes each change,
 * hence each event, happen once even when several CPUs see it together. A
 * change is held back (the bits stay) when the container is over its event
 * budget, or for a connection threshold within `conn_gap_ns` of its own
 * last crossing; the
 * next evaluation, at the latest the next window close, makes it. */
static __always_inline void check_band_as(__u64 cgid, struct cg_state *st, const struct tracked_cfg *cfg,
					  __u32 metric, __u64 value, __u64 shown, __u64 hyst, __u32 flags, __u64 now);

static __always_inline void check_band(__u64 cgid, struct cg_state *st, const struct tracked_cfg *cfg, __u32 metric,
				       __u64 value, __u64 hyst, __u32 flags, __u64 now)
{
	check_band_as(cgid, st, cfg, metric, value, value, hyst, flags, now);
}

/* check_band() judging `value` and reporting `shown` in the events. */
static __always_inline void check_band_as(__u64 cgid, struct cg_state *st, const struct tracked_cfg *cfg,
					  __u32 metric, __u64 value, __u64 shown, __u64 hyst, __u32 flags, __u64 now)
{
	if (metric >= PROBE_MAX_METRICS)
		return;
	__u64 ub = 1ULL << (2 * metric), lb = 1ULL << (2 * metric + 1);
	__u64 upper = cfg->bands[metric].upper, lower = cfg->bands[metric].lower;
	int has_upper = cfg->flags & PROBE_HAS_UPPER(metric), has_lower = cfg->flags & PROBE_HAS_LOWER(metric);
	for (int tries = 0; tries < 4; tries++) {
		__u64 old = READ_ONCE(st->bits), new = old;
		if (has_upper) {
			int above = (old & ub) ? value + hyst >= upper : value >= upper;
			new = above ? new | ub : new & ~ub;
		}
		if (has_lower) {
			int below = (old & lb) ? value < lower + hyst : value < lower;
			new = below ? new | lb : new & ~lb;
		}
		if (new == old)
			return;
		/* The gap bounds how often one threshold flaps; crossing the
		 * other one is news and goes out at once. */
		if (metric == PROBE_METRIC_CONNECTIONS && cfg->conn_gap_ns &&
		    ((((old ^ new) & ub) && st->conn_event_ns &&
		      now - READ_ONCE(st->conn_event_ns) < cfg->conn_gap_ns) ||
		     (((old ^ new) & lb) && st->conn_low_event_ns &&
		      now - READ_ONCE(st->conn_low_event_ns) < cfg->conn_gap_ns)))
			return;
		__u64 n = (((old ^ new) & ub) ? 1 : 0) + (((old ^ new) & lb) ? 1 : 0);
		if (!take_budget(st, cfg, n)) {
			count_drop(PROBE_DROP_HELD);
			return;
		}
		if (__sync_val_compare_and_swap(&st->bits, old, new) != old) {
			__sync_fetch_and_sub(&st->spent, n);
			continue;
		}
		if (metric == PROBE_METRIC_CONNECTIONS && ((old ^ new) & ub))
			WRITE_ONCE(st->conn_event_ns, now);
		if (metric == PROBE_METRIC_CONNECTIONS && ((old ^ new) & lb))
			WRITE_ONCE(st->conn_low_event_ns, now);
		if ((old ^ new) & ub)
			emit(cgid, metric, (new & ub) ? PROBE_KIND_UP : PROBE_KIND_DOWN, shown, upper, flags, now);
		if ((old ^ new) & lb)
			emit(cgid, metric, (new & lb) ? PROBE_KIND_DOWN : PROBE_KIND_UP, shown, lower, flags, now);
		return;
	}
}

static __always_inline __u32 cpu_flags(const struct tracked_cfg *cfg)
{
	return cfg->cpu_limit_ppm ? PROBE_EVENT_CPU_OF_LIMIT : 0;
}

static __always_inline void check_cpu(struct cg_state *st, const struct tracked_cfg *cfg, __u64 value, __u64 now)
{
	check_band(cfg->cgroup_id, st, cfg, PROBE_METRIC_CPU, value, 0, cpu_flags(cfg), now);
}

static __always_inline void check_connections(struct cg_state *st, const struct tracked_cfg *cfg, __u64 now)
{
	__s64 open = READ_ONCE(st->open_conns);
	check_band(cfg->cgroup_id, st, cfg, PROBE_METRIC_CONNECTIONS, open > 0 ? open : 0, cfg->conn_hysteresis, 0,
		   now);
}

/* Read the memcg page counter at `memcg` and check the memory band. */
static __always_inline void update_memory(struct cg_state *st, const struct tracked_cfg *cfg,
					  struct mem_cgroup *memcg, __u64 now)
{
	if (!memcg)
		return;
	__s64 pages = BPF_CORE_READ(memcg, memory.usage.counter);
	__u64 max = BPF_CORE_READ(memcg, memory.max);
	if (pages < 0)
		pages = 0;
	__u64 bytes = (__u64)pages * page_size;
	/* "No limit" is PAGE_COUNTER_MAX (LONG_MAX / PAGE_SIZE) pages. */
	__u64 limit = max >= (0x7fffffffffffffffULL / page_size) ? 0 : max * page_size;
	st->mem_bytes = bytes;
	st->mem_limit = limit;
	check_band(cfg->cgroup_id, st, cfg, PROBE_METRIC_MEMORY, bytes, 0, 0, now);
}

static __always_inline struct mem_cgroup *task_memcg(struct task_struct *task)
{
	int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= 16)
		return 0;
	struct cgroup_subsys_state *css = BPF_CORE_READ(task, cgroups, subsys[id]);
	if (!css)
		return 0;
	return (struct mem_cgroup *)((char *)css - bpf_core_field_offset(struct mem_cgroup, css));
}

static __always_inline __u64 generation(void)
{
	__u32 zero = 0;
	struct probe_control *c = bpf_map_lookup_elem(&control, &zero);
	return c ? READ_ONCE(c->generation) : 0;
}

/* Slot + 1 of a cgroup id (0: untracked), through this CPU's cache. */
static __always_inline __u32 slot_of(struct cpu_run *run, __u64 cgid, __u64 gen)
{
	struct slot_cache *e = &run->cache[cgid & (CACHE_WAYS - 1)];
	if (e->cgroup_id == cgid && e->generation == gen)
		return e->slot1;
	__u32 *slot = bpf_map_lookup_elem(&slots, &cgid);
	__u32 slot1 = slot && *slot < MAX_TRACKED ? *slot + 1 : 0;
	e->cgroup_id = cgid;
	e->generation = gen;
	e->slot1 = slot1;
	return slot1;
}

static __always_inline __u64 task_cgroup_id(struct task_struct *task)
{
	/* Plain loads of BTF pointers: the verifier makes them fault-safe
	 * without a bpf_probe_read_kernel call per hop. */
	return task->cgroups->dfl_cgrp->kn->id;
}

#include "demand.h"

static int tick_fired(void *map, int *key, struct tick_timer *t);

/* Set once the tick runs: one load on the switch path instead of a lookup. */
volatile __u64 tick_armed;

/* Start the tick from the first context switch (a bpf_timer can only be
 * set up by a program). */
static __attribute__((noinline)) int arm_tick(void)
{
	__u32 zero = 0;
	struct tick_timer *t = bpf_map_lookup_elem(&tick, &zero);
	tick_armed = 1;
	if (t && !t->armed && __sync_val_compare_and_swap(&t->armed, 0, 1) == 0) {
		bpf_timer_init(&t->timer, &tick, CLOCK_MONOTONIC);
		bpf_timer_set_callback(&t->timer, tick_fired);
		bpf_timer_start(&t->timer, check_ns, 0);
	}
	return 0;
}

/* Once a millisecond per container: memory, and the task group. The
 * runqueue clock of prev's last update paces it without a clock read. */
static __always_inline void read_container(struct task_struct *prev, __u32 slot)
{
	struct cg_state *st = bpf_map_lookup_elem(&state, &slot);
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&configs, &slot);
	__u64 rq_now = prev->se.exec_start;
	if (!st || !cfg || rq_now - st->mem_read_ns < MEM_READ_MIN_NS)
		return;
	st->mem_read_ns = rq_now;
	__u64 now = bpf_ktime_get_ns();
	st->tg = (__u64)prev->sched_task_group;
	struct mem_cgroup *memcg = task_memcg(prev);
	st->memcg = (__u64)memcg;
	update_memory(st, cfg, memcg, now);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 zero = 0;
	if (!tick_armed)
		arm_tick();
	struct cpu_run *run = bpf_map_lookup_elem(&cpu_run, &zero);
	if (!run)
		return 0;
	__u64 gen = generation();
	__u32 prev_slot1 = run->slot1;
	__u32 next_slot1 = next->pid ? slot_of(run, task_cgroup_id(next), gen) : 0;
	if (!prev_slot1 && !next_slot1)
		return 0; /* untracked to untracked: the common case */

	/* No clock read: the scheduler has just brought prev's run time up
	 * to date, and reading the clock (bpf_ktime_get_ns) cost 75 ns here. */
	/* A slot resolved before the last change of `slots` may since belong
	 * to another container: check it again before charging it. */
	if (prev_slot1 && run->generation != gen && slot_of(run, task_cgroup_id(prev), gen) != prev_slot1)
		prev_slot1 = 0;
	WRITE_ONCE(run->seq, run->seq + 1);
	barrier();
	if (prev_slot1) {
		__u32 slot = prev_slot1 - 1;
		__u64 *acc = bpf_map_lookup_elem(&cpu_time, &slot);
		__u64 ran = prev->se.sum_exec_runtime, start = run->start_runtime;
		if (acc && ran > start)
			WRITE_ONCE(*acc, *acc + (ran - start));
	}
	run->start_runtime = next->se.sum_exec_runtime;
	run->slot1 = next_slot1;
	run->generation = gen;
	barrier();
	WRITE_ONCE(run->seq, run->seq + 1);

	if (prev_slot1)
		read_container(prev, prev_slot1 - 1);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key, cgid;
	__s64 delta;
	demand_on_state((struct sock *)sk, oldstate, newstate);
	if (newstate == TCP_LISTEN) {
		/* The replica of a removed service listens again: the daemon
		 * unparks its port. Fired before the socket is hashed, in the
		 * same listen() call; the daemon reacts far later. */
		if (sk->sk_protocol != IPPROTO_TCP)
			return 0;
		__u16 port = sk->__sk_common.skc_num;
		if (bpf_map_lookup_elem(&parked, &port))
			emit(0, PROBE_SIGNAL_PORT_LISTEN, PROBE_KIND_UP, port, 0, 0, bpf_ktime_get_ns());
		return 0;
	}
	if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_RECV) {
		if (sk->sk_protocol != IPPROTO_TCP)
			return 0;
		cgid = sk->sk_cgrp_data.cgroup->kn->id;
		delta = 1;
	} else if (oldstate == TCP_ESTABLISHED) {
		key = (__u64)sk;
		__u64 *owner = bpf_map_lookup_elem(&open_socks, &key);
		if (!owner)
			return 0;
		cgid = *owner;
		bpf_map_delete_elem(&open_socks, &key);
		delta = -1;
	} else {
		return 0;
	}
	__u32 *slot = bpf_map_lookup_elem(&slots, &cgid);
	if (!slot)
		return 0;
	__u32 s = *slot;
	if (delta > 0)
		demand_on_accept((struct sock *)sk, cgid, s);
	struct cg_state *st = bpf_map_lookup_elem(&state, &s);
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&configs, &s);
	if (!st || !cfg)
		return 0;
	if (delta > 0) {
		/* A frozen container's first connection: the handshake is done
		 * (the kernel completes it for a frozen process) and the
		 * connection waits in the accept queue. Wake the daemon at once,
		 * once per arming, whatever the container's event budget. */
		__u64 *armed = bpf_map_lookup_elem(&wake, &s);
		if (armed && READ_ONCE(*armed) == PROBE_WAKE_ARMED &&
		    __sync_val_compare_and_swap(armed, PROBE_WAKE_ARMED, 0) == PROBE_WAKE_ARMED)
			emit(cgid, PROBE_SIGNAL_WAKE, PROBE_KIND_UP, 1, 0, 0, bpf_ktime_get_ns());
		__sync_fetch_and_add(&st->accepted, 1);
		/* Not remembered (map full): not counted as open either. */
		key = (__u64)sk;
		if (bpf_map_update_elem(&open_socks, &key, &cgid, BPF_NOEXIST))
			return 0;
	}
	__sync_fetch_and_add(&st->open_conns, delta);
	check_connections(st, cfg, bpf_ktime_get_ns());
	return 0;
}

/* On-CPU total of a slot now: every CPU's counter plus the running slice of
 * each CPU on which one of its tasks runs (a busy loop that is never
 * switched out still counts). */
struct total_ctx {
	__u64 now;
	__u64 total;
	__u32 slot;
};

static long add_cpu(__u64 cpu, struct total_ctx *c)
{
	__u32 zero = 0, slot = c->slot;
	__u64 *acc = bpf_map_lookup_percpu_elem(&cpu_time, &slot, cpu);
	struct cpu_run *run = bpf_map_lookup_percpu_elem(&cpu_run, &zero, cpu);
	if (!acc || !run)
		return 1;
	for (int tries = 0; tries < 4; tries++) {
		__u64 seq = READ_ONCE(run->seq);
		barrier();
		__u64 done = READ_ONCE(*acc);
		__u32 slot1 = READ_ONCE(run->slot1);
		barrier();
		if ((seq & 1) || READ_ONCE(run->seq) != seq)
			continue;
		c->total += done;
		/* The running slice: at least since the tick first saw this
		 * switch (less than a tick short); exact once switched out. */
		if (slot1 == slot + 1 && run->tick_seq == seq && c->now > run->tick_since_ns)
			c->total += c->now - run->tick_since_ns;
		return 0;
	}
	c->total += READ_ONCE(*acc);
	return 0;
}

static __always_inline __u64 slot_total(__u32 slot, __u64 now)
{
	struct total_ctx c = { .now = now, .total = 0, .slot = slot };
	bpf_loop(nr_cpus < MAX_CPUS ? nr_cpus : MAX_CPUS, add_cpu, &c, 0);
	return c.total;
}

/* The early upward crossing: on-CPU time within the window so far above
 * `upper x window` means the window closes above `upper`. */
static long check_early(__u64 cpu, __u64 *now)
{
	__u32 zero = 0;
	struct cpu_run *run = bpf_map_lookup_percpu_elem(&cpu_run, &zero, cpu);
	if (!run)
		return 1;
	__u32 slot1 = READ_ONCE(run->slot1);
	if (!slot1 || slot1 > MAX_TRACKED)
		return 0;
	__u32 slot = slot1 - 1;
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&configs, &slot);
	struct cg_state *st = bpf_map_lookup_elem(&state, &slot);
	if (!cfg || !st || !cfg->cpu_upper_ns || !(cfg->flags & PROBE_HAS_UPPER(PROBE_METRIC_CPU)) ||
	    !st->win_start_ns || (READ_ONCE(st->bits) & (1ULL << (2 * PROBE_METRIC_CPU))))
		return 0;
	__u64 used = slot_total(slot, *now) - st->win_cpu_ns;
	if (used < cfg->cpu_upper_ns)
		return 0;
	/* The least the window can close at: what is proven so far. */
	__u64 value = used * PPM / window_ns;
	if (cfg->cpu_limit_ppm)
		value = value * PPM / cfg->cpu_limit_ppm;
	__u64 upper = cfg->bands[PROBE_METRIC_CPU].upper;
	if (value < upper)
		value = upper;
	if (cfg->cpu_limit_ppm && value > PPM)
		value = PPM;
	st->early = 1;
	check_cpu(st, cfg, value, *now);
	return 0;
}

/* The container's task group ended a CFS period throttled since the last
 * call (the kernel's `nr_throttled` of cpu.stat moved); the first call only
 * takes the baseline. `win_throttled` holds the count plus one, 0: none. */
static __always_inline int throttled_since(struct cg_state *st)
{
	if (!st->tg || !bpf_core_field_exists(struct task_group, cfs_bandwidth))
		return 0;
	struct task_group *tg = (struct task_group *)st->tg;
	__s64 seen = (__s64)BPF_CORE_READ(tg, cfs_bandwidth.nr_throttled) + 1;
	__s64 before = st->win_throttled;
	st->win_throttled = seen;
	return before && seen != before;
}

/* Close one container's window; called for each `slots` entry. */
static long close_window(void *map, __u64 *key, __u32 *slotp, __u64 *nowp)
{
	__u32 slot = *slotp;
	__u64 now = *nowp;
	struct cg_state *st = bpf_map_lookup_elem(&state, &slot);
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&configs, &slot);
	if (!st || !cfg)
		return 0;
	__u64 cgid = cfg->cgroup_id;
	demand_close(slot, cgid, cfg, now);
	__u64 total = slot_total(slot, now);
	int throttled = throttled_since(st);
	if (!st->win_start_ns) {
		st->win_start_ns = now;
		st->win_cpu_ns = total;
		st->last_sample_ns = now;
		return 0;
	}
	__u64 elapsed = now - st->win_start_ns;
	if (!elapsed)
		return 0;
	__u64 used = total - st->win_cpu_ns;
	st->win_start_ns = now;
	st->win_cpu_ns = total;
	st->spent = 0; /* a new window: a new budget */
	__u64 ppm = used * PPM / elapsed; /* millionths of a core */
	if (cfg->cpu_limit_ppm) {
		ppm = ppm * PPM / cfg->cpu_limit_ppm;
		/* At most the limit: more is quota of a neighbouring period
		 * that this window's edges cut into. Throttled: at the limit. */
		if (ppm > PPM || throttled)
			ppm = PPM;
	}
	/* An early crossing proved the window at or above `upper`; a late
	 * tick must not turn that into a crossing back down. */
	if (st->early && ppm < cfg->bands[PROBE_METRIC_CPU].upper)
		ppm = cfg->bands[PROBE_METRIC_CPU].upper;
	st->early = 0;
	st->cpu_value = ppm;
	__u32 flags = cpu_flags(cfg);
	check_cpu(st, cfg, ppm, now);

	/* Memory can shrink without the container running (reclaim): re-read
	 * it from the memcg seen at the container's last switch. The read is
	 * a fault-safe probe read; userspace untracks a container when it
	 * dies, before its memcg goes away. */
	update_memory(st, cfg, (struct mem_cgroup *)st->memcg, now);
	/* Connection crossings held back by the gap or the budget. */
	check_connections(st, cfg, now);

	if (now - st->last_sample_ns >= sample_ns) {
		st->last_sample_ns = now;
		__s64 open = st->open_conns;
		__u64 accepted = st->accepted;
		emit(cgid, PROBE_METRIC_CPU, PROBE_KIND_SAMPLE, ppm, 0, flags, now);
		if (st->memcg) {
			emit(cgid, PROBE_METRIC_MEMORY, PROBE_KIND_SAMPLE, st->mem_bytes, 0, 0, now);
			if (st->mem_limit)
				emit(cgid, PROBE_SIGNAL_MEMORY_LIMIT, PROBE_KIND_SAMPLE, st->mem_limit, 0, 0, now);
		}
		emit(cgid, PROBE_METRIC_CONNECTIONS, PROBE_KIND_SAMPLE, open > 0 ? open : 0, 0, 0, now);
		emit(cgid, PROBE_SIGNAL_ACCEPTED, PROBE_KIND_SAMPLE, accepted - st->accepted_sampled, 0, 0, now);
		st->accepted_sampled = accepted;
	}
	return 0;
}

/* Note, for each CPU, since when the tick has seen its current switch. */
static long observe_cpu(__u64 cpu, __u64 *now)
{
	__u32 zero = 0;
	struct cpu_run *run = bpf_map_lookup_percpu_elem(&cpu_run, &zero, cpu);
	if (!run)
		return 1;
	__u64 seq = READ_ONCE(run->seq);
	if (seq != run->tick_seq) {
		run->tick_seq = seq;
		run->tick_since_ns = *now;
	}
	return 0;
}

/* Add one tick's run time to `tick_cost` (one more clock read a tick). */
static __always_inline void count_tick(__u32 runs_key, __u64 start)
{
	__u32 ns_key = runs_key + 1;
	__u64 *runs = bpf_map_lookup_elem(&tick_cost, &runs_key);
	__u64 *ns = bpf_map_lookup_elem(&tick_cost, &ns_key);
	if (runs && ns) {
		*runs += 1;
		*ns += bpf_ktime_get_ns() - start;
	}
}

static int tick_fired(void *map, int *key, struct tick_timer *t)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 kind = PROBE_TICK_CHECK_RUNS;
	bpf_loop(nr_cpus < MAX_CPUS ? nr_cpus : MAX_CPUS, observe_cpu, &now, 0);
	if (now - t->last_close_ns >= window_ns) {
		t->last_close_ns = now;
		demand_poll_listeners(now);
		bpf_for_each_map_elem(&slots, close_window, &now, 0);
		kind = PROBE_TICK_CLOSE_RUNS;
	} else {
		bpf_loop(nr_cpus < MAX_CPUS ? nr_cpus : MAX_CPUS, check_early, &now, 0);
	}
	bpf_timer_start(&t->timer, check_ns, 0);
	count_tick(kind, now);
	return 0;
}

#include "park.h"
