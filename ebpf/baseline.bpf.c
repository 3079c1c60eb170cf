// SPDX-License-Identifier: GPL-2.0
/* An empty sched_switch program for the probe benchmark
 * (host/benches/probe.rs): its run time per switch under
 * kernel.bpf_stats_enabled is what the statistics themselves cost (two
 * clock reads around every run), the floor under every figure they give.
 * Never loaded by the daemon.
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
