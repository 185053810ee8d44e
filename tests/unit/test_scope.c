/* Scope enforcement without a VM (sandbox/scope.h): the resolv.conf and
 * mountinfo parsers (also hostile input), the BPF programs run with
 * BPF_PROG_TEST_RUN where the kernel can, and a process confined the way
 * passt is: in a network namespace of its own (loopback aliases as
 * targets), refused to loopback and private addresses, let through to a
 * public-looking one and to the name server on port 53.  The BPF tests need
 * root and skip loudly without. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/scope.h"
#include "tests/unit/test.h"

static struct scope_addr v4(const char *s)
{
	struct scope_addr a = {.family = AF_INET};
	inet_pton(AF_INET, s, a.a);
	return a;
}

TEST(resolv_conf_name_servers)
{
	static const char rc[] = "# generated\n"
				 "search example.org\n"
				 "nameserver 127.0.0.53\n"
				 "  nameserver\t10.255.255.53  # the LAN's\n"
				 "nameserver fe80::1%eth0\n"
				 "nameserver ::1;comment\n"
				 "nameserver 127.0.0.53\n" /* duplicate */
				 "nameservers 1.1.1.1\n"
				 "nameserver\n"
				 "nameserver 999.1.1.1\n"
				 "options edns0\n"
				 "nameserver 9.9.9.9";
	struct scope_addr a[SCOPE_MAX_NS];
	size_t n = scope_parse_resolv(rc, sizeof(rc) - 1, a, SCOPE_MAX_NS);
	CHECK_INT(n, ==, 5);
	CHECK(a[0].family == AF_INET && memcmp(a[0].a, v4("127.0.0.53").a, 4) == 0);
	CHECK(a[1].family == AF_INET && memcmp(a[1].a, v4("10.255.255.53").a, 4) == 0);
	CHECK(a[2].family == AF_INET6 && a[2].a[0] == 0xfe && a[2].a[1] == 0x80 && a[2].a[15] == 1);
	CHECK(a[3].family == AF_INET6 && a[3].a[15] == 1 && a[3].a[0] == 0);
	CHECK(a[4].family == AF_INET && a[4].a[0] == 9);
}

TEST(resolv_conf_hostile)
{
	struct scope_addr a[SCOPE_MAX_NS];
	/* more name servers than kept: the first SCOPE_MAX_NS, in order */
	char many[4096];
	size_t len = 0;
	for (int i = 0; i < 40; i++)
		len += (size_t)snprintf(many + len, sizeof(many) - len, "nameserver 192.0.2.%d\n",
					i);
	CHECK_INT(scope_parse_resolv(many, len, a, SCOPE_MAX_NS), ==, SCOPE_MAX_NS);
	CHECK(a[SCOPE_MAX_NS - 1].a[3] == SCOPE_MAX_NS - 1);
	/* embedded NULs, huge tokens, no newline, binary junk */
	static const char junk[] =
		"nameserver 1.2\0.3.4\nnameserver "
		"11111111111111111111111111111111111111111111111111111111111111111"
		"\nnameserver \xff\xfe\x01\n\n\nnameserver %eth0\nnameserver 8.8.8.8%";
	CHECK_INT(scope_parse_resolv(junk, sizeof(junk) - 1, a, SCOPE_MAX_NS), ==, 1);
	CHECK(a[0].a[0] == 8);
	CHECK_INT(scope_parse_resolv("", 0, a, SCOPE_MAX_NS), ==, 0);
	CHECK_INT(scope_parse_resolv("nameserver 1.1.1.1", 18, a, 0), ==, 0);
}

TEST(host_addresses_leave_out_what_the_ranges_refuse)
{
	struct scope_addr a[SCOPE_MAX_HOST];
	bool more = true;
	size_t n = scope_host_addrs(a, SCOPE_MAX_HOST, &more);
	for (size_t i = 0; i < n; i++) {
		CHECK(a[i].family == AF_INET || a[i].family == AF_INET6);
		CHECK(!(a[i].family == AF_INET && a[i].a[0] == 127));
		CHECK(!scope_in_refused_range(&a[i]));
	}
	/* one slot fewer than found: said, never dropped silently */
	if (n > 0) {
		CHECK_INT(scope_host_addrs(a, n - 1, &more), ==, n - 1);
		CHECK(more);
	}
}

