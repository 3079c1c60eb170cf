/* The few kernel structures the probes read, declared by hand with only the
 * fields used. `preserve_access_index` makes every field access a CO-RE
 * relocation: the loader (aya) rewrites offsets against the running kernel's
 * BTF (/sys/kernel/btf/vmlinux), so layout differences between kernels do
 * not matter, only field names and types do.
 */
#ifndef PROBE_KERNEL_H
#define PROBE_KERNEL_H

#include <linux/types.h>
#include <stdbool.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct kernfs_node {
	__u64 id; /* the cgroup id: equals the cgroup directory's inode */
};

struct cgroup {
	struct kernfs_node *kn;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

/* Only the count matters for the array's element size; indexing with a
 * relocated enum value keeps it correct whatever the kernel's config. */
struct css_set {
	struct cgroup_subsys_state *subsys[16];
	struct cgroup *dfl_cgrp; /* the task's cgroup in the v2 hierarchy */
};

/* CFS bandwidth control of a task group (the cpu controller's cgroup,
 * v1 or v2): nr_throttled counts the periods that ended throttled. */
struct cfs_bandwidth {
	__u64 quota;
	int nr_throttled;
};

struct task_group {
	struct cfs_bandwidth cfs_bandwidth;
};

/* The scheduler's accounting of a task: sum_exec_runtime is brought up to
 * date (update_curr) before sched_switch fires, for the task leaving the
 * CPU; exec_start is the runqueue clock of that update (ns). */
struct sched_entity {
	__u64 exec_start;
	__u64 sum_exec_runtime;
};

struct task_struct {
	int pid; /* 0: the idle task of a CPU */
	struct sched_entity se;
	struct css_set *cgroups;
	struct task_group *sched_task_group;
};

typedef struct {
	__s64 counter;
} atomic_long_t;

/* The memcg charge counter: usage and max in pages. */
struct page_counter {
	atomic_long_t usage;
	unsigned long max;
};

struct mem_cgroup {
	struct cgroup_subsys_state css;
	struct page_counter memory;
};

struct sock_cgroup_data {
	struct cgroup *cgroup; /* v2 cgroup of the process that made the socket */
};

/* skc_num is the local port in host order (inside an anonymous struct in
 * the kernel's definition; CO-RE finds it there). */
struct sock_common {
	__u16 skc_num;
	volatile unsigned char skc_state;
};

struct sock {
	struct sock_common __sk_common;
	struct sock_cgroup_data sk_cgrp_data;
	__u16 sk_protocol;
	__u32 sk_ack_backlog; /* connections in a listener's accept queue */
	void *sk_bpf_storage; /* NULL: no socket storage of any map */
};

/* A listener's queue of connection requests still in the handshake
 * (SYN_RECV request socks): qlen. */
typedef struct {
	int counter;
} atomic_t;

struct request_sock_queue {
	atomic_t qlen;
};

struct inet_connection_sock {
	struct request_sock_queue icsk_accept_queue;
};

/* A received segment in tcp_rcv_established (tp_btf/tcp_probe): `cb`
 * holds its struct tcp_skb_cb (seq at 0, end_seq = seq + SYN + FIN +
 * payload at 4, the TCP flags at 12), filled by tcp_v4/v6_fill_cb. */
struct sk_buff {
	char cb[48];
};

/* The context of an `iter/tcp` program. */
struct bpf_iter_meta {
	void *seq;
};

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
};

#pragma clang attribute pop

enum cgroup_subsys_id {
	memory_cgrp_id = 4, /* placeholder: relocated by bpf_core_enum_value */
};

/* include/net/tcp_states.h: stable UAPI-like values. */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT1 = 4,
	TCP_CLOSE = 7,
	TCP_CLOSE_WAIT = 8,
	TCP_LAST_ACK = 9,
	TCP_LISTEN = 10,
};

#define IPPROTO_TCP 6
#define CLOCK_MONOTONIC 1

#endif
