/* Demand beyond saturation: for request/response protocols over TCP, the
 * requests a container was asked for, how many wait, and how long they
 * take, measured in the kernel without parsing the protocol. Included by
 * probe.bpf.c (after its maps and helpers); see docs/demand.md.
 *
 * Per tracked container (slot):
 * - queue: connections in the accept queues (sk_ack_backlog) and SYN
 *   backlogs (icsk_accept_queue.qlen) of its listening sockets. Listeners
 *   are found when they start listening while tracked
 *   (inet_sock_set_state -> LISTEN) and, for those older than the
 *   tracking, by the `iter/tcp` program userspace runs once when it tracks
 *   a container; both put them in `listeners`, which the window close
 *   reads (a listener that closes leaves it: LISTEN -> CLOSE).
 * - inflight: requests received and not yet answered. Each accepted
 *   connection of a tracked container (SYN_RECV -> ESTABLISHED, attributed
 *   by the socket's cgroup) gets per-socket storage; a segment with payload
 *   received on it (tp_btf/tcp_probe, softirq) while no request is open
 *   opens one (the time of its arrival in the kernel, accept-queue time
 *   included: the data of a new connection waits in the queue with it);
 *   the replica's first send after it (tp_btf/tcp_sendmsg_locked, process
 *   context, before any byte is queued) closes it. The connection leaving
 *   for FIN_WAIT1, LAST_ACK or CLOSE with a request open abandons it.
 * - request rate: requests opened per second between two samples;
 * - response time p50/p95/p99: of the requests answered between two
 *   samples, from the histogram below, computed at the sample in the timer
 *   (bounded loops). A p95 threshold is checked at every window close over
 *   the requests answered since the last sample.
 * The per-request counts are per CPU (`demand_cpu`: opened, closed), so
 * that the two ends of a request, often on two CPUs, never write the same
 * cache line; in-flight is their sum over the CPUs, taken by the timer
 * at each window close (its crossings too: see demand_close).
 * Sockets of untracked containers have no storage: tcp_probe and
 * tcp_sendmsg_locked return after one read of the socket's storage pointer
 * (and a failed storage lookup when another map keeps storage on it);
 * connection state changes after one hash lookup.
 */
#ifndef PROBE_DEMAND_H
#define PROBE_DEMAND_H

#define DEMAND_BUCKETS PROBE_DEMAND_BUCKETS
_Static_assert((PROBE_MAX_METRICS & (PROBE_MAX_METRICS - 1)) == 0, "demand_band masks metric ids");
/* Histogram unit: ns >> 10 (1.024 us); 16 sub-buckets per power of two
 * from 16 units on, linear below. The last bucket holds everything from
 * 2^24 units (about 17 s) on. */
#define DEMAND_UNIT_SHIFT 10
#define DEMAND_MAX_UNITS ((1ULL << 24) - 1)

/* Per-socket state of an accepted connection of a tracked container. The
 * two ends of a request usually run on two CPUs (the arrival in the
 * softirq of the client's, the answer in the replica's thread): each end
 * takes `start_ns` with one atomic (compare-and-swap to open, exchange to
 * close), which moves its cache line once per end, where a read then a
 * write moved it twice, and never lets both ends see the same request. */
struct conn_demand {
	__u64 start_ns; /* arrival of the open request's first segment; 0: none open */
	__u64 cgroup_id; /* the owner at accept: a reused slot is not charged */
	__u32 slot;
	__u32 pad;
};

/* Kernel-side demand accounting of one container. */
struct demand_state {
	__s64 queue;            /* sum of `listeners` values' last reading */
	__u64 arrivals_sampled; /* requests opened, over the CPUs, at the last sample */
	__u64 last_sample_ns;   /* when the last samples went out; 0: not yet */
	__u64 prev_arrivals;    /* requests opened in the previous sample interval */
	__u64 prev_interval_ns; /* its length; 0: none yet */
	__u64 prev_inflight;    /* in flight at the previous window close */
	/* Answered since the last sample, by response time; 8-byte aligned
	 * (the close empties two buckets with one 64-bit exchange). */
	__u32 hist[DEMAND_BUCKETS] __attribute__((aligned(8)));
};

