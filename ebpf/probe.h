/* The ABI between the kernel programs and the daemon: the event pushed
 * through the ring buffer and the per-container configuration userspace
 * writes. The Rust side (host/src/probe/ebpf.rs) mirrors these structs with
 * #[repr(C)]; host/build.rs reads the PROBE_*_SIZE/OFF_* numbers below and
 * the Rust code asserts its own layout against them at compile time, while
 * the _Static_asserts in probe.bpf.c hold the C side to the same numbers.
 * Change a struct here and both builds fail until both sides agree.
 */
#ifndef PROBE_H
#define PROBE_H

#include <linux/types.h>

/* Metrics (probe_event.metric of a reading): each is a row of the metrics
 * table in host/src/model/metrics.rs, which names it, and the index of its
 * band in tracked_cfg.bands. Adding one: a number below PROBE_MAX_METRICS
 * here, the kernel code that measures it (check_band() and a sample in
 * close_window()), and its row in the table. */
#define PROBE_METRIC_CPU 0         /* ppm of a core, or of the CPU limit */
#define PROBE_METRIC_MEMORY 1      /* bytes charged to the memcg */
#define PROBE_METRIC_CONNECTIONS 2 /* accepted connections still open */
/* Demand (ebpf/demand.h): requests, their queue and response time, for
 * request/response protocols over TCP, measured without parsing them. */
#define PROBE_METRIC_QUEUE 9         /* connections in the container's
				      * listeners' accept queues and SYN
				      * backlogs */
#define PROBE_METRIC_INFLIGHT 10     /* requests received, not yet answered */
#define PROBE_METRIC_REQUEST_RATE 11 /* requests that arrived since the
				      * previous sample, per second x 1000
				      * (samples only) */
#define PROBE_METRIC_RESPONSE_P50 12 /* response time percentiles, ns, of */
#define PROBE_METRIC_RESPONSE_P95 13 /* the requests answered since the */
#define PROBE_METRIC_RESPONSE_P99 14 /* previous sample; none if none was */
/* Most metrics: the size of tracked_cfg.bands (two has-bits each in
 * tracked_cfg.flags, two crossing bits each in the kernel's state). */
#define PROBE_MAX_METRICS 16

/* Control signals (probe_event.metric at or above PROBE_SIGNAL_BASE): not
 * measurements, never handed to a policy; the daemon decodes each into its
 * own typed value (host/src/probe/abi.rs). */
#define PROBE_SIGNAL_BASE 32
#define PROBE_SIGNAL_ACCEPTED 32     /* connections accepted since the previous
				      * sample (samples only): a busy signal
				      * for scale to zero */
#define PROBE_SIGNAL_MEMORY_LIMIT 33 /* memcg limit in bytes (samples only) */
#define PROBE_SIGNAL_WAKE 34         /* first connection to a frozen container:
				      * kind UP, value 1; sent once per arming */
#define PROBE_SIGNAL_PORT_SYN 35     /* a connection attempt (bare SYN) to a
				      * parked port was held: kind UP, value the
				      * port, cgroup_id 0; at most one per port
				      * per PROBE_PARK_EVENT_GAP_NS */
#define PROBE_SIGNAL_PORT_LISTEN 36  /* a socket started listening on a parked
				      * port: kind UP, value the port, cgroup_id 0 */

/* Kinds (probe_event.kind). */
#define PROBE_KIND_SAMPLE 0
#define PROBE_KIND_UP 1   /* value went to at or above `threshold` */
#define PROBE_KIND_DOWN 2 /* value went below `threshold` */

/* probe_event.flags */
#define PROBE_EVENT_CPU_OF_LIMIT 1 /* CPU value is a fraction of the limit */

struct probe_event {
	__u64 timestamp_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id;    /* v2 cgroup id (inode) of the container */
	__u64 value;        /* in the metric's unit, see PROBE_METRIC_* */
	__u64 threshold;    /* crossed threshold, same unit; 0 for samples */
	__u32 metric;
	__u32 kind;
	__u32 flags;
	__u32 _pad;
};

#define PROBE_EVENT_SIZE 48
#define PROBE_EVENT_OFF_TIMESTAMP 0
#define PROBE_EVENT_OFF_CGROUP 8
#define PROBE_EVENT_OFF_VALUE 16
#define PROBE_EVENT_OFF_THRESHOLD 24
#define PROBE_EVENT_OFF_METRIC 32
#define PROBE_EVENT_OFF_KIND 36
#define PROBE_EVENT_OFF_FLAGS 40

/* tracked_cfg.flags: which thresholds are set, two bits per metric m:
 * PROBE_HAS_UPPER(m) and PROBE_HAS_LOWER(m). */
#define PROBE_HAS_UPPER(m) (1u << (2 * (m)))
#define PROBE_HAS_LOWER(m) (1u << (2 * (m) + 1))

/* Most containers tracked at once: the size of the slot-indexed maps. */
#define PROBE_MAX_TRACKED 4096

/* One metric's thresholds, in the unit its events use. */
struct probe_band {
	__u64 upper, lower;
};

