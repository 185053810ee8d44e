/* A sandbox's network without a VM: -p parsing, --scope on the command line,
 * passt's command line per scope, msb-vmm's --net, and a real passt started
 * and stopped on a socket pair when passt is installed. */
#include <signal.h>
#include <sys/wait.h>

#include "sandbox/net.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/scope.h"
#include "tests/unit/test.h"

static bool has(const struct msb_strv *v, const char *a, const char *b)
{
	for (size_t i = 0; v->v && v->v[i]; i++)
		if (strcmp(v->v[i], a) == 0 && (!b || (v->v[i + 1] && strcmp(v->v[i + 1], b) == 0)))
			return true;
	return false;
}

TEST(ports_parse_all_forms)
{
	struct sandbox_port p;
	struct msb_err err = {0};
	CHECK_INT(sandbox_port_parse("8080:80", &p, &err), ==, 0);
	CHECK_INT(p.host, ==, 8080);
	CHECK_INT(p.guest, ==, 80);
	CHECK(!p.udp && !p.host_ip[0]);
	CHECK_INT(sandbox_port_parse("53/udp", &p, &err), ==, 0);
	CHECK(p.udp && p.host == 53 && p.guest == 53);
	CHECK_INT(sandbox_port_parse("127.0.0.1:18080:8080/tcp", &p, &err), ==, 0);
	CHECK_STR(p.host_ip, "127.0.0.1");
	CHECK(!p.udp && p.host == 18080 && p.guest == 8080);
}

TEST(ports_refuse_hostile_values_with_one_clear_message)
{
	static const char *const bad[] = {
		"",
		"http",
		"80:http",
		"0",
		"0:80",
		"80:0",
		"65536",
		"8080:80/sctp",
		"8080:80/",
		"8080:80/tcpx",
		":80",
		"80:",
		"1.2.3:80:80",
		"::1:80:80",
		"a:b:c:d",
		"1:2:3:4",
		"-1:80",
		"+80",
		"8080 :80",
		"999999:80",
		"300.0.0.1:1:1",
		"127.0.0.1:80",
		"127.0.0.1::80",
		"8080:80/udp/tcp",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sandbox_port p;
		struct msb_err err = {0};
		if (sandbox_port_parse(bad[i], &p, &err) != -1)
			TEST_FAIL("accepted '%s'", bad[i]);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
		CHECK(strstr(err.msg, "HOST_PORT:GUEST_PORT") != NULL);
	}
}

static int parse(enum sandbox_cli_kind k, const char **args, struct sandbox_cli_args *a,
		 struct msb_err *err)
{
	int argc = 0;
	while (args[argc])
		argc++;
	return sandbox_cli_parse(k, argc, (char **)args, a, err);
}

TEST(cli_takes_ports_and_scope)
{
	struct sandbox_cli_args a;
	struct msb_err err = {0};
	const char *exe[] = {
		"exe", "-p", "127.0.0.1:18080:8080", "--port=9000/udp", "--scope", "ANY",
		"img", NULL};
	CHECK_INT(parse(SANDBOX_CLI_EXE, exe, &a, &err), ==, 0);
	CHECK_INT(a.net.nports, ==, 2);
	CHECK_INT(a.net.scope, ==, MSB_SCOPE_ANY);
	CHECK(a.scope_set);
	CHECK(a.net.ports[1].udp);
	CHECK(a.unsupported == NULL);
	sandbox_cli_args_clear(&a);
	const char *run[] = {"run", "web", "-p", "8080:80", NULL};
	CHECK_INT(parse(SANDBOX_CLI_RUN, run, &a, &err), ==, 0);
	CHECK_INT(a.net.nports, ==, 1);
	CHECK_INT(a.net.scope, ==, MSB_SCOPE_PUBLIC); /* upstream's default */
	CHECK(!a.scope_set);
	sandbox_cli_args_clear(&a);
}