/* One container's requests on one CPU (zeroed by userspace with the
 * slot): in flight = sum of opened - sum of closed. */
struct demand_cpu {
	__u64 opened; /* requests that arrived (softirq, on this CPU) */
	__u64 closed; /* requests answered or abandoned on this CPU */
};

_Static_assert(sizeof(struct demand_state) == PROBE_DEMAND_STATE_SIZE, "demand_state size is shared with the loader");

/* A tracked container's listening socket (key: its address). */
struct listener {
	__u64 cgroup_id;
	__u32 slot;
	__u32 last; /* queue length at the last reading */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u32);
	__type(value, struct demand_state);
} demand SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_TRACKED);
	__type(key, __u32);
	__type(value, struct demand_cpu);
} demand_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct listener);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct conn_demand);
} conn_demand SEC(".maps");

/* The timer's copy of a histogram while it computes percentiles. */
struct demand_scratch {
	__u32 hist[DEMAND_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct demand_scratch);
} demand_scratch SEC(".maps");

static __always_inline __u32 ilog2_u64(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

static __always_inline __u32 bucket_of(__u64 ns)
{
	__u64 u = ns >> DEMAND_UNIT_SHIFT;
	if (u > DEMAND_MAX_UNITS)
		u = DEMAND_MAX_UNITS;
	if (u < 32)
		return u;
	__u32 e = ilog2_u64(u);
	return (e - 3) * 16 + ((u >> (e - 4)) & 15);
}

/* The middle of a bucket, ns. */
static __always_inline __u64 bucket_mid_ns(__u32 idx)
{
	if (idx < 32)
		return ((__u64)idx << DEMAND_UNIT_SHIFT) + (1ULL << (DEMAND_UNIT_SHIFT - 1));
	__u32 e = idx / 16 + 3, sub = idx % 16;
	__u64 lower = (16ULL + sub) << (e - 4), width = 1ULL << (e - 4);
	return (lower << DEMAND_UNIT_SHIFT) + (width << (DEMAND_UNIT_SHIFT - 1));
}

/* A container's slot, if `cgid` is tracked and `slot` still its own. */
static __always_inline int slot_owned(__u32 slot, __u64 cgid)
{
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&configs, &slot);
	__u32 *s = bpf_map_lookup_elem(&slots, &cgid);
	return cfg && s && *s == slot && cfg->cgroup_id == cgid;
}

/* The per-request paths' cheaper check: the slot's configuration still
 * names the socket's container (a slot is reused for another container
 * only after its configuration is rewritten; until then an untracked
 * container's sockets only touch state nobody reads). */
static __always_inline struct tracked_cfg *slot_cfg(__u32 slot, __u64 cgid)
{
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&configs, &slot);
	return cfg && cfg->cgroup_id == cgid ? cfg : 0;
}

/* A demand metric's band (tracked_cfg.bands[metric], set by the
 * `autoscale.<metric>.upper/lower` labels), with check_band()'s crossing
 * bits, budget and hysteresis: a tenth of the upper threshold (at least 1)
 * for counts, a tenth for the request rate, a sixteenth for response
 * times. A global function: the verifier checks it once, alone, instead of
 * once per caller (the window close is near the verifier's limit). */
