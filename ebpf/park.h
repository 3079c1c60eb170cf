/* The tc park classifier of probe.bpf.c (included at its end): holds a
 * bare SYN to a parked port (`autoscale.zero=remove`). Its maps, `parked`
 * and `park_pushed`, are in state.h (the socket-state program reads
 * `parked` too); count_drop and `events` come from probe.bpf.c.
 */
#ifndef PROBE_PARK_H
#define PROBE_PARK_H

/* The addresses of this host's network namespace (IPv4 as ::ffff:a.b.c.d),
 * kept by userspace (probe/park.rs) while a port is parked. A SYN is held
 * only if it is addressed to one of them (or arrives on `lo`): a parked
 * port is the service's published port on this host, and traffic the
 * host only forwards or bridges (container to container through a bridge
 * and its veths) is none of its business. */
#define PARK_MAX_LOCAL 1024
struct park_addr {
	__u8 addr[16];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PARK_MAX_LOCAL);
	__type(key, struct park_addr);
	__type(value, __u8);
} park_local SEC(".maps");

/* The loopback's ifindex in every network namespace. */
#define LOOPBACK_IFINDEX 1

/* A connection attempt to a parked port: count it, and push one event per
 * port per PROBE_PARK_EVENT_GAP_NS (the attempts of a burst, and their
 * retransmits, need one wake, not one each). */
static __always_inline void held_syn(__u16 port, __u32 mode, __u32 family)
{
	count_drop(PROBE_DROP_PARKED_SYN);
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&park_pushed, &port);
	if (last && now - READ_ONCE(*last) < PROBE_PARK_EVENT_GAP_NS)
		return;
	struct probe_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		/* Not noted as pushed: the retransmit tries again. */
		count_drop(PROBE_DROP_RING);
		return;
	}
	bpf_map_update_elem(&park_pushed, &port, &now, BPF_ANY);
	e->timestamp_ns = now;
	e->cgroup_id = 0;
	e->value = port;
	e->threshold = mode;
	e->metric = PROBE_SIGNAL_PORT_SYN;
	e->kind = PROBE_KIND_UP;
	e->flags = family;
	e->_pad = 0;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

/* tc ingress, attached to every Ethernet-like interface and to `lo` while
 * any port is parked. A bare SYN (SYN without ACK) to a parked port on an
 * address of this host (park_local; anything arriving on `lo` is) is
 * held (dropped: no RST, no ICMP, the client's retransmit comes about a
 * second later) unless the port is in LOOKUP mode and a socket would take
 * it; everything else is handed on with TC_ACT_UNSPEC (the next program of
 * a TCX chain, or the stack). IPv4 with options and IPv6 without extension
 * headers are read; anything else passes. */
SEC("classifier")
int on_tc_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct eth_hdr *eth = data;
	struct bpf_sock_tuple tuple = {};
	struct park_addr dst = {};
	struct tcp_hdr *th;
	__u32 tuple_len, family;

	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC;
	if (eth->proto == bpf_htons(ETH_P_IPV4)) {
		struct ipv4_hdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP)
			return TC_ACT_UNSPEC;
		/* Only the first fragment has the TCP header. */
		if (ip->frag & bpf_htons(0x1fff))
			return TC_ACT_UNSPEC;
		__u32 ihl = (ip->version_ihl & 0x0f) * 4;
		if (ihl < sizeof(*ip))
			return TC_ACT_UNSPEC;
		th = (void *)ip + ihl;
		if ((void *)(th + 1) > end)
			return TC_ACT_UNSPEC;
		tuple.ipv4.saddr = ip->saddr;
		tuple.ipv4.daddr = ip->daddr;
		tuple.ipv4.sport = th->source;
		tuple.ipv4.dport = th->dest;
		tuple_len = sizeof(tuple.ipv4);
		dst.addr[10] = 0xff;
		dst.addr[11] = 0xff;
		__builtin_memcpy(&dst.addr[12], &ip->daddr, 4);
		family = 2; /* AF_INET */
	} else if (eth->proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6_hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_UNSPEC;
		th = (void *)(ip6 + 1);
		if ((void *)(th + 1) > end)
			return TC_ACT_UNSPEC;
		__builtin_memcpy(tuple.ipv6.saddr, ip6->saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, ip6->daddr, 16);
		tuple.ipv6.sport = th->source;
		tuple.ipv6.dport = th->dest;
		tuple_len = sizeof(tuple.ipv6);
		__builtin_memcpy(dst.addr, ip6->daddr, 16);
		family = 10; /* AF_INET6 */
	} else {
		return TC_ACT_UNSPEC;
	}
	if ((th->flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN)
		return TC_ACT_UNSPEC;
	__u16 port = bpf_ntohs(th->dest);
	__u32 *mode = bpf_map_lookup_elem(&parked, &port);
	if (!mode)
		return TC_ACT_UNSPEC;
	/* Forwarded or bridged: not addressed to this host, not ours. */
	if (skb->ifindex != LOOPBACK_IFINDEX && !bpf_map_lookup_elem(&park_local, &dst))
		return TC_ACT_UNSPEC;
	__u32 how = READ_ONCE(*mode);
	if (how == PROBE_PARK_LOOKUP) {
		struct bpf_sock *sk = bpf_sk_lookup_tcp(skb, &tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			bpf_sk_release(sk);
			return TC_ACT_UNSPEC;
		}
	}
	held_syn(port, how, family);
	return TC_ACT_SHOT;
}

#endif