TEST(refused_ranges_cover_private_and_link_local_host_addresses)
{
	struct scope_addr v4 = {.family = AF_INET, .a = {172, 17, 0, 1}};
	CHECK(scope_in_refused_range(&v4));
	v4.a[0] = 100, v4.a[1] = 64;
	CHECK(scope_in_refused_range(&v4));
	v4.a[0] = 192, v4.a[1] = 0, v4.a[2] = 2, v4.a[3] = 2; /* documentation range: public */
	CHECK(!scope_in_refused_range(&v4));
	struct scope_addr v6 = {.family = AF_INET6, .a = {0xfe, 0x80}};
	CHECK(scope_in_refused_range(&v6));
	v6.a[0] = 0xfd, v6.a[1] = 0x12;
	CHECK(scope_in_refused_range(&v6));
	v6.a[0] = 0x20, v6.a[1] = 0x01, v6.a[2] = 0x0d, v6.a[3] = 0xb8;
	CHECK(!scope_in_refused_range(&v6));
}

TEST(mountinfo_finds_cgroup2)
{
	static const char hybrid[] =
		"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
		"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
	char out[256];
	CHECK_INT(scope_cgroup2_from_mountinfo(hybrid, sizeof(hybrid) - 1, out, sizeof(out)), ==,
		  0);
	CHECK_STR(out, "/sys/fs/cgroup/unified");
	static const char esc[] = "1 0 0:1 / /a\\040b rw - cgroup2 none rw";
	CHECK_INT(scope_cgroup2_from_mountinfo(esc, sizeof(esc) - 1, out, sizeof(out)), ==, 0);
	CHECK_STR(out, "/a b");
	CHECK_INT(scope_cgroup2_from_mountinfo(esc, sizeof(esc) - 1, out, 4), ==, -1);
	static const char none[] =
		"1 0 0:1 / /x rw - cgroup cgroup rw\n- cgroup2\n\\000 - cgroup2 ";
	CHECK_INT(scope_cgroup2_from_mountinfo(none, sizeof(none) - 1, out, sizeof(out)), ==, -1);
	static const char nul[] = "1 0 0:1 / /a\\000 rw - cgroup2 none rw";
	CHECK_INT(scope_cgroup2_from_mountinfo(nul, sizeof(nul) - 1, out, sizeof(out)), ==, -1);
}

TEST(programs_fit_with_the_most_rules)
{
	struct scope_rules r = {0};
	struct msb_err err = {0};
	for (size_t i = 0; i < SCOPE_MAX_NS; i++) {
		r.ns[i] = v4("192.0.2.1");
		r.ns[i].a[3] = (uint8_t)i;
		if (i % 2)
			r.ns[i].family = AF_INET6;
	}
	r.nns = SCOPE_MAX_NS;
	for (size_t i = 0; i < SCOPE_MAX_HOST; i++) {
		r.host[i] = r.ns[i % SCOPE_MAX_NS];
		r.host[i].a[15] = (uint8_t)i;
	}
	r.nhost = SCOPE_MAX_HOST;
	for (int p = 1; p <= SCOPE_MAX_PORTS; p++)
		CHECK_INT(scope_rules_add_port(&r, (uint16_t)p, &err), ==, 0);
	CHECK_INT(scope_rules_add_port(&r, 1, &err), ==, 0); /* duplicate */
	CHECK_INT(scope_rules_add_port(&r, 9999, &err), ==, -1);
	CHECK(strstr(err.msg, "at most"));
	static struct bpf_insn insns[SCOPE_MAX_INSNS];
	for (int h = 0; h < SCOPE_NHOOKS; h++)
		CHECK_INT(scope_prog_build(&r, (enum scope_hook)h, insns), >, 0);
}

static void need_bpf(struct test_ctx *t)
{
	if (geteuid() != 0)
		TEST_SKIP("SKIPPED: not root: the scope filter's BPF tests need root");
}

/* The instructions scope_bpf.c emits, run in user space on a context (the
 * kernel on this machine cannot test-run sock_addr programs); the peer map
 * is `peers` (20-byte keys).  -1 for an instruction or access it does not
 * know, -2 when the program runs off its end. */
struct peers {
	uint8_t key[16][20];
	size_t n;
};