__attribute__((noinline)) int demand_band_as(__u32 slot, __u32 metric, __u64 value, __u64 shown, __u64 now)
{
	if (metric >= PROBE_MAX_METRICS)
		return 0;
	/* Kept in range where the verifier sees it (a power of two). */
	barrier_var(metric);
	metric &= PROBE_MAX_METRICS - 1;
	struct tracked_cfg *cfg = bpf_map_lookup_elem(&configs, &slot);
	if (!cfg || !(cfg->flags & (PROBE_HAS_UPPER(metric) | PROBE_HAS_LOWER(metric))))
		return 0;
	struct cg_state *st = bpf_map_lookup_elem(&state, &slot);
	if (!st)
		return 0;
	__u64 upper = cfg->bands[metric].upper, hyst;
	if (metric >= PROBE_METRIC_RESPONSE_P50)
		hyst = upper / 16;
	else if (metric == PROBE_METRIC_REQUEST_RATE)
		hyst = upper / 10;
	else
		hyst = upper >= 20 ? upper / 10 : 1;
	check_band_as(cfg->cgroup_id, st, cfg, metric, value, shown, hyst, 0, now);
	return 0;
}

static __always_inline int demand_band(__u32 slot, __u32 metric, __u64 value, __u64 now)
{
	return demand_band_as(slot, metric, value, value, now);
}

static __always_inline int has_band(const struct tracked_cfg *cfg, __u32 metric)
{
	return cfg->flags & (PROBE_HAS_UPPER(metric) | PROBE_HAS_LOWER(metric));
}

/* A slot's per-CPU counts, summed. */
struct demand_sum {
	__u64 opened;
	__u64 closed;
	__u32 slot;
};

static long add_demand_cpu(__u64 cpu, struct demand_sum *sum)
{
	struct demand_cpu *dc = bpf_map_lookup_percpu_elem(&demand_cpu, &sum->slot, cpu);
	if (!dc)
		return 1;
	sum->opened += READ_ONCE(dc->opened);
	sum->closed += READ_ONCE(dc->closed);
	return 0;
}

/* A slot's requests in flight, summed over the CPUs, and (`opened`, if
 * not NULL) those opened so far. A global function: the verifier checks it
 * once, alone, instead of multiplying its callers' states (the window
 * close is near the verifier's limit). */
__attribute__((noinline)) __u64 demand_inflight(__u32 slot, __u64 *opened)
{
	struct demand_sum sum = { .opened = 0, .closed = 0, .slot = slot };
	bpf_loop(nr_cpus < MAX_CPUS ? nr_cpus : MAX_CPUS, add_demand_cpu, &sum, 0);
	if (opened)
		*opened = sum.opened;
	return sum.opened > sum.closed ? sum.opened - sum.closed : 0;
}

/* An accepted connection of the container in `slot` (SYN_RECV ->
 * ESTABLISHED, attributed by its cgroup `cgid`): its per-socket state. */
static __always_inline void demand_on_accept(struct sock *sk, __u64 cgid, __u32 slot)
{
	struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (c) {
		c->cgroup_id = cgid;
		c->slot = slot;
		c->start_ns = 0;
	}
}

/* Connection state changes (from on_inet_sock_set_state, which calls
 * demand_on_accept itself with the slot it looks up anyway): listeners
 * come and go, and a connection ending with a request open abandons it. */
static __always_inline void demand_on_state(struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_LISTEN) {
		if (sk->sk_protocol != IPPROTO_TCP)
			return;
		__u64 cgid = sk->sk_cgrp_data.cgroup->kn->id;
		__u32 *slot = bpf_map_lookup_elem(&slots, &cgid);
		if (!slot)
			return;
		__u64 key = (__u64)sk;
		struct listener l = { .cgroup_id = cgid, .slot = *slot, .last = 0 };
		bpf_map_update_elem(&listeners, &key, &l, BPF_NOEXIST);
		return;
	}
	if (oldstate == TCP_LISTEN) {
		__u64 key = (__u64)sk;
		struct listener *l = bpf_map_lookup_elem(&listeners, &key);
		if (!l)
			return;
		__u32 slot = l->slot;
		struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
		if (d && slot_owned(slot, l->cgroup_id))
			__sync_fetch_and_sub(&d->queue, (__s64)l->last);
		bpf_map_delete_elem(&listeners, &key);
		return;
	}
	if (newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK && newstate != TCP_CLOSE)
		return;
	/* Untracked containers' sockets: no storage, no helper call. */
	if (!sk->sk_bpf_storage)
		return;
	struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, 0);
	if (!c || !__sync_lock_test_and_set(&c->start_ns, 0))
		return;
	__u32 slot = c->slot;
	struct demand_cpu *dc = bpf_map_lookup_elem(&demand_cpu, &slot);
	struct tracked_cfg *cfg = slot_cfg(slot, c->cgroup_id);
	if (!dc || !cfg)
		return;
	__sync_fetch_and_add(&dc->closed, 1);
}

