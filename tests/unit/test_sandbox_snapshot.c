/* The pure and file parts of snapshots as msb uses them: metadata (and hostile
 * metadata), names, the base snapshot's key, msb-vmm's argv for a restore, the
 * control socket's replies and a fake msb-vmm answering on it, and copies of
 * writable layers that keep holes. */
#include "test.h"
#include "test_sock.h"

#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/paths.h"
#include "project/menv.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/snapshot.h"
#include "sandbox/vm_int.h"

TEST(meta_round_trip)
{
	struct msb_err err = {0};
	struct sandbox_snapmeta m = {.name = "s1",
				     .source = "web",
				     .image = "docker.io/library/busybox:latest",
				     .rootfs = "/store/rootfs/abc.erofs",
				     .rootfs_format = "erofs",
				     .created = "2026-11-29T18:00:00Z",
				     .cpus = 2,
				     .memory_mib = 512,
				     .disks = 2,
				     .rw = true};
	_cleanup_free_ char *text = sandbox_snapmeta_format(&m, &err);
	CHECK(text != NULL);
	CHECK(strncmp(text, "msb-snapshot 1\n", 15) == 0);
	struct sandbox_snapmeta b;
	CHECK_INT(sandbox_snapmeta_parse(text, strlen(text), &b, &err), ==, 0);
	CHECK_STR(b.name, "s1");
	CHECK_STR(b.source, "web");
	CHECK_STR(b.image, "docker.io/library/busybox:latest");
	CHECK_STR(b.rootfs, "/store/rootfs/abc.erofs");
	CHECK_STR(b.rootfs_format, "erofs");
	CHECK_STR(b.created, "2026-11-29T18:00:00Z");
	CHECK(b.rw_disk == NULL);
	CHECK_INT(b.cpus, ==, 2);
	CHECK_INT(b.memory_mib, ==, 512);
	CHECK_INT(b.disks, ==, 2);
	CHECK(b.rw);
	sandbox_snapmeta_clear(&b);
}

TEST(meta_unknown_keys_and_comments_are_ignored)
{
	struct msb_err err = {0};
	const char *txt = "msb-snapshot 1\n# made by hand\n\nfuture=thing\nname=x\ncpus=1";
	struct sandbox_snapmeta m;
	CHECK_INT(sandbox_snapmeta_parse(txt, strlen(txt), &m, &err), ==, 0);
	CHECK_STR(m.name, "x");
	CHECK_INT(m.cpus, ==, 1);
	CHECK_INT(m.disks, ==, 1); /* default: one slot */
	sandbox_snapmeta_clear(&m);
}

static void refused(struct test_ctx *t, const char *text, size_t len, const char *needle)
{
	struct msb_err err = {0};
	struct sandbox_snapmeta m;
	if (sandbox_snapmeta_parse(text, len, &m, &err) == 0) {
		sandbox_snapmeta_clear(&m);
		TEST_FAIL("accepted: %.60s", text);
	}
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	if (!strstr(err.msg, needle))
		TEST_FAIL("message '%s' lacks '%s'", err.msg, needle);
}

TEST(meta_hostile_input_is_refused)
{
	refused(t, "", 0, "not snapshot metadata");
	refused(t, "hello\n", 6, "not snapshot metadata");
	refused(t, "msb-snapshot 2\nname=x\n", 22, "another version");
	refused(t, "msb-snapshot 1\nno equals sign\n", 30, "line 2");
	refused(t, "msb-snapshot 1\ncpus=0\n", 22, "cpus");
	refused(t, "msb-snapshot 1\ncpus=256\n", 24, "cpus");
	refused(t, "msb-snapshot 1\ncpus=-1\n", 23, "cpus");
	refused(t, "msb-snapshot 1\ncpus=99999999999999\n", 35, "cpus");
	refused(t, "msb-snapshot 1\nmemory_mib=1x\n", 29, "memory_mib");
	refused(t, "msb-snapshot 1\ndisks=3\n", 23, "disks");
	refused(t, "msb-snapshot 1\nrw=maybe\n", 24, "rw must be");
	refused(t, "msb-snapshot 1\nrw=yes\ndisks=1\n", 30, "single disk slot");
	const char nul[] = "msb-snapshot 1\nname=a\0b\n";
	refused(t, nul, sizeof(nul) - 1, "NUL");
	/* a value past the bound, and a file past the size limit */
	size_t big = SANDBOX_SNAPMETA_MAX + 10;
	char *b = malloc(big);
	CHECK(b != NULL);
	memcpy(b, "msb-snapshot 1\nname=", 20);
	memset(b + 20, 'a', big - 20);
	refused(t, b, 20 + 5000, "longer than");
	refused(t, b, big, "larger than");
	free(b);
}