static int interp(const struct bpf_insn *p, size_t n, const void *ctx, size_t ctx_size,
		  struct peers *peers)
{
	uint64_t r[11] = {0};
	uint8_t stack[512] = {0};
	r[10] = (uint64_t)(uintptr_t)(stack + sizeof(stack));
	for (size_t pc = 0; pc < n; pc++) {
		const struct bpf_insn *i = &p[pc];
		uint32_t v;
		uint8_t *m = NULL;
		if (i->code == (BPF_ST | BPF_MEM | BPF_W) ||
		    i->code == (BPF_STX | BPF_MEM | BPF_W)) {
			m = (uint8_t *)(uintptr_t)(r[i->dst_reg] + (uint64_t)(int64_t)i->off);
			if (i->dst_reg != 10 || m < stack || m + 4 > stack + sizeof(stack))
				return -1;
		}
		switch (i->code) {
		case BPF_ALU64 | BPF_MOV | BPF_X:
			r[i->dst_reg] = r[i->src_reg];
			break;
		case BPF_ALU64 | BPF_MOV | BPF_K:
			r[i->dst_reg] = (uint64_t)(int64_t)i->imm;
			break;
		case BPF_ALU64 | BPF_ADD | BPF_K:
			r[i->dst_reg] += (uint64_t)(int64_t)i->imm;
			break;
		case BPF_LDX | BPF_MEM | BPF_W: /* the context (r1/r6) */
			if (i->src_reg == 10 || i->off < 0 || (size_t)i->off + 4 > ctx_size)
				return -1;
			memcpy(&v, (const char *)ctx + i->off, 4);
			r[i->dst_reg] = v;
			break;
		case BPF_ST | BPF_MEM | BPF_W:
			v = (uint32_t)i->imm;
			memcpy(m, &v, 4);
			break;
		case BPF_STX | BPF_MEM | BPF_W:
			v = (uint32_t)r[i->src_reg];
			memcpy(m, &v, 4);
			break;
		case BPF_LD | BPF_DW | BPF_IMM: /* the map */
			r[i->dst_reg] = (uint64_t)(uint32_t)i->imm;
			pc++;
			break;
		case BPF_JMP | BPF_CALL: {
			const uint8_t *key = (const uint8_t *)(uintptr_t)r[2];
			if (!peers || key < stack || key + 20 > stack + sizeof(stack))
				return -1;
			bool found = false;
			for (size_t k = 0; k < peers->n && !found; k++)
				found = memcmp(peers->key[k], key, 20) == 0;
			if (i->imm == BPF_FUNC_map_lookup_elem) {
				r[0] = found;
			} else if (i->imm == BPF_FUNC_map_update_elem) {
				if (!found && peers->n < 16)
					memcpy(peers->key[peers->n++], key, 20);
				r[0] = 0;
			} else {
				return -1;
			}
			break;
		}
		case BPF_ALU | BPF_END | BPF_TO_BE:
			r[i->dst_reg] = i->imm == 16 ? htons((uint16_t)r[i->dst_reg])
						     : htonl((uint32_t)r[i->dst_reg]);
			break;
		case BPF_ALU | BPF_MOV | BPF_X:
			r[i->dst_reg] = (uint32_t)r[i->src_reg];
			break;
		case BPF_ALU | BPF_AND | BPF_K:
			r[i->dst_reg] = (uint32_t)r[i->dst_reg] & (uint32_t)i->imm;
			break;
		case BPF_JMP32 | BPF_JEQ | BPF_K:
			if ((uint32_t)r[i->dst_reg] == (uint32_t)i->imm)
				pc += (size_t)(long)i->off;
			break;
		case BPF_JMP32 | BPF_JNE | BPF_K:
			if ((uint32_t)r[i->dst_reg] != (uint32_t)i->imm)
				pc += (size_t)(long)i->off;
			break;
		case BPF_JMP | BPF_JNE | BPF_K:
			if (r[i->dst_reg] != (uint64_t)(int64_t)i->imm)
				pc += (size_t)(long)i->off;
			break;
		case BPF_JMP | BPF_JA:
			pc += (size_t)(long)i->off;
			break;
		case BPF_JMP | BPF_EXIT:
			return (int)r[0];
		default:
			return -1;
		}
		if (pc + 1 > n)
			return -2;
	}
	return -2;
}

static const struct {
	const char *addr;
	uint16_t port;
	int want;
} cases[] = {
	{"1.1.1.1", 443, 1},
	{"198.51.100.7", 80, 1},
	{"127.0.0.1", 80, 0},
	{"127.0.0.1", 8080, 1},
	{"127.0.0.2", 8080, 0},
	{"10.1.2.3", 80, 0},
	{"10.255.255.53", 53, 1},
	{"10.255.255.53", 54, 0},
	{"10.255.255.54", 53, 0},
	{"172.16.0.1", 1, 0},
	{"172.31.255.255", 1, 0},
	{"172.32.0.1", 1, 1},
	{"172.15.255.255", 1, 1},
	{"192.168.1.1", 1, 0},
	{"192.169.0.1", 1, 1},
	{"169.254.169.254", 80, 0},
	{"100.64.0.1", 1, 0},
	{"100.127.255.255", 1, 0},
	{"100.128.0.1", 1, 1},
	{"0.0.0.0", 80, 0},
	{"0.1.2.3", 80, 0},
	{"224.0.0.1", 1, 0},
	{"239.255.255.250", 1, 0},
	{"255.255.255.255", 1, 0},
	{"11.0.0.1", 1, 1},
	{"9.255.255.255", 1, 1},
	{"::1", 80, 0},
	{"::", 80, 0},
	{"::ffff:127.0.0.1", 80, 0},
	{"::ffff:10.0.0.1", 80, 0},
	{"::ffff:1.1.1.1", 443, 1},
	{"::ffff:127.0.0.1", 8080, 1},
	{"::ffff:10.255.255.53", 53, 1},
	{"::10.0.0.1", 80, 0},
	{"::1.1.1.1", 80, 0},
	{"64:ff9b::a00:1", 80, 0},
	{"64:ff9b::101:101", 80, 1},
	{"fd00::1", 80, 0},
	{"fc00::1", 80, 0},
	{"fd00::53", 53, 1},
	{"fd00::53", 80, 0},
	{"fe80::1", 80, 0},
	{"febf::1", 80, 0},
	{"fec0::1", 80, 0},
	{"ff02::1", 80, 0},
	{"2606:4700::1111", 443, 1},
	{"2001:db8::1", 80, 1},
	{"::ffff:0:1", 80, 0},
};