TEST(cli_refuses_bad_ports_scopes_and_ports_without_network)
{
	const char *const *cases[] = {
		(const char *[]){"exe", "-p", "80:http", "img", NULL},
		(const char *[]){"exe", "-p", NULL},
		(const char *[]){"exe", "--scope", "local", "img", NULL},
		(const char *[]){"exe", "--scope", "none", "-p", "80", "img", NULL},
		(const char *[]){"run", "web", "--scope", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sandbox_cli_args a;
		struct msb_err err = {0};
		enum sandbox_cli_kind k =
			strcmp(cases[i][0], "run") == 0 ? SANDBOX_CLI_RUN : SANDBOX_CLI_EXE;
		if (parse(k, (const char **)cases[i], &a, &err) != -1)
			TEST_FAIL("case %zu accepted", i);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
		CHECK(err.msg[0] != '\0');
	}
}

TEST(passt_argv_per_scope)
{
	struct sandbox_net n = {.scope = MSB_SCOPE_PUBLIC};
	struct sandbox_port p[2] = {{.host = 18080, .guest = 8080}, {.host = 53, .guest = 5353}};
	snprintf(p[0].host_ip, sizeof(p[0].host_ip), "127.0.0.1");
	p[1].udp = true;
	n.ports = p;
	n.nports = 2;
	struct msb_strv v = {0};
	struct msb_err err = {0};
	CHECK_INT(sandbox_passt_argv(&n, "passt", 3, &v, &err), ==, 0);
	CHECK(has(&v, "-F", "3"));
	CHECK(has(&v, "-a", SANDBOX_NET_GUEST));
	CHECK(has(&v, "-g", SANDBOX_NET_GATEWAY));
	CHECK(has(&v, "-n", "24"));
	CHECK(has(&v, "--dns-forward", SANDBOX_NET_DNS));
	CHECK(has(&v, "--no-map-gw", NULL)); /* public: no way into the host's loopback */
	CHECK(has(&v, "-t", "127.0.0.1/18080:8080"));
	CHECK(has(&v, "-u", "53:5353"));
	msb_strv_clear(&v);
	n.scope = MSB_SCOPE_ANY;
	CHECK_INT(sandbox_passt_argv(&n, "passt", 3, &v, &err), ==, 0);
	CHECK(!has(&v, "--no-map-gw", NULL));
	msb_strv_clear(&v);
	n.scope = MSB_SCOPE_GROUP; /* the gateway maps; the scope filter keeps the group's ports */
	CHECK_INT(sandbox_passt_argv(&n, "passt", 3, &v, &err), ==, 0);
	CHECK(!has(&v, "--no-map-gw", NULL));
	msb_strv_clear(&v);
	n.scope = MSB_SCOPE_NONE;
	CHECK_INT(sandbox_passt_argv(&n, "passt", 3, &v, &err), ==, -1);
	CHECK_STR(SANDBOX_NET_SETUP, "10.0.2.15/24 10.0.2.2 10.0.2.3");
}

TEST(vmm_argv_carries_the_net_slot)
{
	struct sandbox_parts parts = {.vmm = "msb-vmm", .kernel = "k", .initrd = "i"};
	struct sandbox_vmm_args a = {.parts = &parts, .vsock_path = "/v", .net = "fd:3"};
	struct msb_strv v = {0};
	struct msb_err err = {0};
	CHECK_INT(sandbox_vmm_argv(&a, &v, &err), ==, 0);
	CHECK(has(&v, "--net", "fd:3"));
	msb_strv_clear(&v);
	a.net = NULL; /* a user snapshot from before network slots */
	CHECK_INT(sandbox_vmm_argv(&a, &v, &err), ==, 0);
	CHECK(!has(&v, "--net", NULL));
	msb_strv_clear(&v);
}

TEST(sandboxfile_ports_and_scope_become_the_network)
{
	struct msb_port_pair pp[1] = {{.host = 8080, .guest = 80}};
	struct msb_sandbox s = {.name = "web", .ports = pp, .nports = 1, .scope = MSB_SCOPE_ANY};
	struct sandbox_net n;
	struct msb_err err = {0};
	CHECK_INT(sandbox_net_from_sandboxfile(&s, &n, &err), ==, 0);
	CHECK_INT(n.scope, ==, MSB_SCOPE_ANY);
	CHECK_INT(n.nports, ==, 1);
	CHECK(n.ports[0].host == 8080 && n.ports[0].guest == 80 && !n.ports[0].udp);
	sandbox_net_clear(&n);
	pp[0].host = 0;
	CHECK_INT(sandbox_net_from_sandboxfile(&s, &n, &err), ==, -1);
}

TEST(passt_starts_and_stops_on_a_socket_pair)
{
	if (access("/usr/bin/passt", X_OK) != 0 && !getenv("MSB_PASST"))
		TEST_SKIP("passt is not installed (apt install passt)");
	char dir[] = "/tmp/msb-test-net-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	struct sandbox sb = {.name = "t", .run_dir = dir};
	struct sandbox_port p = {.host = 0};
	(void)p;
	/* public needs root for its filter (test_scope.c covers the refusal) */
	bool root = geteuid() == 0;
	struct sandbox_net n = {.scope = root ? MSB_SCOPE_PUBLIC : MSB_SCOPE_ANY};
	struct msb_err err = {0};
	if (sandbox_net_start(&sb, &n, &err) < 0)
		TEST_FAIL("sandbox_net_start: %s", err.msg);
	CHECK(sb.passt_pid > 0);
	CHECK(sb.net_fd > 2);
	usleep(200 * 1000);
	CHECK_INT(kill(sb.passt_pid, 0), ==, 0); /* running, waiting for frames */
	/* scope public: passt runs in its own filtered cgroup (scope.h) */
	char cgf[64], cg[512] = {0}, want[64];
	snprintf(cgf, sizeof(cgf), "/proc/%d/cgroup", (int)sb.passt_pid);
	snprintf(want, sizeof(want), "0::/msb/passt-%d\n", (int)sb.passt_pid);
	FILE *f = fopen(cgf, "r");
	CHECK(f != NULL);
	if (!root)
		want[0] = '\0';
	size_t cgn = fread(cg, 1, sizeof(cg) - 1, f);
	fclose(f);
	CHECK(cgn > 0);
	if (!strstr(cg, want))
		TEST_FAIL("passt is not in its scope cgroup: %s", cg);
	/* Closing msb-vmm's end (here: ours) ends passt by itself (-F implies one-off). */
	pid_t pid = sb.passt_pid;
	sandbox_net_spawned(&sb);
	CHECK_INT(sb.net_fd, ==, 0);
	int st = 0;
	for (int i = 0; i < 100 && waitpid(pid, &st, WNOHANG) == 0; i++)
		usleep(50 * 1000);
	CHECK(WIFEXITED(st) || WIFSIGNALED(st));
	sb.passt_pid = 0;
	sandbox_net_stop(&sb);
	scope_release(pid); /* reaped here, not by sandbox_net_stop */
	/* Scope none starts nothing. */
	n.scope = MSB_SCOPE_NONE;
	CHECK_INT(sandbox_net_start(&sb, &n, &err), ==, 0);
	CHECK_INT(sb.passt_pid, ==, 0);
	CHECK_INT(sb.net_fd, ==, 0);
	char log[64];
	snprintf(log, sizeof(log), "%s/passt.log", dir);
	unlink(log);
	rmdir(dir);
}

TEST_MAIN(T(ports_parse_all_forms), T(ports_refuse_hostile_values_with_one_clear_message),
	  T(cli_takes_ports_and_scope), T(cli_refuses_bad_ports_scopes_and_ports_without_network),
	  T(passt_argv_per_scope), T(vmm_argv_carries_the_net_slot),
	  T(sandboxfile_ports_and_scope_become_the_network),
	  T(passt_starts_and_stops_on_a_socket_pair))
