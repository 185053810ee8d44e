/* The pure parts of starting a sandbox: msb-init's command line, msb-vmm's
 * argv, image defaults and environment merging, the exe/run command lines,
 * finding the VM's files, the /dev/kvm check and the writable disk. */
#include "test.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/paths.h"
#include "project/exec.h"
#include "project/menv.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"

TEST(guest_cmdline_tmpfs_and_disk)
{
	struct msb_err err = {0};
	_cleanup_free_ char *a = sandbox_guest_cmdline("ext4", false, "tmp", &err);
	CHECK_STR(a, "msb.root=/dev/vda msb.rootfstype=ext4 msb.overlay=tmpfs msb.hostname=tmp");
	_cleanup_free_ char *b = sandbox_guest_cmdline("erofs", true, "web.1", &err);
	CHECK_STR(b,
		  "msb.root=/dev/vda msb.rootfstype=erofs msb.overlay=/dev/vdb msb.hostname=web.1");
}

TEST(guest_cmdline_hostname_is_made_valid)
{
	struct msb_err err = {0};
	_cleanup_free_ char *a = sandbox_guest_cmdline("ext4", false, "my_app x", &err);
	CHECK(strstr(a, "msb.hostname=my-app-x") != NULL);
	_cleanup_free_ char *b = sandbox_guest_cmdline("ext4", false, "", &err);
	CHECK(strstr(b, "msb.hostname=sandbox") != NULL);
	char longname[200];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	_cleanup_free_ char *c = sandbox_guest_cmdline("ext4", false, longname, &err);
	const char *h = strstr(c, "msb.hostname=") + strlen("msb.hostname=");
	CHECK_INT(strlen(h), ==, 63);
}

TEST(guest_cmdline_refuses_unknown_format)
{
	struct msb_err err = {0};
	CHECK(sandbox_guest_cmdline("squashfs", false, "x", &err) == NULL);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	CHECK(strstr(err.msg, "squashfs") != NULL);
	CHECK(sandbox_guest_cmdline(NULL, false, "x", &err) == NULL);
}

static size_t index_of(const struct msb_strv *s, const char *what)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], what) == 0)
			return i;
	return SIZE_MAX;
}

TEST(vmm_argv_has_disks_in_guest_order)
{
	struct msb_err err = {0};
	struct sandbox_parts parts = {.kernel = "/k/vmlinux",
				      .initrd = "/b/initramfs.cpio",
				      .vmm = "/b/bin/msb-vmm",
				      .base_cmdline = "console=hvc0 quiet"};
	struct sandbox_vmm_args a = {.parts = &parts,
				     .rootfs_path = "/s/root.img",
				     .rw_disk = "/p/.menv/rw/Sandboxfile/app/rw.ext4",
				     .guest_cmdline = "msb.root=/dev/vda",
				     .vsock_path = "/run/x/vsock",
				     .console = "/run/x/console.log",
				     .cpus = 2,
				     .memory_mib = 512};
	struct msb_strv s = {0};
	CHECK_INT(sandbox_vmm_argv(&a, &s, &err), ==, 0);
	CHECK_STR(s.v[0], "/b/bin/msb-vmm");
	CHECK(s.v[s.n] == NULL);
	size_t k = index_of(&s, "--kernel"), c = index_of(&s, "--cpus"),
	       m = index_of(&s, "--memory"), b = index_of(&s, "--base-cmdline"),
	       v = index_of(&s, "--vsock"), con = index_of(&s, "--console");
	CHECK(k != SIZE_MAX && c != SIZE_MAX && m != SIZE_MAX && b != SIZE_MAX);
	CHECK_STR(s.v[k + 1], "/k/vmlinux");
	CHECK_STR(s.v[c + 1], "2");
	CHECK_STR(s.v[m + 1], "512");
	CHECK_STR(s.v[b + 1], "console=hvc0 quiet");
	CHECK_STR(s.v[v + 1], "/run/x/vsock");
	CHECK_STR(s.v[con + 1], "/run/x/console.log");
	/* the image read-only first (/dev/vda), then the writable disk (/dev/vdb) */
	size_t d1 = index_of(&s, "--disk");
	CHECK(d1 != SIZE_MAX);
	CHECK_STR(s.v[d1 + 1], "/s/root.img,ro");
	CHECK_STR(s.v[d1 + 2], "--disk");
	CHECK_STR(s.v[d1 + 3], "/p/.menv/rw/Sandboxfile/app/rw.ext4");
	CHECK(index_of(&s, "--rng") != SIZE_MAX);
	msb_strv_clear(&s);

	/* tmpfs layer, no base command line, defaults */
	parts.base_cmdline = NULL;
	a.rw_disk = NULL;
	a.cpus = 0;
	a.memory_mib = 0;
	a.console = NULL;
	CHECK_INT(sandbox_vmm_argv(&a, &s, &err), ==, 0);
	CHECK(index_of(&s, "--base-cmdline") == SIZE_MAX);
	CHECK(index_of(&s, "--console") == SIZE_MAX);
	size_t n_disks = 0;
	for (size_t i = 0; i < s.n; i++)
		n_disks += strcmp(s.v[i], "--disk") == 0;
	CHECK_INT(n_disks, ==, 1);
	CHECK_STR(s.v[index_of(&s, "--cpus") + 1], "1");
	CHECK_STR(s.v[index_of(&s, "--memory") + 1], "1024");
	msb_strv_clear(&s);
}