static struct scope_rules crafted_rules(void)
{
	struct scope_rules r = {.nns = 2};
	struct msb_err err = {0};
	r.ns[0] = v4("10.255.255.53");
	r.ns[1].family = AF_INET6;
	inet_pton(AF_INET6, "fd00::53", r.ns[1].a);
	scope_rules_add_port(&r, 8080, &err);
	r.host[0] = v4("192.0.2.2"); /* the host's own, outside every refused range */
	r.host[1].family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::2", r.host[1].a);
	r.nhost = 2;
	return r;
}

static void fill_ctx(struct bpf_sock_addr *ctx, int family, const uint8_t *b, uint16_t port)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->user_family = ctx->family = (uint32_t)family;
	if (family == AF_INET)
		memcpy(&ctx->user_ip4, b, 4);
	else
		memcpy(ctx->user_ip6, b, 16);
	ctx->user_port = htons(port);
}

TEST(programs_decide_on_crafted_contexts)
{
	struct scope_rules r = crafted_rules();
	static struct bpf_insn p4[SCOPE_MAX_INSNS], p6[SCOPE_MAX_INSNS], ps[SCOPE_MAX_INSNS];
	size_t n4 = scope_prog_build(&r, SCOPE_SENDMSG4, p4);
	size_t n6 = scope_prog_build(&r, SCOPE_CONNECT6, p6);
	size_t ns = scope_prog_build(&r, SCOPE_SOCK_CREATE, ps);
	CHECK(n4 && n6 && ns);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t b[16];
		bool six = strchr(cases[i].addr, ':');
		CHECK(inet_pton(six ? AF_INET6 : AF_INET, cases[i].addr, b) == 1);
		struct bpf_sock_addr ctx;
		fill_ctx(&ctx, six ? AF_INET6 : AF_INET, b, cases[i].port);
		int got = interp(six ? p6 : p4, six ? n6 : n4, &ctx, sizeof(ctx), NULL);
		if (got != cases[i].want)
			TEST_FAIL("%s port %u: got %d, want %d", cases[i].addr, cases[i].port, got,
				  cases[i].want);
	}
	static const struct {
		unsigned proto;
		int want;
	} socks[] = {{IPPROTO_TCP, 1}, {IPPROTO_UDP, 1}, {IPPROTO_ICMP, 0}, {IPPROTO_ICMPV6, 0}};
	for (size_t i = 0; i < 4; i++) {
		struct bpf_sock sk = {.family = AF_INET, .protocol = socks[i].proto};
		CHECK_INT(interp(ps, ns, &sk, sizeof(sk), NULL), ==, socks[i].want);
	}
}

/* Run hook h of rules r (built here) on addr:port with socket type `type`. */
static int run_hook(const struct scope_rules *r, enum scope_hook h, const char *addr, uint16_t port,
		    unsigned type, struct peers *peers)
{
	static struct bpf_insn p[SCOPE_MAX_INSNS];
	size_t n = scope_prog_build(r, h, p);
	uint8_t b[16];
	bool six = strchr(addr, ':');
	if (!n || inet_pton(six ? AF_INET6 : AF_INET, addr, b) != 1)
		return -3;
	struct bpf_sock_addr ctx;
	fill_ctx(&ctx, six ? AF_INET6 : AF_INET, b, port);
	ctx.type = type;
	return interp(p, n, &ctx, sizeof(ctx), peers);
}