/* TCP flags in struct tcp_skb_cb's tcp_flags. */
#define DEMAND_TCP_FIN 0x01
#define DEMAND_TCP_SYN 0x02

/* A segment received on an established socket (softirq, or the socket's
 * backlog at release_sock): with payload and no request open, a request
 * arrives. The payload's length is in the segment's control block:
 * end_seq - seq, less one for a SYN or a FIN. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(on_tcp_probe, struct sock *sk, struct sk_buff *skb)
{
	/* Untracked containers' sockets (all but a few): no storage at all. */
	if (!sk->sk_bpf_storage)
		return 0;
	/* A bare ACK (or FIN), most segments of a tracked connection but its
	 * requests: the skb's own control block says so, before any helper. */
	__u32 seq = *(__u32 *)&skb->cb[0], end_seq = *(__u32 *)&skb->cb[4];
	__u8 flags = skb->cb[12];
	__u32 len = end_seq - seq - !!(flags & DEMAND_TCP_FIN) - !!(flags & DEMAND_TCP_SYN);
	if (!len || len > (1u << 31))
		return 0;
	struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, 0);
	if (!c)
		return 0;
	__u32 slot = c->slot;
	struct demand_cpu *dc = bpf_map_lookup_elem(&demand_cpu, &slot);
	struct tracked_cfg *cfg = slot_cfg(slot, c->cgroup_id);
	if (!dc || !cfg)
		return 0;
	/* Opens a request if none is: one compare-and-swap takes the line
	 * (a later segment of an open request only pays a clock read). */
	__u64 now = bpf_ktime_get_ns();
	if (__sync_val_compare_and_swap(&c->start_ns, 0, now))
		return 0;
	/* Only this program writes `opened`, on its own CPU's copy, and a
	 * program never runs nested in itself on one CPU (the kernel skips
	 * such a run): a plain increment, no locked instruction. */
	READ_ONCE(dc->opened) = dc->opened + 1;
	return 0;
}

/* The replica sends (process context, before the first byte is queued):
 * the open request, if any, is answered. */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(on_tcp_sendmsg, struct sock *sk)
{
	if (!sk->sk_bpf_storage)
		return 0;
	struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, 0);
	if (!c)
		return 0;
	/* Closes the open request, if any, with one exchange. */
	__u64 start = __sync_lock_test_and_set(&c->start_ns, 0);
	if (!start)
		return 0;
	__u64 took = bpf_ktime_get_ns() - start;
	__u32 slot = c->slot;
	struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
	struct demand_cpu *dc = bpf_map_lookup_elem(&demand_cpu, &slot);
	struct tracked_cfg *cfg = slot_cfg(slot, c->cgroup_id);
	if (!d || !dc || !cfg)
		return 0;
	__u32 b = bucket_of(took);
	if (b < DEMAND_BUCKETS)
		__sync_fetch_and_add(&d->hist[b], 1);
	__sync_fetch_and_add(&dc->closed, 1);
	return 0;
}

/* Run by userspace (a read of the iterator's link) when it tracks a
 * container: the listeners of tracked containers that were listening
 * before, which no state change will report. */
