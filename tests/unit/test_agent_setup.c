/* SETUP: the codec (round trip, hostile fields) and the client's retry of a
 * guest that refuses connections while its vsock transport resets, against a
 * fake msb-vmm socket in a child process. */
#include "tests/unit/test.h"
#include "tests/unit/test_sock.h"
#include "agent/client.h"
#include "agent/proto.h"
#include "common/cleanup.h"

#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char MID[] = "0123456789abcdef0123456789abcdef";

/* The payload of one SETUP frame built by `fill` (header stripped). */
struct payload {
	struct agent_buf b;
	const uint8_t *p;
	size_t n;
};

static void finish(struct payload *pl)
{
	struct msb_err err;
	if (agent_msg_end(&pl->b, &err) < 0)
		abort();
	pl->p = pl->b.data + AGENT_HDR_SIZE;
	pl->n = pl->b.len - AGENT_HDR_SIZE;
}

TEST(setup_round_trip)
{
	struct payload pl = {0};
	uint8_t ent[64];
	for (size_t i = 0; i < sizeof(ent); i++)
		ent[i] = (uint8_t)(i * 7);
	agent_msg_begin(&pl.b, AGENT_SETUP, 3, 0);
	agent_put_str(&pl.b, AGENT_T_ROOT_DEV, "/dev/vda");
	agent_put_str(&pl.b, AGENT_T_ROOT_FSTYPE, "erofs");
	agent_put_str(&pl.b, AGENT_T_OVERLAY, "/dev/vdb");
	agent_put_str(&pl.b, AGENT_T_HOSTNAME, "box-1.example");
	agent_put_u64(&pl.b, AGENT_T_REALTIME_NS, 1700000000123456789ull);
	agent_put_bytes(&pl.b, AGENT_T_ENTROPY, ent, sizeof(ent));
	agent_put_str(&pl.b, AGENT_T_MACHINE_ID, MID);
	agent_put_str(&pl.b, 69, "a field from the future"); /* skipped */
	finish(&pl);
	struct agent_setup_req r;
	struct msb_err err;
	CHECK_INT(agent_decode_setup(pl.p, pl.n, &r, &err), ==, 0);
	CHECK_STR(r.root_dev, "/dev/vda");
	CHECK_STR(r.root_fstype, "erofs");
	CHECK_STR(r.overlay, "/dev/vdb");
	CHECK_STR(r.hostname, "box-1.example");
	CHECK(r.has_realtime);
	CHECK(r.realtime_ns == 1700000000123456789ull);
	CHECK_INT(r.entropy_len, ==, sizeof(ent));
	CHECK(memcmp(r.entropy, ent, sizeof(ent)) == 0);
	CHECK_STR(r.machine_id, MID);
	agent_buf_release(&pl.b);
	/* Everything is optional: an empty SETUP is a valid no-op. */
	CHECK_INT(agent_decode_setup(NULL, 0, &r, &err), ==, 0);
	CHECK(!r.root_dev[0] && !r.hostname[0] && !r.has_realtime && !r.entropy_len &&
	      !r.machine_id[0]);
}

/* One field that must be refused, alone or behind a root device. */
struct bad {
	uint16_t tag;
	const char *str; /* NULL: `len` bytes of 0x41, or a u64 when len == 8 */
	size_t len;
	uint64_t u;
	bool with_root;
};

