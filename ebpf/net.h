/* Wire formats the tc classifier reads (ebpf/park.h: on_tc_ingress):
 * Ethernet, IPv4, IPv6 and the first bytes of TCP. Declared by hand, as on
 * the wire (network byte order), without CO-RE: these are packet layouts,
 * not kernel structures, and do not change between kernels.
 */
#ifndef PROBE_NET_H
#define PROBE_NET_H

#include <linux/types.h>

#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6 0x86DD

struct eth_hdr {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
} __attribute__((packed));

struct ipv4_hdr {
	__u8 version_ihl; /* version (4 bits), header length in words (4 bits) */
	__u8 tos;
	__be16 total_len;
	__be16 id;
	__be16 frag;      /* flags (3 bits), fragment offset (13 bits) */
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_hdr {
	__be32 version_class_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct tcp_hdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff;  /* data offset (4 bits), reserved */
	__u8 flags; /* CWR ECE URG ACK PSH RST SYN FIN */
	__be16 window;
	__u16 check;
	__u16 urg_ptr;
};

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* include/uapi/linux/pkt_cls.h: with TCX, UNSPEC hands the packet to the
 * next program (or the stack), SHOT drops it. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2

#endif