SEC("iter/tcp")
int demand_find_listeners(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct sock *sk = (struct sock *)skc;
	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN)
		return 0;
	__u64 cgid = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
	__u32 *slot = bpf_map_lookup_elem(&slots, &cgid);
	if (!slot)
		return 0;
	__u64 key = (__u64)sk;
	struct listener l = { .cgroup_id = cgid, .slot = *slot, .last = 0 };
	bpf_map_update_elem(&listeners, &key, &l, BPF_NOEXIST);
	return 0;
}

/* Read one listener's queue into its container's sum (window close). */
static long poll_listener(void *map, __u64 *key, struct listener *l, __u64 *now)
{
	__u32 slot = l->slot;
	struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
	if (!d)
		return 0;
	if (!slot_owned(slot, l->cgroup_id)) {
		/* Untracked (the slot was zeroed or reused): forget it. */
		bpf_map_delete_elem(&listeners, key);
		return 0;
	}
	struct sock *sk = (struct sock *)*key;
	__u32 backlog = BPF_CORE_READ(sk, sk_ack_backlog);
	int syn = BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_accept_queue.qlen.counter);
	__u32 now_len = backlog + (syn > 0 ? syn : 0);
	__s64 delta = (__s64)now_len - (__s64)l->last;
	l->last = now_len;
	if (delta)
		__sync_fetch_and_add(&d->queue, delta);
	return 0;
}

static __always_inline void demand_poll_listeners(__u64 now)
{
	bpf_for_each_map_elem(&listeners, poll_listener, &now, 0);
}

/* Percentiles of the scratch histogram, in one pass. */
struct pct_ctx {
	__u64 rank[3]; /* nearest-rank targets: ceil(p x n) */
	__u64 value[3];
	__u64 seen;
	__u32 found;
	__u32 take; /* 1: move the container's histogram into scratch */
	struct demand_state *d;
	struct demand_scratch *s;
};

static long sum_bucket(__u64 i, struct pct_ctx *c)
{
	if (i >= DEMAND_BUCKETS / 2)
		return 1;
	/* Two buckets per 64-bit word: one exchange empties both at once
	 * (32-bit exchanges need BPF v3 atomics), so an increment lands in
	 * this sample or the next, never in neither. */
	__u64 *pair = (__u64 *)&c->d->hist[2 * i];
	__u64 both = c->take ? __sync_lock_test_and_set(pair, 0) : READ_ONCE(*pair);
	__u32 lo = (__u32)both, hi = (__u32)(both >> 32);
	c->s->hist[2 * i] = lo;
	c->s->hist[2 * i + 1] = hi;
	c->seen += (__u64)lo + hi;
	return 0;
}

static long walk_bucket(__u64 i, struct pct_ctx *c)
{
	if (i >= DEMAND_BUCKETS)
		return 1;
	c->seen += c->s->hist[i];
	for (int k = 0; k < 3; k++) {
		if (!(c->found & (1u << k)) && c->seen >= c->rank[k]) {
			c->found |= 1u << k;
			c->value[k] = bucket_mid_ns(i);
		}
	}
	return c->found == 7;
}

/* p50/p95/p99 of the container's histogram; `take` empties it. Returns
 * the number of requests in it. */
static __always_inline __u64 demand_percentiles(struct demand_state *d, int take, __u64 out[3])
{
	__u32 zero = 0;
	struct demand_scratch *s = bpf_map_lookup_elem(&demand_scratch, &zero);
	if (!s)
		return 0;
	struct pct_ctx c = { .d = d, .s = s, .take = take };
	bpf_loop(DEMAND_BUCKETS / 2, sum_bucket, &c, 0);
	__u64 n = c.seen;
	if (!n)
		return 0;
	c.rank[0] = (n * 50 + 99) / 100;
	c.rank[1] = (n * 95 + 99) / 100;
	c.rank[2] = (n * 99 + 99) / 100;
	c.seen = 0;
	bpf_loop(DEMAND_BUCKETS, walk_bucket, &c, 0);
	out[0] = c.value[0];
	out[1] = c.value[1];
	out[2] = c.value[2];
	return n;
}

