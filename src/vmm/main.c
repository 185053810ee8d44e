/* msb-vmm: boots one microVM and runs it until the guest shuts down.
 * Options in usage() below and in docs/vmm.md. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/log.h"
#include "common/pvm.h"
#include "vmm/boot.h"
#include "vmm/control.h"
#include "vmm/devices.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

/* Used when the caller passes no --base-cmdline (normally the contents of
 * build/kernel/cmdline.txt).  On a PVM host MSB_PVM_CMDLINE follows the base
 * either way (common/pvm.h). */
#define BASE_CMDLINE "reboot=k panic=-1"

struct opts {
	const char *kernel, *initrd, *base_cmdline;
	char *cmdline; /* the --cmdline pieces joined */
	unsigned cpus;
	uint64_t mem_mib;
	struct vmm_devices_config dev;
	const char *console, *serial;
	unsigned shutdown_timeout_s;
	const char *restore, *control;
	bool shape_given; /* --cpus or --memory */
};

static void usage(FILE *f)
{
	struct msb_pvm pvm;
	struct msb_err err = {0};
	char host[MSB_ERR_MSG_MAX + 64];
	if (msb_pvm_host(&pvm, &err) < 0)
		snprintf(host, sizeof(host), "unknown: %s", err.msg);
	else
		snprintf(host, sizeof(host), "%s (%s)", pvm.pvm ? "PVM" : "hardware KVM", pvm.why);
	fprintf(f,
		"usage: msb-vmm --kernel VMLINUX [options]\n"
		"       msb-vmm --restore DIR [device options] [--control PATH]\n"
		"\n"
		"Boots the ELF vmlinux in a KVM microVM (or restores a snapshot of one) and runs\n"
		"it until the guest shuts down.\n"
		"\n"
		"  --kernel PATH          the guest kernel: an x86-64 ELF vmlinux (booted "
		"directly)\n"
		"  --initrd PATH          an initramfs, placed high in guest RAM\n"
		"  --base-cmdline STR     the kernel command line's base (normally the contents "
		"of\n"
		"                         build/kernel/cmdline.txt); default: console=hvc0 "
		"(console=ttyS0\n"
		"                         with --serial) " BASE_CMDLINE "\n"
		"  --cmdline STR          appended to the command line (repeatable)\n"
		"  --cpus N               vCPUs (default 1, at most %d)\n"
		"  --memory MIB           guest RAM in MiB (default 256)\n"
		"  --disk PATH[,ro]|none  a virtio block device (repeatable; the first is "
		"/dev/vda);\n"
		"                         none: an empty slot (no media) a restored guest can "
		"get media in\n"
		"  --vsock PATH           a virtio vsock device; host side on the Unix socket "
		"PATH\n"
		"  --cid N                the guest's vsock context id (default 3)\n"
		"  --console FILE|-       a virtio console (hvc0) writing to FILE or stdout\n"
		"  --serial FILE|-        write the 8250 UART (ttyS0) to FILE or stdout; without "
		"it the\n"
		"                         UART is answered and its bytes dropped (each costs an "
		"exit)\n"
		"  --rng                  a virtio entropy device\n"
		"  --net PATH|fd:N|none   a virtio network device whose frames go to a stream "
		"socket\n"
		"                         with 4-byte length prefixes (passt): a Unix socket PATH "
		"to\n"
		"                         connect to, an inherited socket N, or none (link down)\n"
		"  --fs TAG[=DIR[,ro]]    a virtio file system the guest mounts with `mount -t "
		"virtiofs\n"
		"                         TAG PATH`, serving the host directory DIR (repeatable); "
		"no DIR:\n"
		"                         an empty slot a restored guest can get a directory in\n"
		"  --shutdown-timeout S   after SIGTERM/SIGINT, seconds the guest gets to shut "
		"down\n"
		"                         after being asked on vsock port 1025 (default 10)\n"
		"  --restore DIR          resume the snapshot in DIR (DIR/state, DIR/memory) "
		"instead of\n"
		"                         booting; give the same kinds of devices in the same "
		"order;\n"
		"                         --kernel, --initrd, --cmdline, --base-cmdline, --cpus "
		"and\n"
		"                         --memory are refused (the snapshot fixes them)\n"
		"  --control PATH         a Unix socket taking one command per line: status, "
		"pause,\n"
		"                         resume, snapshot DIR, quit (docs/snapshot.md)\n"
		"  --help                 this text\n"
		"\n"
		"Devices are virtio-mmio at 0xd0000000 + i*4K, GSI 5+i, declared on the command "
		"line:\n"
		"disks in order, then console, vsock, rng, net, file systems in order.\n"
		"\n"
		"Exit status:\n"
		"  0  the guest shut down in order (wrote 0 to I/O port 0x510)\n"
		"  1  msb-vmm or the host failed (/dev/kvm, files, memory)\n"
		"  2  bad options\n"
		"  3  the snapshot cannot be restored (missing, truncated, corrupt, another "
		"version,\n"
		"     other devices): rebuild it\n"
		"  5  stopped from outside: the guest did not shut down within the timeout after\n"
		"     SIGTERM/SIGINT (or there was no vsock to ask it), or a second signal\n"
		"  7  the guest crashed or reset: reset without a status (reboot, panic), triple\n"
		"     fault, an instruction KVM could not run, or a non-zero status on port 0x510\n"
		"\n"
		"PVM hosts (guest kernel mode emulated): a booted guest's command line gets\n"
		"  " MSB_PVM_CMDLINE "\n"
		"after the base; on hardware KVM it must not (noxsave would leak AVX state\n"
		"between guest processes).  Detected from /sys/module/kvm_pvm (or a host CPU\n"
		"without vmx/svm); MSB_PVM=1|0 overrides.  This host: %s.\n"
		"\n"
		"MSB_LOG=info|debug shows what msb-vmm does.\n",
		VM_MAX_VCPUS, host);
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -1;
	*out = v;
	return 0;
}