TEST(udp_peers_that_wrote_first_may_be_answered)
{
	struct scope_rules r = crafted_rules();
	r.peer_map = 7; /* any descriptor: the interpreter keeps the map */
	struct peers peers = {0};
	/* before the peer wrote: refused, for UDP too */
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG4, "10.1.2.3", 5353, SOCK_DGRAM, &peers), ==, 0);
	/* it writes (received on an IPv6 socket: the mapped form) */
	CHECK_INT(run_hook(&r, SCOPE_RECVMSG6, "::ffff:10.1.2.3", 5353, SOCK_DGRAM, &peers), ==, 1);
	CHECK_INT(peers.n, ==, 1);
	CHECK_INT(run_hook(&r, SCOPE_RECVMSG4, "10.1.2.3", 5353, SOCK_DGRAM, &peers), ==, 1);
	CHECK_INT(peers.n, ==, 1); /* the same key either way */
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG4, "10.1.2.3", 5353, SOCK_DGRAM, &peers), ==, 1);
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG6, "::ffff:10.1.2.3", 5353, SOCK_DGRAM, &peers), ==, 1);
	CHECK_INT(run_hook(&r, SCOPE_CONNECT4, "10.1.2.3", 5353, SOCK_DGRAM, &peers), ==, 1);
	/* not TCP, not another port, not another address */
	CHECK_INT(run_hook(&r, SCOPE_CONNECT4, "10.1.2.3", 5353, SOCK_STREAM, &peers), ==, 0);
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG4, "10.1.2.3", 5354, SOCK_DGRAM, &peers), ==, 0);
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG4, "10.1.2.4", 5353, SOCK_DGRAM, &peers), ==, 0);
	/* an IPv6 peer */
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG6, "fd00::9", 53, SOCK_DGRAM, &peers), ==, 0);
	CHECK_INT(run_hook(&r, SCOPE_RECVMSG6, "fd00::9", 53, SOCK_DGRAM, &peers), ==, 1);
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG6, "fd00::9", 53, SOCK_DGRAM, &peers), ==, 1);
	/* public destinations never consult the map */
	CHECK_INT(run_hook(&r, SCOPE_SENDMSG4, "1.1.1.1", 53, SOCK_DGRAM, NULL), ==, 1);
}

TEST(kernel_loads_and_runs_the_programs)
{
	need_bpf(t);
	struct scope_rules r = crafted_rules();
	struct msb_err err = {0};
	int fds[SCOPE_NHOOKS];
	r.peer_map = scope_peer_map_create(&err);
	if (r.peer_map < 0 && err.errnum == EPERM)
		TEST_SKIP("SKIPPED: BPF refused (%s)", err.msg);
	CHECK(r.peer_map >= 0);
	for (int h = 0; h < SCOPE_NHOOKS; h++) {
		fds[h] = scope_prog_load(&r, (enum scope_hook)h, &err);
		if (fds[h] < 0 && err.errnum == EPERM)
			TEST_SKIP("SKIPPED: BPF refused (%s)", err.msg);
		if (fds[h] < 0)
			TEST_FAIL("hook %d: %s", h, err.msg);
	}
	uint8_t a[4] = {1, 1, 1, 1};
	bool can_run = scope_prog_test_run(fds[SCOPE_CONNECT4], AF_INET, a, 443) >= 0;
	int e = errno;
	for (size_t i = 0; can_run && i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t b[16];
		bool six = strchr(cases[i].addr, ':');
		inet_pton(six ? AF_INET6 : AF_INET, cases[i].addr, b);
		int got = scope_prog_test_run(fds[six ? SCOPE_CONNECT6 : SCOPE_CONNECT4],
					      six ? AF_INET6 : AF_INET, b, cases[i].port);
		if (got != cases[i].want)
			TEST_FAIL("kernel: %s port %u: got %d, want %d", cases[i].addr,
				  cases[i].port, got, cases[i].want);
	}
	for (int h = 0; h < SCOPE_NHOOKS; h++)
		close(fds[h]);
	close(r.peer_map);
	if (!can_run)
		printf("# kernel_loads_and_runs_the_programs: loaded (verifier passed); this "
		       "kernel "
		       "cannot test-run sock_addr programs (%s): the user-space run and the "
		       "confined process cover their decisions\n",
		       strerror(e));
}

/* ---- a confined process in a network namespace of its own -------------------- */

#define PORT	  40123
#define LO_PORT	  40124
#define NS_ADDR	  "10.1.2.53"
#define PRIV_ADDR "10.1.2.3"
#define PUB_ADDR  "198.51.100.7"

enum {
	P_LO,
	P_PRIV,
	P_PUB,
	P_NS,
	P_UPRIV,
	P_UPUB,
	P_UNS,
	P_UNS54,
	P_MAPPED,
	P_LO6,
	P_ICMP,
	P_LOPORT,
	P_UREPLY,
	P_UNOTPEER,
	NP
};

static int add_alias(int s, const char *name, const char *addr)
{
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin->sin_addr);
	return ioctl(s, SIOCSIFADDR, &ifr);
}