/* One container's window close (from close_window): crossings of the
 * queue (read just before by demand_poll_listeners), of in-flight (those
 * held back), of the request rate over the last sample interval (sliding:
 * this interval's arrivals so far plus the previous interval's, weighted by
 * the part of it still inside), of the response-time percentiles of the
 * requests answered since the last sample; every `sample_ns` the samples. */
static __always_inline void demand_close(__u32 slot, __u64 cgid, const struct tracked_cfg *cfg, __u64 now)
{
	struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
	if (!d)
		return;
	__s64 queue = READ_ONCE(d->queue);
	__u64 q = queue > 0 ? queue : 0;
	__u64 opened = 0;
	__u64 in = demand_inflight(slot, &opened);
	demand_band(slot, PROBE_METRIC_QUEUE, q, now);
	/* Judged on the smaller of this close's and the previous one's, so
	 * that an upward crossing shows a step after at least a window of it
	 * (its requests arrive over a few ms: the first one over the
	 * threshold would show a fraction), a downward one at once. */
	demand_band_as(slot, PROBE_METRIC_INFLIGHT, in < d->prev_inflight ? in : d->prev_inflight, in, now);
	d->prev_inflight = in;
	if (!d->last_sample_ns) {
		d->last_sample_ns = now;
		d->arrivals_sampled = opened;
		return;
	}
	__u64 elapsed = now - d->last_sample_ns;
	if (has_band(cfg, PROBE_METRIC_REQUEST_RATE) && elapsed) {
		__u64 span = d->prev_interval_ns, cur = opened - d->arrivals_sampled, rate;
		if (span > elapsed)
			rate = (cur + d->prev_arrivals * (span - elapsed) / span) * 1000000000000ULL / span;
		else
			rate = cur * 1000000000000ULL / elapsed;
		demand_band(slot, PROBE_METRIC_REQUEST_RATE, rate, now);
	}
	int sample = elapsed >= sample_ns;
	__u64 p[3] = {};
	__u64 n = 0;
	if (sample)
		n = demand_percentiles(d, 1, p);
	else if (has_band(cfg, PROBE_METRIC_RESPONSE_P50) || has_band(cfg, PROBE_METRIC_RESPONSE_P95) ||
		 has_band(cfg, PROBE_METRIC_RESPONSE_P99))
		n = demand_percentiles(d, 0, p);
	if (n) {
		demand_band(slot, PROBE_METRIC_RESPONSE_P50, p[0], now);
		demand_band(slot, PROBE_METRIC_RESPONSE_P95, p[1], now);
		demand_band(slot, PROBE_METRIC_RESPONSE_P99, p[2], now);
	}
	if (!sample)
		return;
	__u64 rate = (opened - d->arrivals_sampled) * 1000000000000ULL / elapsed;
	d->prev_arrivals = opened - d->arrivals_sampled;
	d->prev_interval_ns = elapsed;
	d->arrivals_sampled = opened;
	d->last_sample_ns = now;
	emit(cgid, PROBE_METRIC_QUEUE, PROBE_KIND_SAMPLE, q, 0, 0, now);
	emit(cgid, PROBE_METRIC_INFLIGHT, PROBE_KIND_SAMPLE, in, 0, 0, now);
	emit(cgid, PROBE_METRIC_REQUEST_RATE, PROBE_KIND_SAMPLE, rate, 0, 0, now);
	if (n) {
		emit(cgid, PROBE_METRIC_RESPONSE_P50, PROBE_KIND_SAMPLE, p[0], 0, 0, now);
		emit(cgid, PROBE_METRIC_RESPONSE_P95, PROBE_KIND_SAMPLE, p[1], 0, 0, now);
		emit(cgid, PROBE_METRIC_RESPONSE_P99, PROBE_KIND_SAMPLE, p[2], 0, 0, now);
	}
}

#endif
