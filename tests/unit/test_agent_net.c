/* SETUP's NET field: the parser of "ADDR/PREFIX GATEWAY DNS" and its place in
 * agent_decode_setup(). */
#include <arpa/inet.h>

#include "agent/proto.h"
#include "tests/unit/test.h"

static uint32_t ip(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

static int parse(const char *s, struct agent_net *n)
{
	struct msb_err err = {0};
	int r = agent_parse_net(s, strlen(s), n, &err);
	if (r < 0 && !strstr(err.msg, "ADDR/PREFIX GATEWAY DNS"))
		return -2; /* a refusal must say what to write */
	return r;
}

TEST(net_parses_the_default_sandbox_network)
{
	struct agent_net n;
	CHECK_INT(parse("10.0.2.15/24 10.0.2.2 10.0.2.3", &n), ==, 0);
	CHECK_INT(n.prefix, ==, 24);
	CHECK(n.addr == ip("10.0.2.15"));
	CHECK(n.gateway == ip("10.0.2.2"));
	CHECK(n.dns == ip("10.0.2.3"));
	CHECK_INT(parse("192.168.7.9/30 192.168.7.10 1.1.1.1", &n), ==, 0);
	CHECK_INT(n.prefix, ==, 30);
}

TEST(net_refuses_hostile_values)
{
	static const char *const bad[] = {
		"",
		"10.0.2.15",
		"10.0.2.15/24",
		"10.0.2.15/24 10.0.2.2",
		"10.0.2.15/24  10.0.2.2 10.0.2.3", /* two spaces */
		"10.0.2.15/24 10.0.2.2 10.0.2.3 ", /* trailing space */
		"10.0.2.15/0 10.0.2.2 10.0.2.3",   /* prefix 0 */
		"10.0.2.15/31 10.0.2.14 10.0.2.3", /* no room for a gateway */
		"10.0.2.15/33 10.0.2.2 10.0.2.3",
		"10.0.2.15/024 10.0.2.2 10.0.2.3", /* three digits */
		"10.0.2.15/-1 10.0.2.2 10.0.2.3",
		"10.0.2.15/ 10.0.2.2 10.0.2.3",
		"10.0.2.15/24 10.0.3.2 10.0.2.3",  /* gateway off the link */
		"10.0.2.15/24 10.0.2.15 10.0.2.3", /* gateway = address */
		"10.0.2.0/24 10.0.2.2 10.0.2.3",   /* network address */
		"10.0.2.255/24 10.0.2.2 10.0.2.3", /* broadcast */
		"10.0.2.15/24 10.0.2.255 10.0.2.3",
		"10.0.2.256/24 10.0.2.2 10.0.2.3",
		"10.0.2/24 10.0.2.2 10.0.2.3",
		"::1/24 10.0.2.2 10.0.2.3",
		"10.0.2.15/24 10.0.2.2 dns.example",
		"10.0.2.15/24 10.0.2.2 10.0.2.3.4.5.6.7.8",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct agent_net n = {.prefix = 99};
		if (parse(bad[i], &n) != -1)
			TEST_FAIL("accepted or badly refused '%s'", bad[i]);
		CHECK_INT(n.prefix, ==, 0);
	}
	/* A NUL inside. */
	struct agent_net n;
	struct msb_err err = {0};
	CHECK_INT(agent_parse_net("10.0.2.15/24 10.0.2.2\0 10.0.2.3", 30, &n, &err), ==, -1);
}

TEST(setup_carries_net_once)
{
	struct agent_buf b = {0};
	struct msb_err err = {0};
	agent_put_str(&b, AGENT_T_NET, "10.0.2.15/24 10.0.2.2 10.0.2.3");
	struct agent_setup_req r;
	CHECK_INT(agent_decode_setup(b.data, b.len, &r, &err), ==, 0);
	CHECK_INT(r.net.prefix, ==, 24);
	agent_put_str(&b, AGENT_T_NET, "10.0.2.15/24 10.0.2.2 10.0.2.3");
	CHECK_INT(agent_decode_setup(b.data, b.len, &r, &err), ==, -1);
	CHECK(strstr(err.msg, "twice") != NULL);
	free(b.data);
}

TEST_MAIN(T(net_parses_the_default_sandbox_network), T(net_refuses_hostile_values),
	  T(setup_carries_net_once))