TEST(env_image_first_then_sandbox)
{
	struct msb_err err = {0};
	const char *image[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "BROKEN", NULL};
	const char *over[] = {"LANG=de_DE.UTF-8", "DEBUG=1", "=nope", "X=a=b", NULL};
	struct msb_strv out = {0};
	CHECK_INT(sandbox_merge_env(image, over, &out, &err), ==, 0);
	CHECK_INT(out.n, ==, 4);
	CHECK_STR(out.v[0], "PATH=/usr/bin:/bin");
	CHECK_STR(out.v[1], "LANG=de_DE.UTF-8");
	CHECK_STR(out.v[2], "DEBUG=1");
	CHECK_STR(out.v[3], "X=a=b");
	CHECK(out.v[4] == NULL);
	msb_strv_clear(&out);
	/* nothing at all: still a NULL-terminated array */
	CHECK_INT(sandbox_merge_env(NULL, NULL, &out, &err), ==, 0);
	CHECK(out.v != NULL && out.v[0] == NULL && out.n == 0);
	msb_strv_clear(&out);
}

TEST(image_defaults_command_and_workdir)
{
	struct msb_err err = {0};
	char *ep[] = {"/docker-entrypoint.sh", NULL};
	char *cmd[] = {"python3", "-i", NULL};
	struct oci_image_config cfg = {.entrypoint = ep, .cmd = cmd, .working_dir = "/app"};
	struct msb_sandbox sb = {0};
	CHECK_INT(sandbox_apply_image_defaults(&sb, &cfg, &err), ==, 0);
	CHECK_INT(sb.command.n, ==, 3);
	CHECK_STR(sb.command.v[0], "/docker-entrypoint.sh");
	CHECK_STR(sb.command.v[2], "-i");
	CHECK_STR(sb.workdir, "/app");
	/* what the sandbox says wins */
	msb_strv_clear(&sb.command);
	msb_strv_push(&sb.command, "node", &err);
	free(sb.workdir);
	sb.workdir = strdup("/srv");
	CHECK_INT(sandbox_apply_image_defaults(&sb, &cfg, &err), ==, 0);
	CHECK_INT(sb.command.n, ==, 1);
	CHECK_STR(sb.workdir, "/srv");
	msb_strv_clear(&sb.command);
	free(sb.workdir);
	sb.workdir = NULL;
	/* Cmd only */
	cfg.entrypoint = NULL;
	cfg.working_dir = NULL;
	CHECK_INT(sandbox_apply_image_defaults(&sb, &cfg, &err), ==, 0);
	CHECK_INT(sb.command.n, ==, 2);
	CHECK_STR(sb.command.v[0], "python3");
	CHECK(sb.workdir == NULL);
	msb_strv_clear(&sb.command);
}

