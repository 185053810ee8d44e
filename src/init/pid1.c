#include "init/pid1.h"

#include <arpa/inet.h>
#include <linux/fs.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

/* Where the layers live inside the initramfs (hidden once we switch). */
#define LOWER_DIR   "/mnt/lower"
#define RW_DIR	    "/mnt/rw"
#define NEWROOT_DIR "/mnt/root"

void pid1_record(struct pid1 *p, const struct msb_err *e)
{
	fprintf(stderr, "msb-init: error: %s\n", e->msg);
	if (p->nerrors < (int)MSB_ARRAY_SIZE(p->errors))
		p->errors[p->nerrors++] = *e;
}

static int mkdir_p1(const char *path, mode_t mode, struct msb_err *err)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return msb_err_sys(err, "mkdir %s", path);
	return 0;
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
		    const char *data, struct msb_err *err)
{
	if (mkdir_p1(dst, 0755, err) < 0)
		return -1;
	if (mount(src, dst, type, flags, data) < 0)
		return msb_err_sys(err, "mounting %s (%s) on %s", src, type ? type : "-", dst);
	return 0;
}

static void console_fds(void)
{
	/* The kernel gives init /dev/console only if the initramfs has the node;
	 * ours has none, so open it from devtmpfs. */
	if (fcntl(1, F_GETFD) >= 0 && fcntl(2, F_GETFD) >= 0)
		return;
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd < 0)
		return; /* nowhere to report this to */
	for (int i = 0; i < 3; i++)
		if (fcntl(i, F_GETFD) < 0)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

void pid1_early(struct pid1 *p)
{
	struct msb_err err;
	static const struct {
		const char *src, *dst, *type;
		unsigned long flags;
		const char *data;
	} mounts[] = {
		{"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
		{"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
		{"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
		{"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666"},
		{"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
	};
	/* devtmpfs has device nodes only; programs expect these links too
	 * (`tee /dev/stderr`, bash's process substitution through /dev/fd). */
	static const char *const links[][2] = {
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
	};
	p->old_root_fd = -1;
	for (size_t i = 0; i < MSB_ARRAY_SIZE(mounts); i++) {
		if (do_mount(mounts[i].src, mounts[i].dst, mounts[i].type, mounts[i].flags,
			     mounts[i].data, &err) < 0)
			pid1_record(p, &err);
		if (i == 0)
			console_fds();
	}
	for (size_t i = 0; i < MSB_ARRAY_SIZE(links); i++) {
		if (symlink(links[i][0], links[i][1]) < 0 && errno != EEXIST) {
			msb_err_sys(&err, "linking %s to %s", links[i][1], links[i][0]);
			pid1_record(p, &err);
		}
	}
}

int pid1_read_cmdline(struct init_cmdline *cl, struct msb_err *err)
{
	char buf[4096];
	_cleanup_close_ int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening /proc/cmdline");
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		return msb_err_sys(err, "reading /proc/cmdline");
	buf[n] = '\0';
	return init_parse_cmdline(buf, cl, err);
}

/* The image's read-ahead, in 512-byte sectors: 32 KiB instead of the
 * virtio-blk default of 128 KiB.  A command's start faults in scattered pages
 * of its binary and each fault read 128 KiB around it: `true` from a static
 * busybox filled 394 pages (1.5 MiB) of page cache, and every page costs guest
 * kernel work (allocation, page cache, memory cgroup, I/O: ~2,600 emulated
 * instructions each on PVM).  Measured (docs/benchmarks.md, bench/exec):
 * busybox `true` 0.6 s faster, python's start (dense faults in libpython)
 * unchanged; 16 KiB was faster still for busybox but cost python 3-4 s.
 * read() of a whole file stays one request of its size. */
#define ROOT_READAHEAD_SECTORS 64

static void limit_readahead(const char *dev)
{
	_cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, BLKRASET, (unsigned long)ROOT_READAHEAD_SECTORS) < 0)
		fprintf(stderr, "msb-init: setting the read-ahead of %s: %s\n", dev,
			strerror(errno));
}

static int mount_lower(const struct init_cmdline *cl, struct msb_err *err)
{
	static const char *const types[] = {"erofs", "ext4"};
	if (mkdir_p1(LOWER_DIR, 0755, err) < 0)
		return -1;
	limit_readahead(cl->root);
	int last = 0;
	for (size_t i = 0; i < MSB_ARRAY_SIZE(types); i++) {
		if (cl->rootfstype[0] && strcmp(cl->rootfstype, types[i]) != 0)
			continue;
		if (mount(cl->root, LOWER_DIR, types[i], MS_RDONLY, NULL) == 0)
			return 0;
		last = errno;
	}
	errno = last;
	return msb_err_sys(err, "mounting the root image %s (%s) read-only", cl->root,
			   cl->rootfstype[0] ? cl->rootfstype : "erofs or ext4");
}

int pid1_mount_root(struct pid1 *p, const struct init_cmdline *cl, struct msb_err *err)
{
	if (!cl->root[0])
		return 0;
	if (mkdir_p1("/mnt", 0755, err) < 0 || mount_lower(cl, err) < 0)
		return -1;
	if (!cl->overlay[0] || strcmp(cl->overlay, "tmpfs") == 0) {
		if (do_mount("overlay-rw", RW_DIR, "tmpfs", MS_NOSUID, "mode=0755", err) < 0)
			goto undo_lower;
	} else if (do_mount(cl->overlay, RW_DIR, "ext4", MS_NOSUID, NULL, err) < 0) {
		msb_err_wrap(err, "mounting the writable layer");
		goto undo_lower;
	}
	if (mkdir_p1(RW_DIR "/upper", 0755, err) < 0 || mkdir_p1(RW_DIR "/work", 0755, err) < 0 ||
	    do_mount("overlay", NEWROOT_DIR, "overlay", 0,
		     "lowerdir=" LOWER_DIR ",upperdir=" RW_DIR "/upper,workdir=" RW_DIR "/work",
		     err) < 0)
		goto undo_rw;
	/* Move the API filesystems along (their submounts go with them).  From
	 * here on a failure cannot be undone: the layers are in use. */
	p->moved = true;
	static const char *const moves[] = {"/dev", "/proc", "/sys"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(moves); i++) {
		char dst[64];
		snprintf(dst, sizeof(dst), NEWROOT_DIR "%s", moves[i]);
		if (do_mount(moves[i], dst, NULL, MS_MOVE, NULL, err) < 0)
			pid1_record(p, err);
	}
	/* The initramfs (rootfs) cannot be pivot_root()ed away: move the new root
	 * over it and chroot, as switch_root does.  Keep a handle on the old root
	 * so that power-off can unmount the layers in order. */
	p->old_root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (p->old_root_fd < 0)
		return msb_err_sys(err, "opening the initramfs root");
	if (chdir(NEWROOT_DIR) < 0)
		return msb_err_sys(err, "chdir " NEWROOT_DIR);
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		return msb_err_sys(err, "moving the new root over /");
	if (chroot(".") < 0 || chdir("/") < 0)
		return msb_err_sys(err, "chroot into the new root");
	p->switched = true;
	struct msb_err e2;
	if (mkdir_p1("/tmp", 01777, &e2) < 0)
		pid1_record(p, &e2);
	return 0;
	/* Nothing is in use yet: leave the initramfs as it was, so that the root
	 * can be set up again (SETUP after a boot whose msb.root failed). */
undo_rw:
	umount2(RW_DIR, MNT_DETACH);
undo_lower:
	umount2(LOWER_DIR, MNT_DETACH);
	return -1;
}

int pid1_loopback_up(struct msb_err *err)
{
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return msb_err_sys(err, "socket for configuring lo");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ioctl(fd, SIOCSIFADDR, &ifr) < 0)
		return msb_err_sys(err, "setting 127.0.0.1 on lo");
	sin->sin_addr.s_addr = htonl(0xff000000u);
	if (ioctl(fd, SIOCSIFNETMASK, &ifr) < 0)
		return msb_err_sys(err, "setting the netmask of lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return msb_err_sys(err, "reading the flags of lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return msb_err_sys(err, "bringing lo up");
	return 0;
}

static void reap_all(int ms)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	for (int waited = 0; waited < ms; waited += 10) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (kill(-1, 0) < 0 && errno == ESRCH)
			return; /* nobody left */
		nanosleep(&ts, NULL);
	}
}

