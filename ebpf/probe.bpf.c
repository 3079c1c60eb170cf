// SPDX-License-Identifier: GPL-2.0
/* Per-container CPU, memory and connection accounting, pushed through a ring
 * buffer. Built by host/build.rs (clang -target bpf, CO-RE), loaded by
 * host/src/probe/ebpf.rs with aya.
 *
 * Keys: a container is its cgroup in the v2 (default) hierarchy, whose id is
 * what both `task->cgroups->dfl_cgrp` and `sk->sk_cgrp_data.cgroup` give, on
 * hybrid and on pure v2 hosts alike. Userspace writes the tracked ids and
 * their thresholds into `tracked`; everything else here only reads it, and
 * nothing is pushed for a cgroup that is not in it.
 *
 * Programs:
 * - tp_btf/sched_switch: adds each tracked task's on-CPU time to its
 *   container, reads the container's memcg page counter when one of its tasks
 *   leaves the CPU (memory is charged in task context, so growth is seen at
 *   the latest when the task that grew it is switched out; at most once a
 *   millisecond per container), and arms the
 *   window timer once.
 * - tp_btf/inet_sock_set_state: counts accepted TCP connections and those
 *   still open, attributed by the socket's cgroup (the transition runs in
 *   softirq context, where the current task is unrelated).
 * - the window timer (bpf_timer, every `window_ns`): closes each container's
 *   CPU window, including time of tasks still on a CPU, re-reads memory, and
 *   emits periodic samples. It is what notices a container going quiet: an
 *   idle container makes no context switches.
 * Crossings are pushed the moment a value is computed on the other side of a
 * threshold; samples at most every `sample_ns` per container.
 */
#include "kernel.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "probe.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load (read-only afterwards). */
const volatile __u64 window_ns = 100000000ULL;
const volatile __u64 sample_ns = 1000000000ULL;
const volatile __u64 page_size = 4096;
const volatile __u32 nr_cpus = 1;

#define MAX_CPUS 256
/* Least time between two memcg reads from sched_switch for one container:
 * a context-switch-heavy container would otherwise pay for the reads on
 * every switch, for no news (usage moves by pages, not per switch). */
#define MEM_READ_MIN_NS 1000000ULL
#define MAX_TRACKED 4096

/* Kernel-side accounting of one container. */
struct cg_state {
	__u64 cpu_ns;          /* on-CPU time so far */
	__u64 win_cpu_ns;      /* cpu_ns when the current window opened */
	__u64 win_start_ns;    /* when the current window opened; 0: not yet */
	__u64 last_sample_ns;  /* when the last samples went out */
	__s64 open_conns;      /* accepted connections still ESTABLISHED */
	__u64 accepted;        /* accepted connections so far */
	__u64 accepted_sampled;/* `accepted` at the last sample */
	__u64 mem_bytes;       /* last memcg usage read */
	__u64 mem_limit;       /* last memcg limit read; 0: none */
	__u64 memcg;           /* address of the memcg, for the timer's reads */
	__u64 cpu_value;       /* last CPU window value, event unit */
	__u64 bits;            /* crossing state, see check_band() */
	__u64 mem_read_ns;     /* when sched_switch last read the memcg */
	__u64 _reserved[3];
};
_Static_assert(sizeof(struct cg_state) == PROBE_STATE_SIZE, "cg_state size is shared with the loader");
_Static_assert(sizeof(struct probe_event) == PROBE_EVENT_SIZE, "probe_event size");
_Static_assert(__builtin_offsetof(struct probe_event, timestamp_ns) == PROBE_EVENT_OFF_TIMESTAMP, "timestamp_ns");
_Static_assert(__builtin_offsetof(struct probe_event, cgroup_id) == PROBE_EVENT_OFF_CGROUP, "cgroup_id");
_Static_assert(__builtin_offsetof(struct probe_event, value) == PROBE_EVENT_OFF_VALUE, "value");
_Static_assert(__builtin_offsetof(struct probe_event, threshold) == PROBE_EVENT_OFF_THRESHOLD, "threshold");
_Static_assert(__builtin_offsetof(struct probe_event, metric) == PROBE_EVENT_OFF_METRIC, "metric");
_Static_assert(__builtin_offsetof(struct probe_event, kind) == PROBE_EVENT_OFF_KIND, "kind");
_Static_assert(__builtin_offsetof(struct probe_event, flags) == PROBE_EVENT_OFF_FLAGS, "flags");
_Static_assert(sizeof(struct tracked_cfg) == PROBE_CFG_SIZE, "tracked_cfg size");
_Static_assert(__builtin_offsetof(struct tracked_cfg, cpu_limit_ppm) == PROBE_CFG_OFF_CPU_LIMIT, "cpu_limit_ppm");
_Static_assert(__builtin_offsetof(struct tracked_cfg, flags) == PROBE_CFG_OFF_FLAGS, "flags");

/* What runs on this CPU: since when, and its container if tracked. */
struct cpu_run {
	__u64 since_ns;
	__u64 cgroup_id; /* 0: not a tracked container */
};