TEST(exe_plan_follows_upstream_order)
{
	struct msb_err err = {0};
	char *cmd[] = {"/usr/bin/python3", NULL};
	char *envs[] = {NULL};
	struct oci_image_config cfg = {.cmd = cmd, .env = envs};
	struct sandbox_cli_args a = {.workdir = "/w"};
	struct msb_sandbox sb;
	CHECK_INT(sandbox_cli_exe_sandbox("microsandbox/python", &cfg, &a, &sb, &err), ==, 0);
	CHECK_STR(sb.workdir, "/w");
	struct msb_exec_plan plan = {0};
	/* ARGS replace the default command's arguments */
	char *args[] = {"-c", "print(1)", NULL};
	CHECK_INT(msb_exec_resolve(&sb, NULL, NULL, args, 2, &plan, &err), ==, 0);
	CHECK_INT(plan.argc, ==, 3);
	CHECK_STR(plan.argv[0], "/usr/bin/python3");
	CHECK_STR(plan.argv[1], "-c");
	msb_exec_plan_clear(&plan);
	/* --exec with ARGS */
	CHECK_INT(msb_exec_resolve(&sb, NULL, "python3", args, 2, &plan, &err), ==, 0);
	CHECK_STR(plan.argv[0], "python3");
	CHECK_STR(plan.argv[2], "print(1)");
	msb_exec_plan_clear(&plan);
	/* ~shell: the default shell */
	CHECK_INT(msb_exec_resolve(&sb, "shell", NULL, NULL, 0, &plan, &err), ==, 0);
	CHECK_STR(plan.argv[0], "/bin/sh");
	msb_exec_plan_clear(&plan);
	sandbox_cli_exe_sandbox_clear(&sb);
}

static int parse(enum sandbox_cli_kind k, struct sandbox_cli_args *a, struct msb_err *err, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	va_start(ap, err);
	for (char *s; (s = va_arg(ap, char *)) && argc < 31;)
		argv[argc++] = s;
	va_end(ap);
	argv[argc] = NULL;
	return sandbox_cli_parse(k, argc, argv, a, err);
}

TEST(exe_command_line)
{
	struct msb_err err = {0};
	struct sandbox_cli_args a;
	CHECK_INT(parse(SANDBOX_CLI_EXE, &a, &err, "exe", "--cpus", "2", "--memory=512", "--env",
			"A=1", "--env=B=", "--workdir", "/tmp", "-e", "python3", "python", "--",
			"-c", "print(1)", "--cpus", NULL),
		  ==, 0);
	CHECK_STR(a.target, "python");
	CHECK_INT(a.cpus, ==, 2);
	CHECK_INT(a.memory_mib, ==, 512);
	CHECK_INT(a.envs.n, ==, 2);
	CHECK_STR(a.envs.v[1], "B=");
	CHECK_STR(a.workdir, "/tmp");
	CHECK_STR(a.exec, "python3");
	CHECK_INT(a.nargs, ==, 3);
	CHECK_STR(a.args[2], "--cpus"); /* after -- nothing is an option */
	CHECK(a.script == NULL && a.unsupported == NULL);
	sandbox_cli_args_clear(&a);

	CHECK_INT(
		parse(SANDBOX_CLI_EXE, &a, &err, "x", "--image", "localhost:5000/py:3~shell", NULL),
		==, 0);
	CHECK_STR(a.target, "localhost:5000/py:3");
	CHECK_STR(a.script, "shell");
	CHECK_INT(a.nargs, ==, 0);
	sandbox_cli_args_clear(&a);

	CHECK_INT(parse(SANDBOX_CLI_EXE, &a, &err, "exe", "--help", NULL), ==, 0);
	CHECK(a.help);
}