static int listen_on(int family, const char *addr, uint16_t port)
{
	int s = socket(family, SOCK_STREAM, 0);
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		inet_pton(AF_INET, addr, &in->sin_addr);
		sl = sizeof(*in);
	} else {
		struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
		in->sin6_family = AF_INET6;
		in->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &in->sin6_addr);
		sl = sizeof(*in);
		int one = 1;
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (s < 0 || bind(s, (struct sockaddr *)&ss, sl) < 0 || listen(s, 64) < 0)
		return -1;
	return s;
}

/* 0 when the call went through, else its errno. */
static int probe(int family, int type, const char *addr, uint16_t port)
{
	int s = socket(family, type | SOCK_CLOEXEC, 0);
	if (s < 0)
		return errno;
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		inet_pton(AF_INET, addr, &in->sin_addr);
		sl = sizeof(*in);
	} else {
		struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
		in->sin6_family = AF_INET6;
		in->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &in->sin6_addr);
		sl = sizeof(*in);
	}
	int rc = type == SOCK_DGRAM ? (int)sendto(s, "x", 1, 0, (struct sockaddr *)&ss, sl)
				    : connect(s, (struct sockaddr *)&ss, sl);
	int e = rc < 0 ? errno : 0;
	close(s);
	return e;
}

/* A UDP socket of "the host" (made before the confinement, so unfiltered)
 * on PRIV_ADDR:PEER_PORT that writes first to a confined socket. */
#define PEER_PORT 40200
static int peer_fd = -1;

static struct sockaddr_in sin_of(const char *addr, uint16_t port)
{
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, addr, &in.sin_addr);
	return in;
}

/* The confined side receives from the peer, then answers it (res[P_UREPLY])
 * and writes to the peer's next port, which never wrote (res[P_UNOTPEER]). */
static void udp_reply(unsigned char *res)
{
	res[P_UREPLY] = res[P_UNOTPEER] = EIO;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in me = sin_of("0.0.0.0", PEER_PORT + 1);
	struct sockaddr_in to_me = sin_of(PRIV_ADDR, PEER_PORT + 1);
	struct timeval tv = {2, 0};
	if (s < 0 || bind(s, (struct sockaddr *)&me, sizeof(me)) < 0 ||
	    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    sendto(peer_fd, "hi", 2, 0, (struct sockaddr *)&to_me, sizeof(to_me)) != 2)
		goto out;
	char buf[8];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	if (recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl) != 2)
		goto out;
	res[P_UREPLY] =
		(unsigned char)(sendto(s, "re", 2, 0, (struct sockaddr *)&from, fl) < 0 ? errno
											: 0);
	struct sockaddr_in other = sin_of(PRIV_ADDR, PEER_PORT + 2);
	res[P_UNOTPEER] =
		(unsigned char)(sendto(s, "x", 1, 0, (struct sockaddr *)&other, sizeof(other)) < 0
					? errno
					: 0);
out:
	if (s >= 0)
		close(s);
}

static void run_probes(unsigned char *res)
{
	udp_reply(res);
	res[P_LO] = (unsigned char)probe(AF_INET, SOCK_STREAM, "127.0.0.1", PORT);
	res[P_PRIV] = (unsigned char)probe(AF_INET, SOCK_STREAM, PRIV_ADDR, PORT);
	res[P_PUB] = (unsigned char)probe(AF_INET, SOCK_STREAM, PUB_ADDR, PORT);
	res[P_NS] = (unsigned char)probe(AF_INET, SOCK_STREAM, NS_ADDR, 53);
	res[P_UPRIV] = (unsigned char)probe(AF_INET, SOCK_DGRAM, PRIV_ADDR, PORT);
	res[P_UPUB] = (unsigned char)probe(AF_INET, SOCK_DGRAM, PUB_ADDR, PORT);
	res[P_UNS] = (unsigned char)probe(AF_INET, SOCK_DGRAM, NS_ADDR, 53);
	res[P_UNS54] = (unsigned char)probe(AF_INET, SOCK_DGRAM, NS_ADDR, 54);
	res[P_MAPPED] = (unsigned char)probe(AF_INET6, SOCK_STREAM, "::ffff:" PRIV_ADDR, PORT);
	res[P_LO6] = (unsigned char)probe(AF_INET6, SOCK_STREAM, "::1", PORT);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP);
	res[P_ICMP] = (unsigned char)(s < 0 ? errno : 0);
	if (s >= 0)
		close(s);
	res[P_LOPORT] = (unsigned char)probe(AF_INET, SOCK_STREAM, "127.0.0.1", LO_PORT);
}

