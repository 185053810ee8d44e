/* The scope filters as hand-assembled cgroup-BPF programs (scope.h).
 *
 * CONNECT/SENDMSG programs see a struct bpf_sock_addr: the destination in
 * user_ip4 / user_ip6[4] and user_port, all in network order.  They return
 * 1 to let the call through and 0 to refuse it (the caller gets EPERM).
 * Registers: r6 the context, w2 the IPv4 address (host order), w3 the port
 * (host order), w7..w9 the rest of an IPv6 address, w4 scratch.
 *
 * UDP replies: passt answers a host-side peer that wrote to a forwarded UDP
 * port (or to any of its sockets) with sendmsg to that peer, which may well
 * be on loopback or the LAN.  The RECVMSG programs record every peer passt
 * received a datagram from in an LRU hash map (key: the address as IPv6,
 * IPv4 mapped, and the port, as in the context); a destination that would
 * be refused is let through for UDP when it is in that map. */
#include "sandbox/scope.h"

#include <errno.h>
#include <linux/bpf.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- a tiny assembler --------------------------------------------------------- */

enum { L_ALLOW = -1, L_DENY = -2, L_CHECK4 = -3, L_REFUSE = -4 };

struct as {
	struct bpf_insn *v;
	size_t n;
	bool overflow;
	/* jumps to labels, patched by as_finish */
	struct {
		size_t at;
		int label;
	} fix[SCOPE_MAX_INSNS];
	size_t nfix;
	long label_at[5]; /* indexed by -label */
};