TEST(exe_command_line_refusals)
{
	struct msb_err err = {0};
	struct sandbox_cli_args a;
	struct {
		const char *args[6];
		const char *says;
	} bad[] = {
		{{"exe", NULL}, "no image"},
		{{"exe", "--bogus", "img", NULL}, "unknown option '--bogus'"},
		{{"exe", "img", "other", NULL}, "unexpected argument 'other'"},
		{{"exe", "--cpus", "0", "img", NULL}, "--cpus"},
		{{"exe", "--cpus", "256", "img", NULL}, "--cpus"},
		{{"exe", "--memory", "12x", "img", NULL}, "--memory"},
		{{"exe", "--env", "NOEQUALS", "img", NULL}, "NAME=VALUE"},
		{{"exe", "--workdir", "rel", "img", NULL}, "absolute"},
		{{"exe", "-v", "a:b", "img", NULL}, "absolute"},
		{{"exe", "-p", "99999:1", "img", NULL}, "--port"},
		{{"exe", "--scope", "galaxy", "img", NULL}, "none, group, public or any"},
		{{"exe", "img~", NULL}, "NAME~SCRIPT"},
		{{"exe", "img~s", "-e", "ls", NULL}, "not both"},
		{{"exe", "--cpus", NULL}, "--cpus"},
		{{"run", "-f", NULL}, "--file needs a value"},
	};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(bad); i++) {
		int argc = 0;
		while (bad[i].args[argc])
			argc++;
		enum sandbox_cli_kind k =
			strcmp(bad[i].args[0], "run") == 0 ? SANDBOX_CLI_RUN : SANDBOX_CLI_EXE;
		memset(&err, 0, sizeof(err));
		if (sandbox_cli_parse(k, argc, (char **)bad[i].args, &a, &err) != -1)
			TEST_FAIL("case %zu (%s) was accepted", i, bad[i].says);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
		if (!strstr(err.msg, bad[i].says))
			TEST_FAIL("case %zu: '%s' does not say '%s'", i, err.msg, bad[i].says);
	}
	/* -v: checked at once (the host directory exists), kept for the start */
	const char *v[] = {"exe", "-v", "/:/d:ro", "-p", "8080:80", "img", NULL};
	CHECK_INT(sandbox_cli_parse(SANDBOX_CLI_EXE, 6, (char **)v, &a, &err), ==, 0);
	CHECK_INT(a.volumes.n, ==, 1);
	CHECK_STR(a.volumes.v[0].host, "/");
	CHECK_STR(a.volumes.v[0].guest, "/d");
	CHECK(a.volumes.v[0].readonly);
	sandbox_cli_args_clear(&a);
	const char *v2[] = {"exe", "-v", "/nonexistent-msb-dir:/d", "img", NULL};
	CHECK_INT(sandbox_cli_parse(SANDBOX_CLI_EXE, 4, (char **)v2, &a, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	/* exe-only options are unknown to run */
	const char *r[] = {"run", "--cpus", "2", "app", NULL};
	CHECK_INT(sandbox_cli_parse(SANDBOX_CLI_RUN, 4, (char **)r, &a, &err), ==, -1);
	const char *r2[] = {"run", "-f", "proj", "app~build", "--", "x", NULL};
	CHECK_INT(sandbox_cli_parse(SANDBOX_CLI_RUN, 6, (char **)r2, &a, &err), ==, 0);
	CHECK_STR(a.file, "proj");
	CHECK_STR(a.target, "app");
	CHECK_STR(a.script, "build");
	CHECK_INT(a.nargs, ==, 1);
	sandbox_cli_args_clear(&a);
}

static void touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	if (fd >= 0)
		close(fd);
}