TEST(setup_refuses_hostile_fields)
{
	char long_dev[80] = "/dev/";
	memset(long_dev + 5, 'a', 70);
	long_dev[75] = '\0';
	const struct bad bad[] = {
		{AGENT_T_ROOT_DEV, "/etc/passwd"},
		{AGENT_T_ROOT_DEV, "/dev/../etc"},
		{AGENT_T_ROOT_DEV, "/dev/"},
		{AGENT_T_ROOT_DEV, "/dev/vda/"},
		{AGENT_T_ROOT_DEV, "/dev/VDA"},
		{AGENT_T_ROOT_DEV, long_dev},
		{AGENT_T_ROOT_FSTYPE, "xfs", 0, 0, true},
		{AGENT_T_ROOT_FSTYPE, "ext4", 0, 0, false}, /* without a root device */
		{AGENT_T_OVERLAY, "tmpfs", 0, 0, false},
		{AGENT_T_OVERLAY, "/tmp/rw", 0, 0, true},
		{AGENT_T_HOSTNAME, "a b"},
		{AGENT_T_HOSTNAME, ".dot"},
		{AGENT_T_HOSTNAME, "-dash"},
		{AGENT_T_HOSTNAME, ""},
		{AGENT_T_MACHINE_ID, "0123456789ABCDEF0123456789ABCDEF"},
		{AGENT_T_MACHINE_ID, "00000000000000000000000000000000"},
		{AGENT_T_MACHINE_ID, "0123456789abcdef0123456789abcdef0"},
		{AGENT_T_MACHINE_ID, "0123456789abcdef0123456789abcdeg"},
		{AGENT_T_ENTROPY, NULL, AGENT_ENTROPY_MIN - 1},
		{AGENT_T_ENTROPY, NULL, AGENT_ENTROPY_MAX + 1},
		{AGENT_T_ENTROPY, NULL, 0},
		{AGENT_T_REALTIME_NS, NULL, 8, 0},
		{AGENT_T_REALTIME_NS, NULL, 4, 5},
	};
	uint8_t bytes[AGENT_ENTROPY_MAX + 8];
	memset(bytes, 0x41, sizeof(bytes));
	for (size_t i = 0; i < MSB_ARRAY_SIZE(bad); i++) {
		struct payload pl = {0};
		agent_msg_begin(&pl.b, AGENT_SETUP, 1, 0);
		if (bad[i].with_root)
			agent_put_str(&pl.b, AGENT_T_ROOT_DEV, "/dev/vda");
		if (bad[i].str)
			agent_put_str(&pl.b, bad[i].tag, bad[i].str);
		else if (bad[i].tag == AGENT_T_REALTIME_NS && bad[i].len == 8)
			agent_put_u64(&pl.b, bad[i].tag, bad[i].u);
		else if (bad[i].tag == AGENT_T_REALTIME_NS)
			agent_put_u32(&pl.b, bad[i].tag, (uint32_t)bad[i].u);
		else
			agent_put_bytes(&pl.b, bad[i].tag, bytes, bad[i].len);
		finish(&pl);
		struct agent_setup_req r;
		struct msb_err err = {0};
		int rc = agent_decode_setup(pl.p, pl.n, &r, &err);
		agent_buf_release(&pl.b);
		if (rc != -1 || err.kind != MSB_EK_CORRUPT || !err.msg[0])
			TEST_FAIL("case %zu (tag %u '%s') was not refused as corrupt", i,
				  bad[i].tag, bad[i].str ? bad[i].str : "");
	}
}