TEST(meta_format_refuses_newlines)
{
	struct msb_err err = {0};
	struct sandbox_snapmeta m = {.name = "a\nrw=yes"};
	CHECK(sandbox_snapmeta_format(&m, &err) == NULL);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
}

TEST(meta_file_write_read)
{
	struct msb_err err = {0};
	char dir[] = "/tmp/msb-snaptest-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	_cleanup_free_ char *p = NULL;
	CHECK(asprintf(&p, "%s/meta", dir) > 0);
	struct sandbox_snapmeta m = {.name = "n", .rw_disk = "/x/rw.ext4", .memory_mib = 256};
	CHECK_INT(sandbox_snapmeta_write(p, &m, &err), ==, 0);
	struct sandbox_snapmeta b;
	CHECK_INT(sandbox_snapmeta_read(p, &b, &err), ==, 0);
	CHECK_STR(b.rw_disk, "/x/rw.ext4");
	CHECK_INT(b.disks, ==, 1);
	CHECK_INT(b.memory_mib, ==, 256);
	sandbox_snapmeta_clear(&b);
	unlink(p);
	CHECK_INT(sandbox_snapmeta_read(p, &b, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	rmdir(dir);
}

TEST(snapshot_names)
{
	struct msb_err err = {0};
	CHECK_INT(sandbox_snapshot_name_check("base-1.ok_2", &err), ==, 0);
	const char *bad[] = {"", ".hidden", "-x", "a/b", "..", "a b", NULL};
	for (size_t i = 0; bad[i]; i++) {
		CHECK_INT(sandbox_snapshot_name_check(bad[i], &err), ==, -1);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	}
	char longname[80];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT(sandbox_snapshot_name_check(longname, &err), ==, -1);
	CHECK_INT(sandbox_snapshot_name_check(NULL, &err), ==, -1);
}

TEST(base_key_changes_with_what_makes_it_valid)
{
	struct sandbox_file_id ids[3] = {{10, 20, 30, 1}, {11, 21, 31, 1}, {12, 22, 32, 1}};
	_cleanup_free_ char *a = sandbox_base_key_text(ids, "console=hvc0", 1, 512);
	_cleanup_free_ char *same = sandbox_base_key_text(ids, "console=hvc0", 1, 512);
	CHECK_STR(a, same);
	CHECK(strstr(a, SANDBOX_BASE_LAYOUT) != NULL);
	_cleanup_free_ char *cpus = sandbox_base_key_text(ids, "console=hvc0", 2, 512);
	_cleanup_free_ char *mem = sandbox_base_key_text(ids, "console=hvc0", 1, 256);
	_cleanup_free_ char *cmd = sandbox_base_key_text(ids, "quiet", 1, 512);
	ids[1].mtime_ns++;
	_cleanup_free_ char *mt = sandbox_base_key_text(ids, "console=hvc0", 1, 512);
	ids[1].mtime_ns--;
	ids[2].ino++;
	_cleanup_free_ char *ino = sandbox_base_key_text(ids, "console=hvc0", 1, 512);
	const char *others[] = {cpus, mem, cmd, mt, ino};
	for (size_t i = 0; i < 5; i++)
		CHECK(strcmp(a, others[i]) != 0);
}

TEST(base_key_of_real_files)
{
	struct msb_err err = {0};
	char dir[] = "/tmp/msb-snaptest-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char k[256], i[256], v[256];
	snprintf(k, sizeof(k), "%s/vmlinux", dir);
	snprintf(i, sizeof(i), "%s/initramfs.cpio", dir);
	snprintf(v, sizeof(v), "%s/msb-vmm", dir);
	const char *files[] = {k, i, v};
	for (int n = 0; n < 3; n++) {
		int fd = open(files[n], O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0);
		CHECK(write(fd, "x", 1) == 1);
		close(fd);
	}
	struct sandbox_parts p = {.kernel = k, .initrd = i, .vmm = v};
	char a[17], b[17], c[17];
	CHECK_INT(sandbox_base_key(&p, 1, 512, a, &err), ==, 0);
	CHECK_INT(strlen(a), ==, 16);
	CHECK_INT(sandbox_base_key(&p, 1, 512, b, &err), ==, 0);
	CHECK_STR(a, b);
	/* a rebuilt initramfs (same size, new mtime) makes another key */
	struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 678}};
	CHECK_INT(utimensat(AT_FDCWD, i, ts, 0), ==, 0);
	CHECK_INT(sandbox_base_key(&p, 1, 512, c, &err), ==, 0);
	CHECK(strcmp(a, c) != 0);
	unlink(v);
	CHECK_INT(sandbox_base_key(&p, 1, 512, c, &err), ==, -1);
	CHECK(strstr(err.msg, "msb-vmm") != NULL);
	unlink(k);
	unlink(i);
	rmdir(dir);
}