struct window_timer {
	struct bpf_timer timer;
	__u64 armed;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u64);
	__type(value, struct tracked_cfg);
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u64);
	__type(value, struct cg_state);
} state SEC(".maps");

/* Accepted sockets still counted as open, socket address -> cgroup id:
 * a socket leaving ESTABLISHED is subtracted only if it was added, so
 * connections older than the tracking never drive the count negative. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} open_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_run);
} cpu_run SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct window_timer);
} window SEC(".maps");

/* Ring-buffer reserve failures (events lost because the buffer was full). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __always_inline void emit(__u64 cgid, __u32 metric, __u32 kind, __u64 value, __u64 threshold, __u32 flags,
				 __u64 now)
{
	struct probe_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&drops, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
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

/* Crossing state: per metric m (0 cpu, 1 memory, 2 connections) bit 2m is
 * "at or above the upper threshold", bit 2m+1 "below the lower threshold".
 * All zero is "inside the band", the state a container starts in. A
 * compare-and-swap makes each change, hence each event, happen once even
 * when several CPUs see it together. */
static __always_inline void check_band(__u64 cgid, struct cg_state *st, __u32 idx, __u32 metric, __u64 value,
				       __u64 upper, __u64 lower, int has_upper, int has_lower, __u32 flags,
				       __u64 now)
{
	__u64 ub = 1ULL << (2 * idx), lb = 1ULL << (2 * idx + 1);
	for (int tries = 0; tries < 4; tries++) {
		__u64 old = st->bits, new = old;
		if (has_upper)
			new = value >= upper ? new | ub : new & ~ub;
		if (has_lower)
			new = value < lower ? new | lb : new & ~lb;
		if (new == old)
			return;
		if (__sync_val_compare_and_swap(&st->bits, old, new) != old)
			continue;
		if ((old ^ new) & ub)
			emit(cgid, metric, (new & ub) ? PROBE_KIND_UP : PROBE_KIND_DOWN, value, upper, flags, now);
		if ((old ^ new) & lb)
			emit(cgid, metric, (new & lb) ? PROBE_KIND_DOWN : PROBE_KIND_UP, value, lower, flags, now);
		return;
	}
}

static __always_inline __u32 cpu_flags(const struct tracked_cfg *cfg)
{
	return cfg->cpu_limit_ppm ? PROBE_EVENT_CPU_OF_LIMIT : 0;
}

/* Read the memcg page counter at `memcg` and check the memory band. */
static __always_inline void update_memory(__u64 cgid, struct cg_state *st, const struct tracked_cfg *cfg,
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
	check_band(cgid, st, 1, PROBE_METRIC_MEMORY, bytes, cfg->mem_upper, cfg->mem_lower,
		   cfg->flags & PROBE_HAS_MEM_UPPER, cfg->flags & PROBE_HAS_MEM_LOWER, 0, now);
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

static int window_timer_fired(void *map, int *key, struct window_timer *wt);

SEC("tp_btf/sched_switch")
int BPF_PROG(on_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();

	/* Arm the window timer once, from the first context switch. */
	struct window_timer *wt = bpf_map_lookup_elem(&window, &zero);
	if (wt && !wt->armed && __sync_val_compare_and_swap(&wt->armed, 0, 1) == 0) {
		bpf_timer_init(&wt->timer, &window, CLOCK_MONOTONIC);
		bpf_timer_set_callback(&wt->timer, window_timer_fired);
		bpf_timer_start(&wt->timer, window_ns, 0);
	}

	struct cpu_run *run = bpf_map_lookup_elem(&cpu_run, &zero);
	if (!run)
		return 0;
	__u64 prev_cg = run->cgroup_id;
	/* The timer may have accounted part of this slice already: it moves
	 * `since_ns` forward with a compare-and-swap, we take the rest here
	 * with an exchange, so every nanosecond is counted once. */
	__u64 since = __sync_lock_test_and_set(&run->since_ns, now);
	if (prev_cg) {
		struct cg_state *st = bpf_map_lookup_elem(&state, &prev_cg);
		struct tracked_cfg *cfg = bpf_map_lookup_elem(&tracked, &prev_cg);
		if (st && cfg) {
			if (since && now > since)
				__sync_fetch_and_add(&st->cpu_ns, now - since);
			if (now - st->mem_read_ns >= MEM_READ_MIN_NS) {
				st->mem_read_ns = now;
				struct mem_cgroup *memcg = task_memcg(prev);
				st->memcg = (__u64)memcg;
				update_memory(prev_cg, st, cfg, memcg, now);
			}
		}
	}

	__u64 next_cg = BPF_CORE_READ(next, cgroups, dfl_cgrp, kn, id);
	run->cgroup_id = bpf_map_lookup_elem(&tracked, &next_cg) ? next_cg : 0;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	__u64 cgid;
	__s64 delta;
	if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_RECV) {
		cgid = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
		if (!bpf_map_lookup_elem(&tracked, &cgid))
			return 0;
		struct cg_state *st = bpf_map_lookup_elem(&state, &cgid);
		if (!st)
			return 0;
		__sync_fetch_and_add(&st->accepted, 1);
		/* Not remembered (map full): not counted as open either. */
		if (bpf_map_update_elem(&open_socks, &key, &cgid, BPF_NOEXIST))
			return 0;
		delta = 1;
	} else if (oldstate == TCP_ESTABLISHED) {
		__u64 *owner = bpf_map_lookup_elem(&open_socks, &key);
		if (!owner)
			return 0;
		cgid = *owner;
		bpf_map_delete_elem(&open_socks, &key);
		delta = -1;
	} else {
		return 0;
	}
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&tracked, &cgid);
	struct cg_state *st = bpf_map_lookup_elem(&state, &cgid);
	if (!cfg || !st)
		return 0;
	__s64 open = __sync_fetch_and_add(&st->open_conns, delta) + delta;
	if (open < 0)
		open = 0;
	check_band(cgid, st, 2, PROBE_METRIC_CONNECTIONS, (__u64)open, cfg->conn_upper, cfg->conn_lower,
		   cfg->flags & PROBE_HAS_CONN_UPPER, cfg->flags & PROBE_HAS_CONN_LOWER, 0, bpf_ktime_get_ns());
	return 0;
}

