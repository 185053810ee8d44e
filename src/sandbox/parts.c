/* Finding what a VM is made of (kernel, initramfs, msb-vmm), checking /dev/kvm,
 * and creating persistent writable disks. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/paths.h"
#include "sandbox/sandbox.h"

void sandbox_parts_clear(struct sandbox_parts *p)
{
	free(p->kernel);
	free(p->initrd);
	free(p->vmm);
	free(p->base_cmdline);
	memset(p, 0, sizeof(*p));
}

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The first candidate that exists (caller frees), or NULL. */
static char *first_existing(const char *env, const char *const *cands, size_t n)
{
	const char *e = env ? getenv(env) : NULL;
	if (e && *e)
		return strdup(e); /* an override is taken as given; checked by the caller */
	for (size_t i = 0; i < n; i++)
		if (cands[i] && is_file(cands[i]))
			return strdup(cands[i]);
	return NULL;
}

static char *read_line_file(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char buf[4096];
	if (!fgets(buf, sizeof(buf), f))
		return NULL;
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? strdup(buf) : NULL;
}

int sandbox_find_parts(const char *self_exe, struct sandbox_parts *p, struct msb_err *err)
{
	memset(p, 0, sizeof(*p));
	char exe[PATH_MAX] = "";
	if (self_exe) {
		snprintf(exe, sizeof(exe), "%s", self_exe);
	} else {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
	}
	char bindir[PATH_MAX] = ".";
	if (exe[0]) {
		char tmp[PATH_MAX];
		snprintf(tmp, sizeof(tmp), "%s", exe);
		snprintf(bindir, sizeof(bindir), "%s", dirname(tmp));
	}
	char home[PATH_MAX] = "";
	struct msb_err ignored = {0};
	if (msb_home(home, sizeof(home), &ignored) < 0)
		home[0] = '\0';

	char c[3][PATH_MAX + 64];
	/* msb-vmm: next to msb (build tree and install), then the home. */
	snprintf(c[0], sizeof(c[0]), "%s/msb-vmm", bindir);
	snprintf(c[1], sizeof(c[1]), "%s/bin/msb-vmm", home);
	const char *vmm_c[] = {c[0], home[0] ? c[1] : NULL};
	p->vmm = first_existing("MSB_VMM", vmm_c, 2);
	if (!p->vmm || !is_file(p->vmm)) {
		msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			    "msb-vmm not found (looked at $MSB_VMM, %s, %s/bin); run make", c[0],
			    home);
		goto fail;
	}
	snprintf(c[0], sizeof(c[0]), "%s/../initramfs.cpio", bindir);
	snprintf(c[1], sizeof(c[1]), "%s/initramfs.cpio", home);
	const char *initrd_c[] = {c[0], home[0] ? c[1] : NULL};
	p->initrd = first_existing("MSB_INITRD", initrd_c, 2);
	if (!p->initrd || !is_file(p->initrd)) {
		msb_err_set(
			err, MSB_EK_NOT_FOUND, 0,
			"msb-init's initramfs not found (looked at $MSB_INITRD, %s, %s); run make",
			c[0], c[1]);
		goto fail;
	}
	/* build/<BUILD>/bin/msb -> build/kernel/vmlinux */
	snprintf(c[0], sizeof(c[0]), "%s/../../kernel/vmlinux", bindir);
	snprintf(c[1], sizeof(c[1]), "%s/kernel/vmlinux", home);
	const char *kernel_c[] = {c[0], home[0] ? c[1] : NULL};
	p->kernel = first_existing("MSB_KERNEL", kernel_c, 2);
	if (!p->kernel || !is_file(p->kernel)) {
		msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			    "the guest kernel is not built (looked at $MSB_KERNEL, %s, %s); "
			    "run kernel/build",
			    c[0], c[1]);
		goto fail;
	}
	char kdir[PATH_MAX], cmdline[PATH_MAX + 16];
	snprintf(kdir, sizeof(kdir), "%s", p->kernel);
	snprintf(cmdline, sizeof(cmdline), "%s/cmdline.txt", dirname(kdir));
	p->base_cmdline = read_line_file(cmdline); /* NULL: msb-vmm's built-in base */
	return 0;
fail:
	sandbox_parts_clear(p);
	return -1;
}

int sandbox_check_kvm(struct msb_err *err)
{
	const char *dev = getenv("MSB_KVM_DEVICE");
	if (!dev || !*dev)
		dev = "/dev/kvm";
	int fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == ENOENT)
		return msb_err_set(
			err, MSB_EK_SYSTEM, errno,
			"%s is missing: this machine offers no KVM (enable virtualization "
			"in the firmware, load kvm_intel or kvm_amd, or run on a host "
			"with nested virtualization)",
			dev);
	return msb_err_set(err, MSB_EK_SYSTEM, errno,
			   "%s cannot be opened read-write: add your user to the 'kvm' group "
			   "(sudo usermod -aG kvm $USER, then log in again) or run as root",
			   dev);
}

int sandbox_rw_disk_ensure(const char *path, unsigned size_mib, bool *created, struct msb_err *err)
{
	*created = false;
	if (is_file(path))
		return 0;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	if (msb_mkdir_p(dirname(dir), 0755, err) < 0)
		return msb_err_wrap(err, "creating the writable layer's directory");
	/* Built under a temporary name and renamed: a half-made disk never looks done. */
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return msb_err_sys(err, "creating %s", tmp);
	if (ftruncate(fd, (off_t)size_mib << 20) < 0) {
		msb_err_sys(err, "sizing %s", tmp);
		unlink(tmp);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		unlink(tmp);
		return msb_err_sys(err, "fork");
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		/* No lazy init: the guest kernel would zero the tables itself, slowly. */
		execlp("mkfs.ext4", "mkfs.ext4", "-q", "-F", "-E",
		       "lazy_itable_init=0,lazy_journal_init=0", "-L", "msb-rw", tmp, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		unlink(tmp);
		return msb_err_set(err, MSB_EK_SYSTEM, 0,
				   "mkfs.ext4 failed (status %d) making the writable layer %s%s",
				   WIFEXITED(status) ? WEXITSTATUS(status) : -1, path,
				   WIFEXITED(status) && WEXITSTATUS(status) == 127
					   ? "; install e2fsprogs"
					   : "");
	}
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return msb_err_sys(err, "renaming %s", tmp);
	}
	*created = true;
	return 0;
}