static size_t index_of(const struct msb_strv *s, const char *what)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], what) == 0)
			return i;
	return SIZE_MAX;
}

TEST(vmm_argv_for_a_restore)
{
	struct msb_err err = {0};
	struct sandbox_parts p = {.kernel = "/k", .initrd = "/i", .vmm = "/v", .base_cmdline = "b"};
	struct sandbox_vmm_args a = {.parts = &p,
				     .restore = "/snap/base/k1",
				     .rootfs_path = "/r.erofs",
				     .disks = 2,
				     .vsock_path = "/run/vsock",
				     .cid = 77,
				     .console = "/run/console.log",
				     .control = "/run/control",
				     .cpus = 4,
				     .memory_mib = 999};
	struct msb_strv s = {0};
	CHECK_INT(sandbox_vmm_argv(&a, &s, &err), ==, 0);
	CHECK_STR(s.v[0], "/v");
	CHECK_STR(s.v[1], "--restore");
	CHECK_STR(s.v[2], "/snap/base/k1");
	/* the snapshot fixes these: msb-vmm refuses them with --restore */
	const char *absent[] = {"--kernel",	  "--initrd", "--cmdline",
				"--base-cmdline", "--cpus",   "--memory"};
	for (size_t i = 0; i < 6; i++)
		CHECK(index_of(&s, absent[i]) == SIZE_MAX);
	size_t d = index_of(&s, "/r.erofs,ro");
	CHECK(d != SIZE_MAX && d > 0);
	CHECK_STR(s.v[d - 1], "--disk");
	CHECK_STR(s.v[d + 1], "--disk");
	CHECK_STR(s.v[d + 2], "none"); /* the empty second slot of the base */
	CHECK_STR(s.v[index_of(&s, "--cid") + 1], "77");
	CHECK_STR(s.v[index_of(&s, "--control") + 1], "/run/control");
	CHECK(index_of(&s, "--rng") != SIZE_MAX);
	msb_strv_clear(&s);

	/* the base VM itself: both slots empty, booted with its shape */
	struct sandbox_vmm_args b = {.parts = &p,
				     .disks = 2,
				     .guest_cmdline = "msb.hostname=base",
				     .vsock_path = "/run/vsock",
				     .cpus = 1,
				     .memory_mib = 512};
	CHECK_INT(sandbox_vmm_argv(&b, &s, &err), ==, 0);
	size_t k = index_of(&s, "--disk");
	CHECK_STR(s.v[k + 1], "none");
	CHECK_STR(s.v[k + 2], "--disk");
	CHECK_STR(s.v[k + 3], "none");
	CHECK_STR(s.v[index_of(&s, "--memory") + 1], "512");
	CHECK(index_of(&s, "--cid") == SIZE_MAX);
	CHECK(index_of(&s, "--control") == SIZE_MAX);
	msb_strv_clear(&s);
}

TEST(control_replies)
{
	struct msb_err err = {0};
	CHECK_INT(sandbox_vmm_reply_parse("OK", &err), ==, 0);
	CHECK_INT(sandbox_vmm_reply_parse("OK running", &err), ==, 0);
	CHECK_INT(sandbox_vmm_reply_parse("ERR no space left", &err), ==, -1);
	CHECK(strstr(err.msg, "no space left") != NULL);
	CHECK_INT(sandbox_vmm_reply_parse("OKAY", &err), ==, -1);
	CHECK_INT(sandbox_vmm_reply_parse("", &err), ==, -1);
	CHECK_INT(sandbox_vmm_reply_parse("ERR", &err), ==, -1);
}

struct fake_vmm {
	int lfd;
	char got[256];
	const char *answer;
};

static void *fake_vmm_serve(void *arg)
{
	struct fake_vmm *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	if (c < 0)
		return NULL;
	ssize_t n = read(c, f->got, sizeof(f->got) - 1);
	f->got[n > 0 ? n : 0] = '\0';
	if (f->answer && write(c, f->answer, strlen(f->answer)) < 0)
		f->got[0] = '!';
	close(c);
	return NULL;
}

