/* The kernel-side state of the probes (ebpf/probe.bpf.c): per-container
 * accounting, what runs on each CPU, and the maps. Only probe.bpf.c
 * includes it; userspace sees the maps through the names and the sizes
 * shared in probe.h.
 */
#ifndef PROBE_STATE_H
#define PROBE_STATE_H

/* Kernel-side accounting of one container. */
struct cg_state {
	__u64 win_cpu_ns;       /* on-CPU total when the current window opened */
	__u64 win_start_ns;     /* when the current window opened; 0: not yet */
	__u64 last_sample_ns;   /* when the last samples went out */
	__s64 open_conns;       /* accepted connections still ESTABLISHED */
	__u64 accepted;         /* accepted connections so far */
	__u64 accepted_sampled; /* `accepted` at the last sample */
	__u64 mem_bytes;        /* last memcg usage read */
	__u64 mem_limit;        /* last memcg limit read; 0: none */
	__u64 memcg;            /* address of the memcg, for the tick's reads */
	__u64 tg;               /* address of the task group (CFS bandwidth) */
	__u64 cpu_value;        /* last CPU window value, event unit */
	__u64 bits;             /* crossing state, see check_band() */
	__u64 mem_read_ns;      /* when sched_switch last read the memcg */
	__u64 conn_event_ns;    /* when the last crossing of the connections' upper went out */
	__u64 spent;            /* events pushed in the current window */
	__s64 win_throttled;    /* nr_throttled + 1 when the window opened; 0: unknown */
	__u64 early;            /* an early upward CPU crossing in this window */
	__u64 conn_low_event_ns; /* when the last crossing of the connections' lower went out */
	__u64 _reserved[2];
};

/* What runs on this CPU. The switch fields are written only by this CPU's
 * sched_switch and read by the tick on any CPU, consistently thanks to
 * `seq` (odd while written); the tick_* fields only by the tick. */
struct slot_cache {
	__u64 cgroup_id;
	__u64 generation;
	__u32 slot1; /* slot + 1; 0: not tracked */
	__u32 _pad;
};

struct cpu_run {
	__u64 seq;
	__u64 start_runtime; /* the running tracked task's se.sum_exec_runtime
			      * when it came on this CPU */
	__u64 generation;    /* generation `slot1` was resolved at */
	__u32 slot1;         /* slot + 1 of the running task's container; 0: none */
	__u32 _pad;
	__u64 tick_seq;      /* `seq` when the tick first saw it */
	__u64 tick_since_ns; /* when the tick first saw `tick_seq`: the task
			      * running then has run at least since */
	struct slot_cache cache[CACHE_WAYS];
};

struct tick_timer {
	struct bpf_timer timer;
	__u64 armed;
	__u64 last_close_ns;
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
_Static_assert(__builtin_offsetof(struct tracked_cfg, cpu_upper_ns) == PROBE_CFG_OFF_CPU_UPPER_NS, "cpu_upper_ns");
_Static_assert(sizeof(struct probe_band) == PROBE_BAND_SIZE, "probe_band size");
_Static_assert(PROBE_MAX_METRICS * 2 <= 32, "two has-bits per metric in tracked_cfg.flags");
_Static_assert(PROBE_SIGNAL_BASE >= PROBE_MAX_METRICS, "signals never collide with metric ids");
_Static_assert(__builtin_offsetof(struct tracked_cfg, conn_hysteresis) == PROBE_CFG_OFF_CONN_HYSTERESIS, "conn_hysteresis");
_Static_assert(__builtin_offsetof(struct tracked_cfg, conn_gap_ns) == PROBE_CFG_OFF_CONN_GAP, "conn_gap_ns");
_Static_assert(__builtin_offsetof(struct tracked_cfg, cgroup_id) == PROBE_CFG_OFF_CGROUP, "cgroup_id");
_Static_assert(__builtin_offsetof(struct tracked_cfg, flags) == PROBE_CFG_OFF_FLAGS, "flags");
_Static_assert(__builtin_offsetof(struct tracked_cfg, budget) == PROBE_CFG_OFF_BUDGET, "budget");
_Static_assert(sizeof(struct probe_control) == PROBE_CONTROL_SIZE, "probe_control size");
_Static_assert(__builtin_offsetof(struct cg_state, open_conns) == PROBE_STATE_OFF_OPEN_CONNS, "open_conns");

/* Tracked cgroup id -> slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u64);
	__type(value, __u32);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u32);
	__type(value, struct tracked_cfg);
} configs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u32);
	__type(value, struct cg_state);
} state SEC(".maps");

/* On-CPU nanoseconds per slot, per CPU: each CPU adds only to its own copy,
 * so the switch path needs neither atomics nor a shared cache line. The
 * counters are cumulative; windows take differences. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u32);
	__type(value, __u64);
} cpu_time SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_control);
} control SEC(".maps");

/* Slot -> PROBE_WAKE_ARMED or 0: see probe.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u32);
	__type(value, __u64);
} wake SEC(".maps");

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
	__type(value, struct tick_timer);
} tick SEC(".maps");

/* PROBE_DROP_*: events lost or held back. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* PROBE_TICK_*: the tick's runs and run time. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} tick_cost SEC(".maps");

/* Parked TCP ports (host order) -> PROBE_PARK_HOLD or PROBE_PARK_LOOKUP:
 * see probe.h. Written by userspace only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROBE_MAX_PARKED);
	__type(key, __u16);
	__type(value, __u32);
} parked SEC(".maps");

/* When each parked port last pushed a PROBE_SIGNAL_PORT_SYN event: a burst
 * of connection attempts (and their retransmits) is one event per
 * PROBE_PARK_EVENT_GAP_NS. LRU: a port unparked and forgotten leaves. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PROBE_MAX_PARKED);
	__type(key, __u16);
	__type(value, __u64);
} park_pushed SEC(".maps");

/* Size set by the loader (ProbeSettings::ring_buffer_bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

#endif
