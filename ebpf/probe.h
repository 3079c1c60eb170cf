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

/* Metrics (probe_event.metric). */
#define PROBE_METRIC_CPU 1          /* ppm of a core, or of the CPU limit */
#define PROBE_METRIC_MEMORY 2       /* bytes charged to the memcg */
#define PROBE_METRIC_CONNECTIONS 3  /* accepted connections still open */
#define PROBE_METRIC_ACCEPTED 4     /* accepted since the previous sample */
#define PROBE_METRIC_MEMORY_LIMIT 5 /* memcg limit in bytes (samples only) */

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

/* tracked_cfg.flags: which thresholds are set. */
#define PROBE_HAS_CPU_UPPER (1u << 0)
#define PROBE_HAS_CPU_LOWER (1u << 1)
#define PROBE_HAS_MEM_UPPER (1u << 2)
#define PROBE_HAS_MEM_LOWER (1u << 3)
#define PROBE_HAS_CONN_UPPER (1u << 4)
#define PROBE_HAS_CONN_LOWER (1u << 5)

/* Value of the `tracked` map, key = v2 cgroup id. Written by userspace. */
struct tracked_cfg {
	__u64 cpu_upper, cpu_lower;   /* ppm, in the unit the events use */
	__u64 mem_upper, mem_lower;   /* bytes */
	__u64 conn_upper, conn_lower; /* open connections */
	__u64 cpu_limit_ppm;          /* limit in ppm of a core; 0: none */
	__u32 flags;                  /* PROBE_HAS_* */
	__u32 _pad;
};

#define PROBE_CFG_SIZE 64
#define PROBE_CFG_OFF_CPU_LIMIT 48
#define PROBE_CFG_OFF_FLAGS 56

/* Value of the `state` map: kernel-owned accounting. Userspace inserts it
 * zeroed before the `tracked` entry and deletes it after; its contents are
 * opaque to userspace, only the size is shared. */
#define PROBE_STATE_SIZE 128

#endif