static void child(int rfd, int wfd)
{
	unsigned char res[NP];
	if (unshare(CLONE_NEWNET) < 0)
		_exit(10);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		_exit(11);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0 || add_alias(s, "lo:1", PRIV_ADDR) < 0 ||
	    add_alias(s, "lo:2", PUB_ADDR) < 0 || add_alias(s, "lo:3", NS_ADDR) < 0)
		_exit(12);
	int fd = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY);
	if (fd < 0 || write(fd, "0 0", 3) != 3)
		_exit(13);
	close(fd);
	if (listen_on(AF_INET, "127.0.0.1", PORT) < 0 || listen_on(AF_INET, PRIV_ADDR, PORT) < 0 ||
	    listen_on(AF_INET, PUB_ADDR, PORT) < 0 || listen_on(AF_INET, NS_ADDR, 53) < 0 ||
	    listen_on(AF_INET6, "::1", PORT) < 0 || listen_on(AF_INET, "127.0.0.1", LO_PORT) < 0)
		_exit(14);
	struct sockaddr_in peer = sin_of(PRIV_ADDR, PEER_PORT);
	peer_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (peer_fd < 0 || bind(peer_fd, (struct sockaddr *)&peer, sizeof(peer)) < 0)
		_exit(18);
	run_probes(res); /* before: everything answers */
	if (write(wfd, res, NP) != NP)
		_exit(15);
	char go;
	if (read(rfd, &go, 1) != 1)
		_exit(16);
	run_probes(res); /* confined */
	if (write(wfd, res, NP) != NP)
		_exit(17);
	_exit(0);
}

/* Run the probes in a child before and after scope_confine(rules):
 * after[] gets the confined results.  Skips when the kernel refuses. */
