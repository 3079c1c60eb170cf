// SPDX-License-Identifier: GPL-2.0
/* An empty sched_switch program for the probe benchmark
 * (host/benches/probe.rs): its run time per switch under
 * kernel.bpf_stats_enabled is what the statistics themselves cost (two
 * clock reads around every run), the floor under every figure they give.
 * Never loaded by the daemon. The tcp ones: the floor under the demand
 * programs' figures.
 */
#include "kernel.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sched_switch")
int BPF_PROG(baseline_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	return 0;
}

/* The same floor on the demand programs' tracepoints. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(baseline_tcp_probe, void *sk, void *skb)
{
	return 0;
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(baseline_tcp_sendmsg, void *sk)
{
	return 0;
}
