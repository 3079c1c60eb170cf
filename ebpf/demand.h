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
 * Sockets of untracked containers have no storage: every program returns
 * after one failed storage lookup (tcp_probe, tcp_sendmsg_locked) or one
 * hash lookup on connection state changes.
 */
#ifndef PROBE_DEMAND_H
#define PROBE_DEMAND_H

#define DEMAND_BUCKETS PROBE_DEMAND_BUCKETS
/* Histogram unit: ns >> 10 (1.024 us); 16 sub-buckets per power of two
 * from 16 units on, linear below. The last bucket holds everything from
 * 2^24 units (about 17 s) on. */
#define DEMAND_UNIT_SHIFT 10
#define DEMAND_MAX_UNITS ((1ULL << 24) - 1)

/* Per-socket state of an accepted connection of a tracked container. */
struct conn_demand {
	__u64 start_ns; /* arrival of the open request's first segment */
	__u64 cgroup_id; /* the owner at accept: a reused slot is not charged */
	__u32 slot;
	__u32 open; /* 1: a request is open */
};

/* Kernel-side demand accounting of one container. */
struct demand_state {
	__s64 inflight;        /* requests open */
	__s64 queue;           /* sum of `listeners` values' last reading */
	__u64 arrivals;        /* requests opened so far */
	__u64 arrivals_sampled; /* `arrivals` at the last sample */
	__u64 answered;        /* requests answered so far */
	__u64 abandoned;       /* requests whose connection ended unanswered */
	__u64 last_sample_ns;  /* when the last samples went out; 0: not yet */
	__u64 in_window;       /* requests answered since the last sample */
	__u64 _reserved[2];
	/* Answered since the last sample, by response time; 8-byte aligned
	 * (the close empties two buckets with one 64-bit exchange). */
	__u32 hist[DEMAND_BUCKETS] __attribute__((aligned(8)));
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
 * for counts, a sixteenth for the response time. */
static __always_inline void demand_band(__u32 slot, const struct tracked_cfg *cfg, __u32 metric, __u64 value,
					__u64 now)
{
	if (metric >= PROBE_MAX_METRICS || !(cfg->flags & (PROBE_HAS_UPPER(metric) | PROBE_HAS_LOWER(metric))))
		return;
	struct cg_state *st = bpf_map_lookup_elem(&state, &slot);
	if (!st)
		return;
	__u64 upper = cfg->bands[metric].upper;
	__u64 hyst = metric == PROBE_METRIC_RESPONSE_P95 ? upper / 16 : (upper >= 20 ? upper / 10 : 1);
	check_band(cfg->cgroup_id, st, cfg, metric, value, hyst, 0, now);
}

static __always_inline void check_inflight(struct demand_state *d, __u32 slot, const struct tracked_cfg *cfg,
					   __u64 now)
{
	if (!(cfg->flags & (PROBE_HAS_UPPER(PROBE_METRIC_INFLIGHT) | PROBE_HAS_LOWER(PROBE_METRIC_INFLIGHT))))
		return;
	__s64 n = READ_ONCE(d->inflight);
	demand_band(slot, cfg, PROBE_METRIC_INFLIGHT, n > 0 ? n : 0, now);
}

/* Connection state changes (from on_inet_sock_set_state): listeners come
 * and go, accepted connections get their storage, and a connection ending
 * with a request open abandons it. */
static __always_inline void demand_on_state(struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_LISTEN || (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)) {
		if (sk->sk_protocol != IPPROTO_TCP)
			return;
		__u64 cgid = sk->sk_cgrp_data.cgroup->kn->id;
		__u32 *slot = bpf_map_lookup_elem(&slots, &cgid);
		if (!slot)
			return;
		if (newstate == TCP_LISTEN) {
			__u64 key = (__u64)sk;
			struct listener l = { .cgroup_id = cgid, .slot = *slot, .last = 0 };
			bpf_map_update_elem(&listeners, &key, &l, BPF_NOEXIST);
			return;
		}
		struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (c) {
			c->cgroup_id = cgid;
			c->slot = *slot;
			c->open = 0;
		}
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
	struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, 0);
	if (!c || !c->open)
		return;
	c->open = 0;
	__u32 slot = c->slot;
	struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
	struct tracked_cfg *cfg = slot_cfg(slot, c->cgroup_id);
	if (!d || !cfg)
		return;
	__sync_fetch_and_sub(&d->inflight, 1);
	__sync_fetch_and_add(&d->abandoned, 1);
	check_inflight(d, slot, cfg, bpf_ktime_get_ns());
}