/* Value of the `configs` array, index = the container's slot. Written by
 * userspace before the container's cgroup id is put in `slots`. */
struct tracked_cfg {
	struct probe_band bands[PROBE_MAX_METRICS]; /* index: PROBE_METRIC_* */
	__u64 cpu_limit_ppm;   /* limit in ppm of a core; 0: none */
	__u64 cpu_upper_ns;    /* on-CPU ns within one window that prove an
				* upward crossing of the CPU band's upper
				* before the window closes; 0: wait for the
				* close */
	__u64 conn_hysteresis; /* connections: an upward crossing of the upper
				* threshold is undone below upper - this, a
				* downward one of the lower at lower + this */
	__u64 conn_gap_ns;     /* least time between two crossings of one
				* connection threshold; a later one waits */
	__u64 cgroup_id;       /* the container's v2 cgroup id */
	__u32 flags;           /* PROBE_HAS_UPPER(m) | PROBE_HAS_LOWER(m) */
	__u32 budget;          /* most crossing events per window; 0: no bound */
};

#define PROBE_BAND_SIZE 16
#define PROBE_CFG_SIZE 304
#define PROBE_CFG_OFF_CPU_LIMIT 256
#define PROBE_CFG_OFF_CPU_UPPER_NS 264
#define PROBE_CFG_OFF_CONN_HYSTERESIS 272
#define PROBE_CFG_OFF_CONN_GAP 280
#define PROBE_CFG_OFF_CGROUP 288
#define PROBE_CFG_OFF_FLAGS 296
#define PROBE_CFG_OFF_BUDGET 300

/* Value of the `control` array (one entry), written by userspace. */
struct probe_control {
	__u64 generation; /* bumped after every change of `slots` */
};

#define PROBE_CONTROL_SIZE 8

/* Indexes of the `drops` array (counters the kernel adds to). */
#define PROBE_DROP_RING 0 /* ring buffer full: event lost */
#define PROBE_DROP_HELD 1 /* crossing over its container's budget: held
			   * back to a later evaluation (once per attempt) */
#define PROBE_DROP_PARKED_SYN 2 /* connection attempts to a parked port
				 * dropped silently (the client retransmits) */

/* Indexes of the `tick_cost` array: the tick's own run time, which bpf_stats
 * does not see (a bpf_timer callback is not a program run). Written only by
 * the tick (one timer: never two at once), read by the probe benchmarks. */
#define PROBE_TICK_CHECK_RUNS 0 /* ticks that checked the CPUs only */
#define PROBE_TICK_CHECK_NS 1   /* their total run time */
#define PROBE_TICK_CLOSE_RUNS 2 /* ticks that also closed every window */
#define PROBE_TICK_CLOSE_NS 3   /* their total run time */

/* Value of the `state` array: kernel-owned accounting, index = slot.
 * Userspace zeroes it before the container's `slots` entry appears; its
 * contents are opaque to userspace, only the size is shared. */
#define PROBE_STATE_SIZE 160
/* ... except these fields, which userspace reads (__s64): connections
 * accepted since tracking and still ESTABLISHED, queued for accept() or not. */
#define PROBE_STATE_OFF_OPEN_CONNS 24

/* Value of the `wake` array (index = slot), written by userspace: WAKE_ARMED
 * while the container is frozen (or being frozen). The first connection the
 * kernel establishes on one of the container's sockets swaps it to 0 and
 * pushes one PROBE_SIGNAL_WAKE event, outside the container's event budget. */
#define PROBE_WAKE_ARMED 1

/* Value of the `parked` hash map (key: TCP port, host order), written by
 * userspace for a service scaled to zero replicas (`autoscale.zero=remove`).
 * The tc classifier (on_tc_ingress) drops a bare SYN to a parked port
 * without an answer (the client retransmits it about a second later) and
 * pushes a PROBE_SIGNAL_PORT_SYN event; a SYN with the ACK bit, and every
 * other packet, passes.
 * - HOLD: every bare SYN is held, even if a socket listens: the service's
 *   last replica is on its way out, and a connection it accepted now would
 *   be reset when it stops.
 * - LOOKUP: a bare SYN for which the kernel finds a socket (a listener
 *   again: the new replica) passes; only those no socket would take are
 *   held. */
#define PROBE_PARK_HOLD 1
#define PROBE_PARK_LOOKUP 2
/* Most ports parked at once. */
#define PROBE_MAX_PARKED 1024
/* Least time between two PROBE_SIGNAL_PORT_SYN events of one port. */
#define PROBE_PARK_EVENT_GAP_NS 100000000

/* Value of the `demand` array (index = slot): kernel-owned, zeroed by
 * userspace before the container's `slots` entry appears (ebpf/demand.h). */
#define PROBE_DEMAND_STATE_SIZE 1392
/* Log-linear response time histogram: 16 buckets per power of two of
 * (ns >> 10), 336 buckets up to about 17 s. */
#define PROBE_DEMAND_BUCKETS 336

#endif