struct window_ctx {
	__u64 now;
};

/* Close one container's window; called for each `tracked` entry. */
static long close_window(void *map, __u64 *key, struct tracked_cfg *cfg, struct window_ctx *ctx)
{
	__u64 cgid = *key;
	__u64 now = ctx->now;
	struct cg_state *st = bpf_map_lookup_elem(&state, &cgid);
	if (!st)
		return 0;

	/* Time of the container's tasks still on a CPU: a busy loop that is
	 * never switched out still counts. */
	__u32 zero = 0;
	for (__u32 cpu = 0; cpu < MAX_CPUS; cpu++) {
		if (cpu >= nr_cpus)
			break;
		struct cpu_run *run = bpf_map_lookup_percpu_elem(&cpu_run, &zero, cpu);
		if (!run)
			break;
		if (run->cgroup_id != cgid)
			continue;
		__u64 since = run->since_ns;
		if (run->cgroup_id != cgid || !since || now <= since)
			continue;
		if (__sync_val_compare_and_swap(&run->since_ns, since, now) == since)
			__sync_fetch_and_add(&st->cpu_ns, now - since);
	}

	__u64 cpu_total = st->cpu_ns;
	if (!st->win_start_ns) {
		st->win_start_ns = now;
		st->win_cpu_ns = cpu_total;
		st->last_sample_ns = now;
		return 0;
	}
	__u64 elapsed = now - st->win_start_ns;
	if (!elapsed)
		return 0;
	__u64 used = cpu_total - st->win_cpu_ns;
	st->win_start_ns = now;
	st->win_cpu_ns = cpu_total;
	__u64 ppm = used * 1000000ULL / elapsed; /* millionths of a core */
	if (cfg->cpu_limit_ppm)
		ppm = ppm * 1000000ULL / cfg->cpu_limit_ppm;
	st->cpu_value = ppm;
	__u32 flags = cpu_flags(cfg);
	check_band(cgid, st, 0, PROBE_METRIC_CPU, ppm, cfg->cpu_upper, cfg->cpu_lower,
		   cfg->flags & PROBE_HAS_CPU_UPPER, cfg->flags & PROBE_HAS_CPU_LOWER, flags, now);

	/* Memory can shrink without the container running (reclaim): re-read
	 * it from the memcg seen at the container's last switch. The read is
	 * a fault-safe probe read; userspace untracks a container when it
	 * dies, before its memcg goes away. */
	update_memory(cgid, st, cfg, (struct mem_cgroup *)st->memcg, now);

	if (now - st->last_sample_ns >= sample_ns) {
		st->last_sample_ns = now;
		__s64 open = st->open_conns;
		__u64 accepted = st->accepted;
		emit(cgid, PROBE_METRIC_CPU, PROBE_KIND_SAMPLE, ppm, 0, flags, now);
		if (st->memcg) {
			emit(cgid, PROBE_METRIC_MEMORY, PROBE_KIND_SAMPLE, st->mem_bytes, 0, 0, now);
			if (st->mem_limit)
				emit(cgid, PROBE_METRIC_MEMORY_LIMIT, PROBE_KIND_SAMPLE, st->mem_limit, 0, 0, now);
		}
		emit(cgid, PROBE_METRIC_CONNECTIONS, PROBE_KIND_SAMPLE, open > 0 ? open : 0, 0, 0, now);
		emit(cgid, PROBE_METRIC_ACCEPTED, PROBE_KIND_SAMPLE, accepted - st->accepted_sampled, 0, 0, now);
		st->accepted_sampled = accepted;
	}
	return 0;
}

static int window_timer_fired(void *map, int *key, struct window_timer *wt)
{
	struct window_ctx ctx = { .now = bpf_ktime_get_ns() };
	bpf_for_each_map_elem(&tracked, close_window, &ctx, 0);
	bpf_timer_start(&wt->timer, window_ns, 0);
	return 0;
}