TEST(parts_found_in_the_build_tree_layout)
{
	char top[] = "/tmp/msb-test-parts-XXXXXX";
	CHECK(mkdtemp(top) != NULL);
	char p[512];
	snprintf(p, sizeof(p), "%s/build/release/bin", top);
	struct msb_err err = {0};
	CHECK_INT(msb_mkdir_p(p, 0755, &err), ==, 0);
	snprintf(p, sizeof(p), "%s/build/kernel", top);
	CHECK_INT(msb_mkdir_p(p, 0755, &err), ==, 0);
	char exe[512], vmm[512], initrd[512], kernel[512], cmdline[512];
	snprintf(exe, sizeof(exe), "%s/build/release/bin/msb", top);
	snprintf(vmm, sizeof(vmm), "%s/build/release/bin/msb-vmm", top);
	snprintf(initrd, sizeof(initrd), "%s/build/release/initramfs.cpio", top);
	snprintf(kernel, sizeof(kernel), "%s/build/kernel/vmlinux", top);
	snprintf(cmdline, sizeof(cmdline), "%s/build/kernel/cmdline.txt", top);
	touch(exe);
	touch(vmm);
	touch(initrd);
	unsetenv("MSB_KERNEL");
	unsetenv("MSB_INITRD");
	unsetenv("MSB_VMM");
	setenv("MICROSANDBOX_HOME", top, 1); /* holds no kernel */
	struct sandbox_parts parts;
	/* no kernel yet: the message says how to get one */
	CHECK_INT(sandbox_find_parts(exe, &parts, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "run kernel/build") != NULL);
	touch(kernel);
	FILE *f = fopen(cmdline, "w");
	CHECK(f != NULL);
	fputs("console=hvc0 reboot=k\n", f);
	fclose(f);
	CHECK_INT(sandbox_find_parts(exe, &parts, &err), ==, 0);
	CHECK(strstr(parts.vmm, "/build/release/bin/msb-vmm") != NULL);
	CHECK(strstr(parts.kernel, "/kernel/vmlinux") != NULL);
	CHECK(strstr(parts.initrd, "/initramfs.cpio") != NULL);
	CHECK_STR(parts.base_cmdline, "console=hvc0 reboot=k");
	sandbox_parts_clear(&parts);
	/* overrides win */
	setenv("MSB_INITRD", "/elsewhere/initrd.cpio", 1);
	CHECK_INT(sandbox_find_parts(exe, &parts, &err), ==, -1);
	CHECK(strstr(err.msg, "initramfs") != NULL);
	setenv("MSB_INITRD", initrd, 1);
	CHECK_INT(sandbox_find_parts(exe, &parts, &err), ==, 0);
	sandbox_parts_clear(&parts);
	unsetenv("MSB_INITRD");
	unsetenv("MICROSANDBOX_HOME");
	CHECK_INT(msb_remove_tree(top, &err), ==, 0);
}

TEST(kvm_missing_or_refused)
{
	struct msb_err err = {0};
	setenv("MSB_KVM_DEVICE", "/nonexistent/kvm", 1);
	CHECK_INT(sandbox_check_kvm(&err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_SYSTEM);
	CHECK(strstr(err.msg, "missing") != NULL);
	/* a directory cannot be opened read-write: the "not accessible" message */
	setenv("MSB_KVM_DEVICE", "/", 1);
	CHECK_INT(sandbox_check_kvm(&err), ==, -1);
	CHECK(strstr(err.msg, "cannot be opened") != NULL);
	unsetenv("MSB_KVM_DEVICE");
}

TEST(rw_disk_is_sparse_ext4_made_once)
{
	if (access("/sbin/mkfs.ext4", X_OK) != 0 && access("/usr/sbin/mkfs.ext4", X_OK) != 0)
		TEST_SKIP("mkfs.ext4 is not installed (e2fsprogs)");
	char dir[] = "/tmp/msb-test-rw-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/rw/app/rw.ext4", dir);
	struct msb_err err = {0};
	bool created = false;
	CHECK_INT(sandbox_rw_disk_ensure(path, 256, &created, &err), ==, 0);
	CHECK(created);
	struct stat st;
	CHECK_INT(stat(path, &st), ==, 0);
	CHECK_INT(st.st_size, ==, 256ll << 20);
	CHECK((long long)st.st_blocks * 512 < st.st_size / 4); /* sparse */
	unsigned char magic[2] = {0};
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	CHECK_INT(pread(fd, magic, 2, 1024 + 0x38), ==, 2);
	close(fd);
	CHECK_INT(magic[0], ==, 0x53); /* ext4 superblock magic 0xEF53 */
	CHECK_INT(magic[1], ==, 0xEF);
	/* a second call keeps what is there */
	CHECK_INT(sandbox_rw_disk_ensure(path, 256, &created, &err), ==, 0);
	CHECK(!created);
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	CHECK(access(tmp, F_OK) != 0);
	CHECK_INT(msb_remove_tree(dir, &err), ==, 0);
}

TEST_MAIN(T(guest_cmdline_tmpfs_and_disk), T(guest_cmdline_hostname_is_made_valid),
	  T(guest_cmdline_refuses_unknown_format), T(vmm_argv_has_disks_in_guest_order),
	  T(env_image_first_then_sandbox), T(image_defaults_command_and_workdir),
	  T(exe_plan_follows_upstream_order), T(exe_command_line), T(exe_command_line_refusals),
	  T(parts_found_in_the_build_tree_layout), T(kvm_missing_or_refused),
	  T(rw_disk_is_sparse_ext4_made_once))