static int add_cmdline(struct opts *o, const char *piece, struct msb_err *err)
{
	size_t old = o->cmdline ? strlen(o->cmdline) : 0;
	char *n = realloc(o->cmdline, old + strlen(piece) + 2);
	if (!n)
		return msb_err_sys(err, "allocating the command line");
	if (old)
		n[old++] = ' ';
	strcpy(n + old, piece);
	o->cmdline = n;
	return 0;
}

static int parse_disk(struct opts *o, const char *arg, struct msb_err *err)
{
	if (o->dev.ndisks == VM_MMIO_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "too many --disk options (at most %d)",
				   VM_MMIO_MAX);
	struct vmm_disk *d = &o->dev.disks[o->dev.ndisks];
	size_t n = strlen(arg);
	d->readonly = n > 3 && strcmp(arg + n - 3, ",ro") == 0;
	if (strcmp(arg, "none") == 0) {
		d->path = NULL; /* an empty slot: a restore may fill it */
		o->dev.ndisks++;
		return 0;
	}
	char *path = strndup(arg, d->readonly ? n - 3 : n);
	if (!path)
		return msb_err_sys(err, "allocating");
	d->path = path; /* lives as long as the process */
	o->dev.ndisks++;
	return 0;
}

/* TAG[=DIR[,ro]] */
static int parse_fs(struct opts *o, const char *arg, struct msb_err *err)
{
	if (o->dev.nfs == VM_MMIO_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "too many --fs options (at most %d)",
				   VM_MMIO_MAX);
	struct vmm_fs *f = &o->dev.fs[o->dev.nfs];
	const char *eq = strchr(arg, '=');
	size_t tl = eq ? (size_t)(eq - arg) : strlen(arg);
	if (tl == 0 || (eq && !eq[1]))
		return msb_err_set(err, MSB_EK_USAGE, 0, "--fs wants TAG[=DIR[,ro]], not '%s'",
				   arg);
	char *tag = strndup(arg, tl); /* lives as long as the process */
	if (!tag)
		return msb_err_sys(err, "allocating");
	f->tag = tag;
	if (eq) {
		size_t n = strlen(eq + 1);
		f->readonly = n > 3 && strcmp(eq + 1 + n - 3, ",ro") == 0;
		if (!(f->dir = strndup(eq + 1, f->readonly ? n - 3 : n)))
			return msb_err_sys(err, "allocating");
	}
	o->dev.nfs++;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o, struct msb_err *err)
{
	enum {
		O_KERNEL = 256,
		O_INITRD,
		O_BASE,
		O_CMDLINE,
		O_CPUS,
		O_MEMORY,
		O_DISK,
		O_VSOCK,
		O_CID,
		O_CONSOLE,
		O_SERIAL,
		O_RNG,
		O_NET,
		O_FS,
		O_TIMEOUT,
		O_RESTORE,
		O_CONTROL,
		O_HELP,
	};
	static const struct option lo[] = {
		{"kernel", required_argument, NULL, O_KERNEL},
		{"initrd", required_argument, NULL, O_INITRD},
		{"base-cmdline", required_argument, NULL, O_BASE},
		{"cmdline", required_argument, NULL, O_CMDLINE},
		{"cpus", required_argument, NULL, O_CPUS},
		{"memory", required_argument, NULL, O_MEMORY},
		{"disk", required_argument, NULL, O_DISK},
		{"vsock", required_argument, NULL, O_VSOCK},
		{"cid", required_argument, NULL, O_CID},
		{"console", required_argument, NULL, O_CONSOLE},
		{"serial", required_argument, NULL, O_SERIAL},
		{"rng", no_argument, NULL, O_RNG},
		{"net", required_argument, NULL, O_NET},
		{"fs", required_argument, NULL, O_FS},
		{"shutdown-timeout", required_argument, NULL, O_TIMEOUT},
		{"restore", required_argument, NULL, O_RESTORE},
		{"control", required_argument, NULL, O_CONTROL},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	o->cpus = 1;
	o->mem_mib = 256;
	o->dev.cid = 3;
	o->dev.console_fd = -1;
	o->shutdown_timeout_s = 10;
	opterr = 0;
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_KERNEL:
			o->kernel = optarg;
			break;
		case O_INITRD:
			o->initrd = optarg;
			break;
		case O_BASE:
			o->base_cmdline = optarg;
			break;
		case O_CMDLINE:
			if (add_cmdline(o, optarg, err) < 0)
				return -1;
			break;
		case O_CPUS:
			if (parse_uint(optarg, VM_MAX_VCPUS, &v) < 0 || v == 0)
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "--cpus wants 1 to %d, not '%s'", VM_MAX_VCPUS,
						   optarg);
			o->cpus = (unsigned)v;
			o->shape_given = true;
			break;
		case O_MEMORY:
			if (parse_uint(optarg, 1u << 20, &v) < 0 || v < (BOOT_MIN_RAM >> 20))
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "--memory wants MiB (at least %llu), not '%s'",
						   BOOT_MIN_RAM >> 20, optarg);
			o->mem_mib = v;
			o->shape_given = true;
			break;
		case O_DISK:
			if (parse_disk(o, optarg, err) < 0)
				return -1;
			break;
		case O_VSOCK:
			o->dev.vsock_path = optarg;
			break;
		case O_CID:
			if (parse_uint(optarg, UINT32_MAX - 1, &v) < 0 || v < 3)
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "--cid wants a number >= 3, not '%s'", optarg);
			o->dev.cid = v;
			break;
		case O_CONSOLE:
			o->console = optarg;
			break;
		case O_SERIAL:
			o->serial = optarg;
			break;
		case O_RNG:
			o->dev.rng = true;
			break;
		case O_NET:
			if (!*optarg)
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "--net wants a socket path, fd:N or none");
			o->dev.net = optarg;
			break;
		case O_FS:
			if (parse_fs(o, optarg, err) < 0)
				return -1;
			break;
		case O_TIMEOUT:
			if (parse_uint(optarg, 24 * 3600, &v) < 0)
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "--shutdown-timeout wants seconds, not '%s'",
						   optarg);
			o->shutdown_timeout_s = (unsigned)v;
			break;
		case O_RESTORE:
			o->restore = optarg;
			break;
		case O_CONTROL:
			o->control = optarg;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "unknown or incomplete option '%s'; see msb-vmm --help",
					   argv[optind - 1]);
		}
	}
	if (optind < argc)
		return msb_err_set(err, MSB_EK_USAGE, 0, "unexpected argument '%s'; see --help",
				   argv[optind]);
	if (o->restore) {
		if (o->kernel || o->initrd || o->cmdline || o->base_cmdline || o->shape_given)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "--restore takes the kernel, command line, vCPUs and "
					   "memory from the snapshot: drop --kernel, --initrd, "
					   "--cmdline, --base-cmdline, --cpus and --memory");
		return 0;
	}
	if (!o->kernel)
		return msb_err_set(err, MSB_EK_USAGE, 0, "--kernel is required; see --help");
	return 0;
}