/* Unmount everything below / in reverse mount order, as seen in /proc/self/mounts. */
static void unmount_all(void)
{
	char paths[64][128];
	int n = 0;
	FILE *f = fopen("/proc/self/mounts", "re");
	if (!f) {
		perror("msb-init: reading /proc/self/mounts");
		return;
	}
	char line[512];
	while (n < 64 && fgets(line, sizeof(line), f)) {
		char dev[128], dir[128];
		if (sscanf(line, "%127s %127s", dev, dir) == 2 && strcmp(dir, "/") != 0)
			snprintf(paths[n++], sizeof(paths[0]), "%s", dir);
	}
	fclose(f);
	for (int i = n - 1; i >= 0; i--)
		if (umount2(paths[i], 0) < 0 && umount2(paths[i], MNT_DETACH) < 0)
			fprintf(stderr, "msb-init: unmounting %s: %s\n", paths[i], strerror(errno));
}

void pid1_power_off(struct pid1 *p)
{
	fprintf(stderr, "msb-init: powering off\n");
	kill(-1, SIGTERM);
	reap_all(500);
	kill(-1, SIGKILL);
	reap_all(2000);
	sync();
	unmount_all();
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
		perror("msb-init: remounting / read-only");
	/* The overlay now sits on "/" above the initramfs, where no path names
	 * it.  Back in the initramfs root, the writable layer is reachable: make
	 * its superblock read-only (that flushes and marks ext4 clean even while
	 * the overlay still holds it), then detach both layers. */
	if (p->switched && p->old_root_fd >= 0 && fchdir(p->old_root_fd) == 0 && chroot(".") == 0) {
		if (mount(NULL, RW_DIR, NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
			fprintf(stderr, "msb-init: remounting the writable layer read-only: %s\n",
				strerror(errno));
		static const char *const layers[] = {RW_DIR, LOWER_DIR};
		for (size_t i = 0; i < MSB_ARRAY_SIZE(layers); i++)
			if (umount2(layers[i], MNT_DETACH) < 0)
				fprintf(stderr, "msb-init: unmounting %s: %s\n", layers[i],
					strerror(errno));
	}
	sync();
	/* Needs CONFIG_X86_IOPL_IOPERM in the guest kernel; without it msb-vmm
	 * only sees the reset below and reports a crash (docs/agent-protocol.md). */
	if (ioperm(PID1_POWER_PORT, 1, 1) == 0)
		outb(0, PID1_POWER_PORT);
	else
		perror("msb-init: ioperm for the power port");
	reboot(RB_AUTOBOOT);
	/* reboot() returning means we are not allowed to: nothing else to do. */
	perror("msb-init: reboot");
	for (;;)
		pause();
}