/* A segment received on an established socket (softirq, or the socket's
 * backlog at release_sock): with payload and no request open, a request
 * arrives. `skb->data` points at the TCP header here. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(on_tcp_probe, struct sock *sk, struct sk_buff *skb)
{
	struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, 0);
	if (!c || c->open)
		return 0;
	__u8 doff = 0;
	unsigned char *th = skb->data;
	if (bpf_probe_read_kernel(&doff, 1, th + 12))
		return 0;
	if (skb->len <= (__u32)(doff >> 4) * 4)
		return 0; /* a bare ACK (or FIN) */
	__u32 slot = c->slot;
	struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
	struct tracked_cfg *cfg = slot_cfg(slot, c->cgroup_id);
	if (!d || !cfg)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	c->start_ns = now;
	c->open = 1;
	__sync_fetch_and_add(&d->inflight, 1);
	__sync_fetch_and_add(&d->arrivals, 1);
	check_inflight(d, slot, cfg, now);
	return 0;
}

/* The replica sends (process context, before the first byte is queued):
 * the open request, if any, is answered. */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(on_tcp_sendmsg, struct sock *sk)
{
	struct conn_demand *c = bpf_sk_storage_get(&conn_demand, sk, 0, 0);
	if (!c || !c->open)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 took = now - c->start_ns;
	c->open = 0;
	__u32 slot = c->slot;
	struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
	struct tracked_cfg *cfg = slot_cfg(slot, c->cgroup_id);
	if (!d || !cfg)
		return 0;
	__u32 b = bucket_of(took);
	if (b < DEMAND_BUCKETS)
		__sync_fetch_and_add(&d->hist[b], 1);
	__sync_fetch_and_add(&d->in_window, 1);
	__sync_fetch_and_sub(&d->inflight, 1);
	__sync_fetch_and_add(&d->answered, 1);
	check_inflight(d, slot, cfg, now);
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
 * queue (read just before by demand_poll_listeners), those held back, and
 * every `sample_ns` the samples. */
static __always_inline void demand_close(__u32 slot, __u64 cgid, const struct tracked_cfg *cfg, __u64 now)
{
	struct demand_state *d = bpf_map_lookup_elem(&demand, &slot);
	if (!d)
		return;
	__s64 queue = READ_ONCE(d->queue), inflight = READ_ONCE(d->inflight);
	__u64 q = queue > 0 ? queue : 0, in = inflight > 0 ? inflight : 0;
	demand_band(slot, cfg, PROBE_METRIC_QUEUE, q, now);
	check_inflight(d, slot, cfg, now);
	if (!d->last_sample_ns) {
		d->last_sample_ns = now;
		d->arrivals_sampled = READ_ONCE(d->arrivals);
		return;
	}
	int sample = now - d->last_sample_ns >= sample_ns;
	__u64 p[3] = {};
	__u64 n = 0;
	if (sample)
		n = demand_percentiles(d, 1, p);
	else if ((cfg->flags & (PROBE_HAS_UPPER(PROBE_METRIC_RESPONSE_P95) | PROBE_HAS_LOWER(PROBE_METRIC_RESPONSE_P95))) &&
		 READ_ONCE(d->in_window))
		n = demand_percentiles(d, 0, p);
	if (n)
		demand_band(slot, cfg, PROBE_METRIC_RESPONSE_P95, p[1], now);
	if (!sample)
		return;
	__u64 elapsed = now - d->last_sample_ns;
	__u64 arrivals = READ_ONCE(d->arrivals);
	__u64 rate = (arrivals - d->arrivals_sampled) * 1000000000000ULL / elapsed;
	d->arrivals_sampled = arrivals;
	d->last_sample_ns = now;
	__sync_fetch_and_sub(&d->in_window, n);
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