/* "-" is stdout; anything else a file created or truncated. */
static int open_output(const char *what, const char *path, struct msb_err *err)
{
	if (strcmp(path, "-") == 0)
		return dup(STDOUT_FILENO);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return msb_err_sys(err, "opening %s output %s", what, path);
	return fd;
}

static int signal_fd(struct msb_err *err)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* Blocked before any thread exists, so every thread inherits it and
	 * the signals only ever arrive through the signalfd. */
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "blocking signals");
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return msb_err_sys(err, "signalfd");
	return fd;
}

static int fail(struct msb_err *err)
{
	fprintf(stderr, "msb-vmm: %s\n", err->msg);
	if (err->kind == MSB_EK_USAGE)
		return VM_EXIT_USAGE;
	return VM_EXIT_HOST;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A snapshot that cannot be restored: callers rebuild it on this status. */
static int fail_snapshot(struct msb_err *err)
{
	fprintf(stderr, "msb-vmm: cannot restore the snapshot: %s\n", err->msg);
	return VM_EXIT_SNAPSHOT;
}

/* A guest booted for the other kind of host: on PVM, one without the
 * workarounds dies at its next xrstor, so it is refused (the caller rebuilds);
 * on hardware KVM, one with noxsave runs but shares AVX state between its
 * processes, so msb-vmm says so. */
static int check_snapshot_host(const struct snapshot *snap, const struct msb_pvm *pvm,
			       struct msb_err *err)
{
	bool has = snap->cmdline && strstr(snap->cmdline, "noxsave");
	if (pvm->pvm && !has)
		return msb_err_set(
			err, MSB_EK_CORRUPT, 0,
			"it was made on hardware KVM (no noxsave on its command line) and "
			"this host is PVM (%s): rebuild it here",
			pvm->why);
	if (!pvm->pvm && has)
		msb_warn("the snapshot's guest kernel runs with noxsave (it was made on a PVM "
			 "host); "
			 "on this host (%s) rebuild it so that its kernel switches AVX state "
			 "itself (XSAVE) instead of asking msb-vmm on every task switch",
			 pvm->why);
	return 0;
}

int main(int argc, char **argv)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	msb_log_init("msb-vmm");
	signal(SIGPIPE, SIG_IGN);
	struct msb_err err = {0};
	struct opts o;
	memset(&o, 0, sizeof(o));
	int prc = parse_args(argc, argv, &o, &err);
	_cleanup_free_ char *user_cmdline = o.cmdline;
	if (prc < 0)
		return fail(&err);

	struct msb_pvm pvm;
	if (msb_pvm_host(&pvm, &err) < 0)
		return fail(&err);
	msb_info("host: %s (%s)", pvm.pvm ? "PVM, guest kernel mode emulated" : "hardware KVM",
		 pvm.why);

	_cleanup_close_ int sigfd = signal_fd(&err);
	if (sigfd < 0)
		return fail(&err);
	_cleanup_close_ int serial_fd = -1;
	_cleanup_close_ int console_fd = -1;
	if (o.serial && (serial_fd = open_output("serial", o.serial, &err)) < 0)
		return fail(&err);
	if (o.console && (console_fd = open_output("console", o.console, &err)) < 0)
		return fail(&err);
	o.dev.console_fd = console_fd;
	if ((o.dev.ndisks || o.console || o.dev.vsock_path || o.dev.rng || o.dev.net ||
	     o.dev.nfs) &&
	    !vmm_devices_available()) {
		err.kind = MSB_EK_USAGE;
		snprintf(err.msg, sizeof(err.msg),
			 "this msb-vmm was built without virtio devices: no --disk, --console, "
			 "--vsock or --rng");
		return fail(&err);
	}

	struct snapshot snap;
	memset(&snap, 0, sizeof(snap));
	_cleanup_close_ int mem_fd = -1;
	if (o.restore && snap_read_dir(o.restore, &snap, &mem_fd, &err) < 0)
		return fail_snapshot(&err);
	if (o.restore && check_snapshot_host(&snap, &pvm, &err) < 0)
		return fail_snapshot(&err);

	struct vm vm;
	struct vm_config cfg = {.ncpus = o.cpus,
				.mem_bytes = o.mem_mib << 20,
				.serial_fd = serial_fd,
				.restore = o.restore != NULL,
				.mem_fd = mem_fd};
	if (o.restore) {
		cfg.ncpus = snap.ncpus;
		cfg.mem_bytes = snap.mem_bytes;
	}
	if (vm_create(&vm, &cfg, &err) < 0) {
		snap_free(&snap);
		return fail(&err);
	}
	/* The guest kernel's msb_pvm.avx (in MSB_PVM_CMDLINE) asks for it; a
	 * kernel without the patch never writes the ports, nor does one booted
	 * on hardware KVM (no msb_pvm.avx there).  A PVM snapshot restored on
	 * hardware KVM keeps its kernel's noxsave and msb_pvm.avx: served too. */
	vm.avx_assist =
		pvm.pvm || (o.restore && snap.cmdline && strstr(snap.cmdline, "msb_pvm.avx"));

	int rc;
	struct vmm_devices devs;
	struct vmm_control ctl;
	memset(&devs, 0, sizeof(devs));
	devs.power_conn = -1;
	memset(&ctl, 0, sizeof(ctl));
	char cmdline[BOOT_CMDLINE_MAX] = "";
	char decl[BOOT_CMDLINE_MAX] = "";
	/* Before the devices start threads: the socket is made under a umask. */
	if (o.control && vmm_control_open(&ctl, o.control, &vm, &devs, cmdline, &err) < 0) {
		rc = fail(&err);
		goto out;
	}
	if (vmm_devices_attach(&devs, &vm, &o.dev, decl, sizeof(decl), &err) < 0) {
		rc = fail(&err);
		goto out;
	}
	if (o.restore) {
		snprintf(cmdline, sizeof(cmdline), "%s", snap.cmdline ? snap.cmdline : "");
		/* The interrupt controllers first, so what the devices raise lands. */
		if (snap_apply(&vm, &snap, &err) < 0 ||
		    vmm_devices_restore(&devs, &snap, &err) < 0) {
			rc = err.kind == MSB_EK_CORRUPT ? fail_snapshot(&err) : fail(&err);
			goto out;
		}
		msb_info("restored %s: %u vCPUs, %llu MiB, in %.1f ms", o.restore, snap.ncpus,
			 (unsigned long long)(snap.mem_bytes >> 20), ms_since(&start));
	} else {
		char base[256];
		if (!o.base_cmdline) {
			snprintf(base, sizeof(base), "console=%s %s", o.serial ? "ttyS0" : "hvc0",
				 BASE_CMDLINE);
			o.base_cmdline = base;
		}
		const char *parts[] = {o.base_cmdline, msb_pvm_cmdline_extra(&pvm, o.base_cmdline),
				       decl, user_cmdline};
		if (boot_cmdline_join(cmdline, sizeof(cmdline), parts, 4, &err) < 0 ||
		    vm_load_linux(&vm, o.kernel, o.initrd, cmdline, &err) < 0) {
			rc = fail(&err);
			goto out;
		}
		msb_info("booting %s with %u vCPUs, %" PRIu64 " MiB: %s", o.kernel, o.cpus,
			 o.mem_mib, cmdline);
	}
	snap_free(&snap);

	rc = vm_run(&vm, sigfd, o.shutdown_timeout_s * 1000u, 0);
	if (rc == VM_EXIT_OK)
		msb_info("%s", vm_stop_message(&vm));
	else
		fprintf(stderr, "msb-vmm: %s\n", vm_stop_message(&vm));
out:
	snap_free(&snap);
	vmm_control_close(&ctl);
	vmm_devices_free(&devs);
	vm_destroy(&vm);
	return rc;
}