TEST(setup_refuses_repeats_nul_truncation_and_critical_unknowns)
{
	static const uint16_t tags[] = {AGENT_T_ROOT_DEV, AGENT_T_HOSTNAME, AGENT_T_OVERLAY};
	struct agent_setup_req r;
	struct msb_err err;
	for (size_t i = 0; i < MSB_ARRAY_SIZE(tags); i++) {
		struct payload pl = {0};
		agent_msg_begin(&pl.b, AGENT_SETUP, 1, 0);
		agent_put_str(&pl.b, AGENT_T_ROOT_DEV, "/dev/vda");
		agent_put_str(&pl.b, tags[i], tags[i] == AGENT_T_HOSTNAME ? "a" : "/dev/vdb");
		agent_put_str(&pl.b, tags[i], tags[i] == AGENT_T_HOSTNAME ? "b" : "/dev/vdc");
		finish(&pl);
		CHECK_INT(agent_decode_setup(pl.p, pl.n, &r, &err), ==, -1);
		CHECK(strstr(err.msg, "twice") != NULL);
		agent_buf_release(&pl.b);
	}
	struct payload pl = {0};
	agent_msg_begin(&pl.b, AGENT_SETUP, 1, 0);
	agent_put_bytes(&pl.b, AGENT_T_HOSTNAME, "ab\0cd", 5);
	finish(&pl);
	CHECK_INT(agent_decode_setup(pl.p, pl.n, &r, &err), ==, -1);
	/* A field that claims more bytes than the frame holds. */
	CHECK_INT(agent_decode_setup(pl.p, pl.n - 1, &r, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	agent_buf_release(&pl.b);
	memset(&pl, 0, sizeof(pl));
	agent_msg_begin(&pl.b, AGENT_SETUP, 1, 0);
	agent_put_u32(&pl.b, AGENT_TAG_CRITICAL | 69, 1);
	finish(&pl);
	CHECK_INT(agent_decode_setup(pl.p, pl.n, &r, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE); /* msb-init answers "unsupported" */
	agent_buf_release(&pl.b);
}

TEST(validators)
{
	CHECK(agent_valid_dev("/dev/vda", 8));
	CHECK(agent_valid_dev("/dev/disk/by-id/x_1", 19));
	CHECK(!agent_valid_dev("/dev/vda ", 9));
	CHECK(!agent_valid_dev("/dev", 4));
	CHECK(agent_valid_hostname("a-b.c9", 6));
	CHECK(!agent_valid_hostname("a_b", 3));
	CHECK(agent_valid_machine_id(MID, 32));
	CHECK(!agent_valid_machine_id(MID, 31));
}

/* ---- the client against a fake msb-vmm socket -------------------------------------- */

static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap && read(fd, buf + n, 1) == 1)
		if (buf[n++] == '\n')
			break;
	buf[n] = '\0';
	return (int)n;
}

static void send_frame(int fd, struct agent_buf *b)
{
	if (write(fd, b->data, b->len) != (ssize_t)b->len)
		_exit(10);
	b->len = 0;
}

/* Read one whole frame into buf; its type and id. */
static int read_frame(int fd, uint8_t *buf, size_t cap, struct agent_hdr *h)
{
	struct msb_err err;
	size_t got = 0;
	while (got < AGENT_HDR_SIZE) {
		ssize_t n = read(fd, buf + got, AGENT_HDR_SIZE - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	if (agent_hdr_decode(buf, h, &err) < 0 || h->len > cap - AGENT_HDR_SIZE)
		return -1;
	while (got < AGENT_HDR_SIZE + h->len) {
		ssize_t n = read(fd, buf + got, AGENT_HDR_SIZE + h->len - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

/* The fake: refuses `refusals` connections after CONNECT (as msb-vmm does when
 * the guest resets), drops one more after the handshake before HELLO, then
 * serves: HELLO, then answers SETUP with OK when its hostname is "good", with
 * ERROR otherwise. */
static void fake_vmm(int lfd, int refusals)
{
	char line[64];
	struct agent_buf b = {0};
	struct msb_err err;
	for (int i = 0; i < refusals + 1; i++) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			_exit(11);
		read_line(fd, line, sizeof(line));
		if (i == refusals) {
			if (write(fd, "OK 7\n", 5) != 5)
				_exit(12);
		}
		close(fd);
	}
	int fd = accept(lfd, NULL, NULL);
	read_line(fd, line, sizeof(line));
	if (strcmp(line, "CONNECT 1024\n") != 0 || write(fd, "OK 8\n", 5) != 5)
		_exit(13);
	static uint8_t buf[1 << 16];
	struct agent_hdr h;
	if (read_frame(fd, buf, sizeof(buf), &h) < 0 || h.type != AGENT_HELLO)
		_exit(14);
	agent_msg_begin(&b, AGENT_HELLO, 0, 0);
	agent_put_u32(&b, AGENT_T_VERSION, AGENT_PROTO_VERSION);
	agent_put_str(&b, AGENT_T_HOSTNAME, "fake");
	agent_msg_end(&b, &err);
	send_frame(fd, &b);
	while (read_frame(fd, buf, sizeof(buf), &h) == 0) {
		struct agent_setup_req r;
		if (h.type != AGENT_SETUP ||
		    agent_decode_setup(buf + AGENT_HDR_SIZE, h.len, &r, &err) < 0)
			_exit(15);
		if (strcmp(r.hostname, "good") == 0 && r.has_realtime && r.entropy_len == 32) {
			agent_msg_begin(&b, AGENT_OK, h.id, 0);
			agent_msg_end(&b, &err);
		} else {
			agent_put_error(&b, h.id, AGENT_E_NOT_FOUND, 2,
					"the disk /dev/vda did not appear", &err);
		}
		send_frame(fd, &b);
	}
	_exit(0);
}

TEST(client_retries_a_refusing_guest_and_gets_setup_answers)
{
	char path[108];
	snprintf(path, sizeof(path), "/tmp/msb-test-setup-%d.sock", (int)getpid());
	int lfd = test_unix_listen(path, 8);
	CHECK(lfd >= 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		fake_vmm(lfd, 3);
	close(lfd);
	struct msb_err err = {0};
	struct agent_client *c = agent_client_open(path, 5000, &err);
	unlink(path);
	if (!c) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		TEST_FAIL("open did not retry: %s", err.msg);
	}
	CHECK_STR(agent_client_hostname(c), "fake");
	uint8_t ent[32] = {1};
	struct agent_setup_opts o = {
		.hostname = "good", .clock_now = true, .entropy = ent, .entropy_len = sizeof(ent)};
	CHECK_INT(agent_setup(c, &o, &err), ==, 0);
	o.hostname = "bad";
	CHECK_INT(agent_setup(c, &o, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "did not appear") != NULL);
	/* Checked before anything is sent. */
	o.machine_id = "not hex";
	CHECK_INT(agent_setup(c, &o, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	agent_client_free(c);
	int st;
	CHECK_INT(waitpid(pid, &st, 0), ==, pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(client_open_fails_at_once_without_a_vmm_socket)
{
	struct msb_err err = {0};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(agent_client_open("/nonexistent/msb-test.sock", 5000, &err) == NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_INT(t1.tv_sec - t0.tv_sec, <, 2); /* no retry: msb-vmm is not there */
}

/* MOUNT: repeatable, each "TAG ro|rw PATH" checked; hostile ones refused. */
TEST(setup_mounts)
{
	struct payload pl = {0};
	agent_msg_begin(&pl.b, AGENT_SETUP, 3, 0);
	agent_put_str(&pl.b, AGENT_T_MOUNT, "msbvol0 rw /data");
	agent_put_str(&pl.b, AGENT_T_MOUNT, "msbvol1 ro /srv/my files");
	finish(&pl);
	struct agent_setup_req r;
	struct msb_err err;
	CHECK_INT(agent_decode_setup(pl.p, pl.n, &r, &err), ==, 0);
	CHECK_INT(r.nmounts, ==, 2);
	CHECK_STR(r.mounts[0].tag, "msbvol0");
	CHECK_STR(r.mounts[0].path, "/data");
	CHECK(!r.mounts[0].readonly);
	CHECK_STR(r.mounts[1].path, "/srv/my files");
	CHECK(r.mounts[1].readonly);
	agent_buf_release(&pl.b);

	static const char *const bad[] = {
		"msbvol0 rw /",
		"msbvol0 rw data",
		"msbvol0 rw /a/../b",
		"msbvol0 rw /a/./b",
		"msbvol0 rw /a//b",
		"msbvol0 rw /a/",
		"msbvol0 rx /a",
		"msbvol0 /a",
		"msb/vol rw /a",
		" rw /a",
		"msbvol0",
		"msbvol0 rw ",
		"msbvol0 rw /..",
		"a234567890123456789012345678901234567 rw /a",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct agent_mount m;
		if (agent_parse_mount(bad[i], strlen(bad[i]), &m, &err) == 0)
			TEST_FAIL("accepted mount '%s'", bad[i]);
		CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	}
	/* A NUL inside the path. */
	struct agent_mount m;
	CHECK_INT(agent_parse_mount("msbvol0 rw /a\0b", 15, &m, &err), ==, -1);
	/* More mounts than the limit. */
	agent_msg_begin(&pl.b, AGENT_SETUP, 3, 0);
	for (int i = 0; i <= AGENT_MOUNTS_MAX; i++)
		agent_put_str(&pl.b, AGENT_T_MOUNT, "msbvol0 rw /data");
	finish(&pl);
	CHECK_INT(agent_decode_setup(pl.p, pl.n, &r, &err), ==, -1);
	agent_buf_release(&pl.b);
}

TEST_MAIN(T(setup_round_trip), T(setup_mounts), T(setup_refuses_hostile_fields),
	  T(setup_refuses_repeats_nul_truncation_and_critical_unknowns), T(validators),
	  T(client_retries_a_refusing_guest_and_gets_setup_answers),
	  T(client_open_fails_at_once_without_a_vmm_socket))