static void confined(struct test_ctx *t, const struct scope_rules *r, unsigned char *after)
{
	int to[2], from[2];
	CHECK(pipe(to) == 0 && pipe(from) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(to[1]);
		close(from[0]);
		child(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	unsigned char before[NP];
	ssize_t n = read(from[0], before, NP);
	int status = 0;
	if (n != NP) {
		waitpid(pid, &status, 0);
		TEST_FAIL("the test's network namespace could not be set up (child status %d)",
			  WEXITSTATUS(status));
	}
	for (int i = 0; i < NP; i++)
		if (before[i])
			TEST_FAIL("probe %d failed before confinement: %s", i, strerror(before[i]));
	struct msb_err err = {0};
	/* An empty passt-<pid> as a crashed msb whose passt had this pid leaves
	 * it: taken over, not a failure. */
	char root[4096], stale[4200];
	if (scope_cgroup2_root(root, sizeof(root), &err) == 0) {
		snprintf(stale, sizeof(stale), "%s/msb", root);
		(void)mkdir(stale, 0755);
		snprintf(stale, sizeof(stale), "%s/msb/passt-%d", root, (int)pid);
		CHECK(mkdir(stale, 0755) == 0);
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = scope_confine(pid, r, "public", &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# scope_confine (cgroup, map, 7 programs loaded and attached): %.1f ms\n",
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	if (rc == 0)
		CHECK(write(to[1], "g", 1) == 1);
	close(to[1]);
	n = read(from[0], after, NP);
	close(from[0]);
	waitpid(pid, &status, 0);
	scope_release(pid);
	if (rc < 0)
		TEST_FAIL("scope_confine: %s", err.msg);
	CHECK(n == NP && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(confined_process_is_refused_private_addresses)
{
	need_bpf(t);
	struct scope_rules r = {.nns = 1};
	r.ns[0] = v4(NS_ADDR);
	unsigned char res[NP];
	confined(t, &r, res);
	static const char *const names[NP] = {"tcp 127.0.0.1",	     "tcp 10.1.2.3",
					      "tcp 198.51.100.7",    "tcp ns:53",
					      "udp 10.1.2.3",	     "udp 198.51.100.7",
					      "udp ns:53",	     "udp ns:54",
					      "tcp ::ffff:10.1.2.3", "tcp ::1",
					      "icmp socket",	     "tcp 127.0.0.1:lo_port",
					      "udp reply to a peer", "udp to a non-peer"};
	static const bool refused[NP] = {[P_LO] = true,	   [P_PRIV] = true,   [P_UPRIV] = true,
					 [P_UNS54] = true, [P_MAPPED] = true, [P_LO6] = true,
					 [P_ICMP] = true,  [P_LOPORT] = true, [P_UNOTPEER] = true};
	for (int i = 0; i < NP; i++) {
		if (refused[i] && res[i] != EPERM)
			TEST_FAIL("%s: want EPERM, got %s", names[i],
				  res[i] ? strerror(res[i]) : "through");
		if (!refused[i] && res[i])
			TEST_FAIL("%s: want through, got %s", names[i], strerror(res[i]));
	}
}

TEST(group_reaches_its_ports_on_host_loopback_only)
{
	need_bpf(t);
	struct scope_rules r = {0};
	struct msb_err err = {0};
	CHECK_INT(scope_rules_add_port(&r, LO_PORT, &err), ==, 0);
	unsigned char res[NP];
	confined(t, &r, res);
	CHECK_INT(res[P_LOPORT], ==, 0);
	CHECK_INT(res[P_LO], ==, EPERM);
	CHECK_INT(res[P_PRIV], ==, EPERM);
	CHECK_INT(res[P_UNS], ==, EPERM); /* no name server in these rules */
	CHECK_INT(res[P_PUB], ==, 0);
}

TEST(unprivileged_confine_names_the_scope_and_the_ways_out)
{
	need_bpf(t);
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(1);
		struct scope_rules r = {0};
		struct msb_err err = {0};
		int rc = scope_confine(getpid(), &r, "group", &err);
		dprintf(p[1], "%d %d %s", rc, (int)err.kind, err.msg);
		_exit(0);
	}
	close(p[1]);
	char buf[1024] = {0};
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	waitpid(pid, NULL, 0);
	CHECK(n > 0);
	int rc = 0, kind = 0, off = 0;
	CHECK(sscanf(buf, "%d %d %n", &rc, &kind, &off) == 2);
	CHECK_INT(rc, ==, -1);
	CHECK_INT(kind, ==, MSB_EK_SYSTEM);
	CHECK(strstr(buf + off, "scope group"));
	CHECK(strstr(buf + off, "--scope any"));
	CHECK(strstr(buf + off, "root"));
}

TEST(privileges_are_checked_before_any_vm)
{
	struct msb_err err = {0};
	if (geteuid() != 0)
		TEST_SKIP("SKIPPED: needs root (checks root passes and uid 65534 is refused)");
	CHECK_INT(scope_check_privileges("public", &err), ==, 0);
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(1);
		struct msb_err e = {0};
		int rc = scope_check_privileges("public", &e);
		dprintf(p[1], "%d %d %s", rc, (int)e.kind, e.msg);
		_exit(0);
	}
	close(p[1]);
	char buf[1024] = {0};
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	waitpid(pid, NULL, 0);
	CHECK(n > 0);
	int rc = 0, kind = 0, off = 0;
	CHECK(sscanf(buf, "%d %d %n", &rc, &kind, &off) == 2);
	CHECK_INT(rc, ==, -1);
	CHECK_INT(kind, ==, MSB_EK_SYSTEM);
	CHECK(strstr(buf + off, "scope public"));
	CHECK(strstr(buf + off, "--scope any"));
	CHECK(strstr(buf + off, "CAP_BPF"));
}

TEST(stale_cgroups_of_gone_processes_are_pruned)
{
	need_bpf(t);
	char root[4096], dead[4200], live[4200], other[4200];
	struct msb_err err = {0};
	if (scope_cgroup2_root(root, sizeof(root), &err) < 0)
		TEST_SKIP("SKIPPED: %s", err.msg);
	pid_t gone = fork(); /* a pid that is surely gone once reaped */
	CHECK(gone >= 0);
	if (gone == 0)
		_exit(0);
	waitpid(gone, NULL, 0);
	snprintf(dead, sizeof(dead), "%s/msb/passt-%d", root, (int)gone);
	snprintf(live, sizeof(live), "%s/msb/passt-%d", root, (int)getpid());
	snprintf(other, sizeof(other), "%s/msb/not-ours-%d", root, (int)gone);
	snprintf(root + strlen(root), sizeof(root) - strlen(root), "/msb");
	CHECK(mkdir(root, 0755) == 0 || errno == EEXIST);
	CHECK(mkdir(dead, 0755) == 0);
	CHECK(mkdir(live, 0755) == 0);
	CHECK(mkdir(other, 0755) == 0);
	*strrchr(root, '/') = '\0';
	scope_prune_stale(root);
	bool dead_gone = access(dead, F_OK) != 0, live_kept = access(live, F_OK) == 0,
	     other_kept = access(other, F_OK) == 0;
	rmdir(dead);
	rmdir(live);
	rmdir(other);
	CHECK(dead_gone);
	CHECK(live_kept);
	CHECK(other_kept);
}

TEST_MAIN(T(resolv_conf_name_servers), T(resolv_conf_hostile),
	  T(host_addresses_leave_out_what_the_ranges_refuse),
	  T(refused_ranges_cover_private_and_link_local_host_addresses), T(mountinfo_finds_cgroup2),
	  T(programs_fit_with_the_most_rules), T(programs_decide_on_crafted_contexts),
	  T(udp_peers_that_wrote_first_may_be_answered), T(kernel_loads_and_runs_the_programs),
	  T(confined_process_is_refused_private_addresses),
	  T(group_reaches_its_ports_on_host_loopback_only),
	  T(unprivileged_confine_names_the_scope_and_the_ways_out),
	  T(privileges_are_checked_before_any_vm), T(stale_cgroups_of_gone_processes_are_pruned))