static void emit(struct as *a, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
	if (a->n >= SCOPE_MAX_INSNS) {
		a->overflow = true;
		return;
	}
	a->v[a->n++] = (struct bpf_insn){
		.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

/* A jump whose target is a label (patched later). */
static void emit_jl(struct as *a, uint8_t code, uint8_t dst, int32_t imm, int label)
{
	if (a->nfix < SCOPE_MAX_INSNS && a->n < SCOPE_MAX_INSNS) {
		a->fix[a->nfix].at = a->n;
		a->fix[a->nfix++].label = label;
	}
	emit(a, code, dst, 0, 0, imm);
}

static void label(struct as *a, int l)
{
	a->label_at[-l] = (long)a->n;
}

static size_t as_finish(struct as *a)
{
	for (size_t i = 0; i < a->nfix; i++) {
		long to = a->label_at[-a->fix[i].label];
		a->v[a->fix[i].at].off = (int16_t)(to - (long)a->fix[i].at - 1);
	}
	return a->overflow ? 0 : a->n;
}

#define LDX_W(dst, off)	     emit(a, BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_6, off, 0)
#define BE(dst, bits)	     emit(a, BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits)
#define MOV32(dst, src)	     emit(a, BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
#define AND32(dst, imm)	     emit(a, BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, (int32_t)(imm))
#define JNE32(dst, imm, o)   emit(a, BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, o, (int32_t)(imm))
#define JEQ32_L(dst, imm, l) emit_jl(a, BPF_JMP32 | BPF_JEQ | BPF_K, dst, (int32_t)(imm), l)
#define JA_L(l)		     emit_jl(a, BPF_JMP | BPF_JA, 0, 0, l)

static uint32_t be32_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Refused IPv4 networks (host order). */
static const struct {
	uint32_t net, mask;
} refused4[] = {
	{0x00000000, 0xff000000}, /* 0/8 "this network", unspecified */
	{0x0a000000, 0xff000000}, /* 10/8 */
	{0x64400000, 0xffc00000}, /* 100.64/10 CGNAT */
	{0x7f000000, 0xff000000}, /* 127/8 loopback */
	{0xa9fe0000, 0xffff0000}, /* 169.254/16 link-local */
	{0xac100000, 0xfff00000}, /* 172.16/12 */
	{0xc0a80000, 0xffff0000}, /* 192.168/16 */
	{0xe0000000, 0xe0000000}, /* 224/4 multicast, 240/4 reserved and broadcast */
};

/* Refused IPv6 networks by their first 32 bits (host order). */
static const struct {
	uint32_t net, mask;
} refused6[] = {
	{0xfc000000, 0xfe000000}, /* fc00::/7 unique local */
	{0xfe800000, 0xffc00000}, /* fe80::/10 link-local */
	{0xfec00000, 0xffc00000}, /* fec0::/10 site-local */
	{0xff000000, 0xff000000}, /* ff00::/8 multicast */
};

bool scope_in_refused_range(const struct scope_addr *a)
{
	if (a->family == AF_INET) {
		uint32_t v = be32_at(a->a);
		for (size_t i = 0; i < sizeof(refused4) / sizeof(refused4[0]); i++)
			if ((v & refused4[i].mask) == refused4[i].net)
				return true;
		return false;
	}
	uint32_t w = be32_at(a->a);
	for (size_t i = 0; i < sizeof(refused6) / sizeof(refused6[0]); i++)
		if ((w & refused6[i].mask) == refused6[i].net)
			return true;
	return false;
}

/* w2 = IPv4 address, w3 = port: the allow list, then the refused networks. */
static void check4(struct as *a, const struct scope_rules *r)
{
	for (size_t i = 0; i < r->nns; i++) {
		if (r->ns[i].family != AF_INET)
			continue;
		JNE32(BPF_REG_2, be32_at(r->ns[i].a), 2);
		JNE32(BPF_REG_3, 53, 1);
		JA_L(L_ALLOW);
	}
	if (r->nlo_ports) {
		JNE32(BPF_REG_2, 0x7f000001, (int16_t)r->nlo_ports);
		for (size_t i = 0; i < r->nlo_ports; i++)
			JEQ32_L(BPF_REG_3, r->lo_ports[i], L_ALLOW);
	}
	for (size_t i = 0; i < r->nhost; i++)
		if (r->host[i].family == AF_INET)
			JEQ32_L(BPF_REG_2, be32_at(r->host[i].a), L_DENY);
	for (size_t i = 0; i < sizeof(refused4) / sizeof(refused4[0]); i++) {
		MOV32(BPF_REG_4, BPF_REG_2);
		AND32(BPF_REG_4, refused4[i].mask);
		JEQ32_L(BPF_REG_4, refused4[i].net, L_DENY);
	}
	JA_L(L_ALLOW);
}

#define ST_W(off, imm)	emit(a, BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, off, (int32_t)(imm))
#define STX_W(off, src) emit(a, BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, src, off, 0)

/* The peer's key at r10-24: 16 address bytes (IPv4 as ::ffff:a.b.c.d) and the
 * port word, all as the context holds them (network order). */
static void peer_key(struct as *a, bool v6)
{
	if (v6) {
		for (int k = 0; k < 4; k++) {
			LDX_W(BPF_REG_1,
			      (int16_t)(offsetof(struct bpf_sock_addr, user_ip6) + 4 * k));
			STX_W((int16_t)(-24 + 4 * k), BPF_REG_1);
		}
	} else {
		ST_W(-24, 0);
		ST_W(-20, 0);
		ST_W(-16, htonl(0xffff));
		LDX_W(BPF_REG_1, offsetof(struct bpf_sock_addr, user_ip4));
		STX_W(-12, BPF_REG_1);
	}
	LDX_W(BPF_REG_1, offsetof(struct bpf_sock_addr, user_port));
	STX_W(-8, BPF_REG_1);
}

/* r1 = the peer map; r2 = &key */
static void map_key_args(struct as *a, int map_fd)
{
	emit(a, BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map_fd);
	emit(a, 0, 0, 0, 0, 0);
	emit(a, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
	emit(a, BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -24);
}

static void prologue(struct as *a)
{
	emit(a, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0);
	LDX_W(BPF_REG_3, offsetof(struct bpf_sock_addr, user_port));
	BE(BPF_REG_3, 16);
}

/* mode: 0 connect, 1 sendmsg, 2 no peer exception */
static void epilogue(struct as *a, const struct scope_rules *r, bool v6, int mode)
{
	label(a, L_DENY);
	if (mode != 2 && r->peer_map > 0) {
		if (mode == 0) { /* connect: only UDP sockets answer peers */
			LDX_W(BPF_REG_1, offsetof(struct bpf_sock_addr, type));
			emit_jl(a, BPF_JMP32 | BPF_JNE | BPF_K, BPF_REG_1, SOCK_DGRAM, L_REFUSE);
		}
		peer_key(a, v6);
		map_key_args(a, r->peer_map);
		emit(a, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
		emit_jl(a, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, L_ALLOW);
	}
	label(a, L_REFUSE);
	emit(a, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
	emit(a, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	label(a, L_ALLOW);
	emit(a, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
	emit(a, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

static void prog4(struct as *a, const struct scope_rules *r, int mode)
{
	prologue(a);
	LDX_W(BPF_REG_2, offsetof(struct bpf_sock_addr, user_ip4));
	BE(BPF_REG_2, 32);
	check4(a, r);
	epilogue(a, r, false, mode);
}

/* RECVMSG: remember the peer, never refuse. */
static void prog_recv(struct as *a, const struct scope_rules *r, bool v6)
{
	emit(a, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0);
	if (r->peer_map > 0) {
		peer_key(a, v6);
		ST_W(-28, 1);
		map_key_args(a, r->peer_map);
		emit(a, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_10, 0, 0);
		emit(a, BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, -28);
		emit(a, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, BPF_ANY);
		emit(a, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_update_elem);
	}
	emit(a, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
	emit(a, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

static void prog6(struct as *a, const struct scope_rules *r, int mode)
{
	static const uint8_t w[4] = {BPF_REG_2, BPF_REG_7, BPF_REG_8, BPF_REG_9};
	prologue(a);
	for (int i = 0; i < 4; i++) {
		LDX_W(w[i], (int16_t)(offsetof(struct bpf_sock_addr, user_ip6) + 4 * i));
		BE(w[i], 32);
	}
	for (size_t i = 0; i < r->nns; i++) {
		if (r->ns[i].family != AF_INET6)
			continue;
		for (int k = 0; k < 4; k++)
			JNE32(w[k], be32_at(r->ns[i].a + 4 * k), (int16_t)(5 - k));
		JNE32(BPF_REG_3, 53, 1);
		JA_L(L_ALLOW);
	}
	for (size_t i = 0; i < r->nhost; i++) {
		if (r->host[i].family != AF_INET6)
			continue;
		for (int k = 0; k < 3; k++)
			JNE32(w[k], be32_at(r->host[i].a + 4 * k), (int16_t)(3 - k));
		JEQ32_L(w[3], be32_at(r->host[i].a + 12), L_DENY);
	}
	/* ::/96 (unspecified, ::1, IPv4-compatible) refused; ::ffff:0:0/96 is IPv4. */
	JNE32(BPF_REG_2, 0, 5);
	JNE32(BPF_REG_7, 0, 4);
	JEQ32_L(BPF_REG_8, 0, L_DENY);
	JNE32(BPF_REG_8, 0xffff, 2);
	MOV32(BPF_REG_2, BPF_REG_9);
	JA_L(L_CHECK4);
	/* NAT64 64:ff9b::/96 reaches the IPv4 address in its last word. */
	JNE32(BPF_REG_2, 0x0064ff9b, 4);
	JNE32(BPF_REG_7, 0, 3);
	JNE32(BPF_REG_8, 0, 2);
	MOV32(BPF_REG_2, BPF_REG_9);
	JA_L(L_CHECK4);
	for (size_t i = 0; i < sizeof(refused6) / sizeof(refused6[0]); i++) {
		MOV32(BPF_REG_4, BPF_REG_2);
		AND32(BPF_REG_4, refused6[i].mask);
		JEQ32_L(BPF_REG_4, refused6[i].net, L_DENY);
	}
	JA_L(L_ALLOW);
	label(a, L_CHECK4);
	check4(a, r);
	epilogue(a, r, true, mode);
}

/* CGROUP_SOCK at socket creation: no ICMP sockets (passt's ping forwarding
 * would otherwise reach any address). */
static void prog_sock(struct as *a)
{
	emit(a, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1,
	     offsetof(struct bpf_sock, protocol), 0);
	JEQ32_L(BPF_REG_2, IPPROTO_ICMP, L_DENY);
	JEQ32_L(BPF_REG_2, IPPROTO_ICMPV6, L_DENY);
	JA_L(L_ALLOW);
	epilogue(a, NULL, false, 2);
}

size_t scope_prog_build(const struct scope_rules *r, enum scope_hook h, void *out)
{
	static __thread struct as a_;
	struct as *a = &a_;
	memset(a, 0, sizeof(*a));
	a->v = out;
	switch (h) {
	case SCOPE_CONNECT4:
	case SCOPE_SENDMSG4:
		prog4(a, r, h == SCOPE_SENDMSG4);
		break;
	case SCOPE_CONNECT6:
	case SCOPE_SENDMSG6:
		prog6(a, r, h == SCOPE_SENDMSG6);
		break;
	case SCOPE_RECVMSG4:
	case SCOPE_RECVMSG6:
		prog_recv(a, r, h == SCOPE_RECVMSG6);
		break;
	case SCOPE_SOCK_CREATE:
		prog_sock(a);
		break;
	default:
		return 0;
	}
	return as_finish(a);
}

/* ---- loading ------------------------------------------------------------------ */

static const struct {
	enum bpf_prog_type type;
	enum bpf_attach_type attach;
} hooks[SCOPE_NHOOKS] = {
	[SCOPE_CONNECT4] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT},
	[SCOPE_CONNECT6] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT},
	[SCOPE_SENDMSG4] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG},
	[SCOPE_SENDMSG6] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_SENDMSG},
	[SCOPE_RECVMSG4] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_RECVMSG},
	[SCOPE_RECVMSG6] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_RECVMSG},
	[SCOPE_SOCK_CREATE] = {BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE},
};

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

int scope_prog_load(const struct scope_rules *r, enum scope_hook h, struct msb_err *err)
{
	static __thread struct bpf_insn insns[SCOPE_MAX_INSNS];
	static __thread char log[4096];
	size_t n = scope_prog_build(r, h, insns);
	if (n == 0)
		return msb_err_set(
			err, MSB_EK_INTERNAL, 0,
			"the scope filter has too many rules (%zu name servers, %zu ports)", r->nns,
			r->nlo_ports);
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = hooks[h].type;
	attr.expected_attach_type = hooks[h].attach;
	attr.insns = (uint64_t)(uintptr_t)insns;
	attr.insn_cnt = (uint32_t)n;
	attr.license = (uint64_t)(uintptr_t) "GPL";
	log[0] = '\0';
	attr.log_buf = (uint64_t)(uintptr_t)log;
	attr.log_size = sizeof(log);
	attr.log_level = 1;
	int fd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
	if (fd < 0 && errno == ENOSPC) { /* log too small: load again without it */
		attr.log_buf = 0;
		attr.log_size = 0;
		attr.log_level = 0;
		fd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
	}
	if (fd < 0) {
		int e = errno;
		if (e == EPERM || e == EACCES || !log[0])
			return msb_err_sys(err, "loading the scope filter (BPF program %d)",
					   (int)h);
		return msb_err_set(err, MSB_EK_INTERNAL, e,
				   "the kernel refused the scope filter (BPF program %d): %.300s",
				   (int)h, log);
	}
	return fd;
}

int scope_peer_map_create(struct msb_err *err)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_LRU_HASH;
	attr.key_size = 20;
	attr.value_size = 4;
	attr.max_entries = SCOPE_MAX_PEERS;
	int fd = (int)sys_bpf(BPF_MAP_CREATE, &attr);
	if (fd < 0)
		return msb_err_sys(err, "creating the scope filter's UDP peer map");
	return fd;
}

int scope_prog_test_run(int prog_fd, int family, const void *addr, uint16_t port)
{
	struct bpf_sock_addr ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.user_family = (uint32_t)family;
	ctx.family = (uint32_t)family;
	ctx.type = SOCK_STREAM;
	if (family == AF_INET)
		memcpy(&ctx.user_ip4, addr, 4);
	else
		memcpy(ctx.user_ip6, addr, 16);
	ctx.user_port = htons(port);
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.test.prog_fd = (uint32_t)prog_fd;
	attr.test.ctx_in = (uint64_t)(uintptr_t)&ctx;
	attr.test.ctx_size_in = sizeof(ctx);
	attr.test.repeat = 1;
	if (sys_bpf(BPF_PROG_TEST_RUN, &attr) < 0)
		return -1;
	return (int)attr.test.retval;
}

int scope_attach(int cgroup_fd, int prog_fd, enum scope_hook h)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.target_fd = (uint32_t)cgroup_fd;
	attr.attach_bpf_fd = (uint32_t)prog_fd;
	attr.attach_type = hooks[h].attach;
	attr.attach_flags = BPF_F_ALLOW_MULTI;
	return sys_bpf(BPF_PROG_ATTACH, &attr) < 0 ? -1 : 0;
}