TEST(control_socket_talks_lines)
{
	struct msb_err err = {0};
	char dir[] = "/tmp/msb-snaptest-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/control", dir);
	const char *answers[] = {"OK paused\n", "ERR cannot write /x: No space\n", "", NULL};
	for (size_t i = 0; answers[i]; i++) {
		struct fake_vmm f = {.lfd = test_unix_listen(sock, 1), .answer = answers[i]};
		CHECK(f.lfd >= 0);
		pthread_t th;
		CHECK_INT(pthread_create(&th, NULL, fake_vmm_serve, &f), ==, 0);
		char reply[64] = "";
		int r = sandbox_vmm_control(sock, "snapshot /d", reply, sizeof(reply), 5000, &err);
		pthread_join(th, NULL);
		close(f.lfd);
		unlink(sock);
		CHECK_STR(f.got, "snapshot /d\n");
		if (i == 0) {
			CHECK_INT(r, ==, 0);
			CHECK_STR(reply, "OK paused");
		} else if (i == 1) {
			CHECK_INT(r, ==, -1);
			CHECK(strstr(err.msg, "No space") != NULL);
		} else {
			CHECK_INT(r, ==, -1);
			CHECK(strstr(err.msg, "without answering") != NULL);
		}
	}
	/* nobody listening: kind state (the sandbox is not running) */
	CHECK_INT(sandbox_vmm_control(sock, "status", NULL, 0, 1000, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	rmdir(dir);
}

/* The base's parked agent connection goes through agent/client.c's handshake
 * with PARK for CONNECT: what follows "OK <n>" is the guest's stream. */
TEST(park_connection_handshake)
{
	struct msb_err err = {0};
	char dir[] = "/tmp/msb-snaptest-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/vsock", dir);
	const char *answers[] = {"OK 7\nAGENT", "", NULL};
	for (size_t i = 0; answers[i]; i++) {
		struct fake_vmm f = {.lfd = test_unix_listen(sock, 1), .answer = answers[i]};
		CHECK(f.lfd >= 0);
		pthread_t th;
		CHECK_INT(pthread_create(&th, NULL, fake_vmm_serve, &f), ==, 0);
		int fd = sandbox_park_connection(sock, 5000, &err);
		char rest[16] = "";
		if (fd >= 0) {
			ssize_t n = read(fd, rest, sizeof(rest) - 1);
			rest[n > 0 ? n : 0] = '\0';
			close(fd);
		}
		pthread_join(th, NULL);
		close(f.lfd);
		unlink(sock);
		CHECK_STR(f.got, "PARK 1024\n");
		if (i == 0) {
			CHECK(fd >= 0);
			CHECK_STR(rest, "AGENT");
		} else {
			CHECK_INT(fd, ==, -1);
			CHECK(strstr(err.msg, "does not accept") != NULL);
		}
	}
	rmdir(dir);
}

TEST(copy_keeps_data_and_holes)
{
	struct msb_err err = {0};
	char dir[] = "/tmp/msb-snaptest-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char src[128], dst[128];
	snprintf(src, sizeof(src), "%s/rw.ext4", dir);
	snprintf(dst, sizeof(dst), "%s/copy.ext4", dir);
	int fd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	const off_t size = 64 << 20;
	CHECK_INT(ftruncate(fd, size), ==, 0);
	CHECK(pwrite(fd, "head", 4, 0) == 4);
	CHECK(pwrite(fd, "middle", 6, 20 << 20) == 6);
	CHECK(pwrite(fd, "tail", 4, size - 4) == 4);
	close(fd);
	const char *how = NULL;
	CHECK_INT(sandbox_copy_file(src, dst, &how, &err), ==, 0);
	CHECK(how != NULL);
	struct stat st;
	CHECK_INT(stat(dst, &st), ==, 0);
	CHECK_INT(st.st_size, ==, size);
	CHECK_INT(st.st_mode & 0777, ==, 0600);
	/* sparse: far less allocated than the apparent size */
	CHECK_INT((long long)st.st_blocks * 512, <, 8 << 20);
	fd = open(dst, O_RDONLY);
	char b[8] = "";
	CHECK(pread(fd, b, 4, 0) == 4 && memcmp(b, "head", 4) == 0);
	CHECK(pread(fd, b, 6, 20 << 20) == 6 && memcmp(b, "middle", 6) == 0);
	CHECK(pread(fd, b, 4, size - 4) == 4 && memcmp(b, "tail", 4) == 0);
	CHECK(pread(fd, b, 4, 10 << 20) == 4 && memcmp(b, "\0\0\0\0", 4) == 0);
	close(fd);
	/* an existing target is never overwritten */
	CHECK_INT(sandbox_copy_file(src, dst, &how, &err), ==, -1);
	unlink(src);
	unlink(dst);
	rmdir(dir);
}

TEST(user_snapshot_open_errors)
{
	struct msb_err err = {0};
	char home[] = "/tmp/msb-snaptest-XXXXXX";
	CHECK(mkdtemp(home) != NULL);
	setenv("MICROSANDBOX_HOME", home, 1);
	char *dir = NULL;
	struct sandbox_snapmeta m;
	CHECK_INT(sandbox_user_snapshot_open("nope", &dir, &m, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "msb snapshot ls") != NULL);
	CHECK_INT(sandbox_user_snapshot_open("../x", &dir, &m, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	/* a directory with garbage for metadata */
	char p[256];
	snprintf(p, sizeof(p), "%s/snapshots/user/bad", home);
	CHECK_INT(msb_mkdir_p(p, 0700, &err), ==, 0);
	snprintf(p, sizeof(p), "%s/snapshots/user/bad/meta", home);
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0 && write(fd, "garbage", 7) == 7);
	close(fd);
	CHECK_INT(sandbox_user_snapshot_open("bad", &dir, &m, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	CHECK(strstr(err.msg, "msb snapshot rm bad") != NULL);
	CHECK_INT(msb_remove_tree(home, &err), ==, 0);
	unsetenv("MICROSANDBOX_HOME");
}

static int parse(enum sandbox_cli_kind k, struct sandbox_cli_args *a, struct msb_err *err, ...)
{
	char *argv[16];
	int argc = 0;
	va_list ap;
	va_start(ap, err);
	for (char *s; argc < 15 && (s = va_arg(ap, char *));)
		argv[argc++] = s;
	va_end(ap);
	argv[argc] = NULL;
	return sandbox_cli_parse(k, argc, argv, a, err);
}

TEST(snapshot_and_cold_options)
{
	struct msb_err err = {0};
	struct sandbox_cli_args a;
	CHECK_INT(parse(SANDBOX_CLI_EXE, &a, &err, "exe", "--snapshot", "s1", "-e", "ls", NULL), ==,
		  0);
	CHECK_STR(a.snapshot, "s1");
	CHECK_STR(a.target, "s1");
	CHECK(!a.cold);
	sandbox_cli_args_clear(&a);
	CHECK_INT(parse(SANDBOX_CLI_EXE, &a, &err, "exe", "--cold", "busybox", NULL), ==, 0);
	CHECK(a.cold);
	CHECK_STR(a.target, "busybox");
	sandbox_cli_args_clear(&a);
	CHECK_INT(parse(SANDBOX_CLI_RUN, &a, &err, "run", "app", "--snapshot=s2", NULL), ==, 0);
	CHECK_STR(a.target, "app");
	CHECK_STR(a.snapshot, "s2");
	sandbox_cli_args_clear(&a);
	/* the snapshot fixes image and shape; --cold contradicts it */
	CHECK_INT(parse(SANDBOX_CLI_EXE, &a, &err, "exe", "--snapshot", "s1", "busybox", NULL), ==,
		  -1);
	CHECK(strstr(err.msg, "fixes the image") != NULL);
	CHECK_INT(
		parse(SANDBOX_CLI_EXE, &a, &err, "exe", "--snapshot", "s1", "--memory", "64", NULL),
		==, -1);
	CHECK_INT(parse(SANDBOX_CLI_RUN, &a, &err, "run", "app", "--snapshot", "s", "--cold", NULL),
		  ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK_INT(parse(SANDBOX_CLI_EXE, &a, &err, "exe", "--snapshot", NULL), ==, -1);
}

TEST_MAIN(T(meta_round_trip), T(meta_unknown_keys_and_comments_are_ignored),
	  T(meta_hostile_input_is_refused), T(meta_format_refuses_newlines),
	  T(meta_file_write_read), T(snapshot_names), T(base_key_changes_with_what_makes_it_valid),
	  T(base_key_of_real_files), T(vmm_argv_for_a_restore), T(control_replies),
	  T(control_socket_talks_lines), T(park_connection_handshake), T(copy_keeps_data_and_holes),
	  T(user_snapshot_open_errors), T(snapshot_and_cold_options))
