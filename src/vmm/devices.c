#include "vmm/devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/snapshot.h"

#if __has_include("virtio/module.mk")
#define HAVE_VIRTIO 1
#include "virtio/virtio.h"
#else
#define HAVE_VIRTIO 0
#endif

#define POWER_PORT 1025

static const char *kind_name(uint32_t id)
{
	switch (id) {
	case 1:
		return "net";
	case 2:
		return "blk";
	case 3:
		return "console";
	case 4:
		return "rng";
	case 19:
		return "vsock";
	case 26:
		return "fs";
	default:
		return "?";
	}
}

static void list_kinds(char *out, size_t cap, const uint32_t *ids, unsigned n)
{
	size_t used = 0;
	out[0] = 0;
	for (unsigned i = 0; i < n && used < cap; i++) {
		int k = snprintf(out + used, cap - used, "%s%s", i ? " " : "", kind_name(ids[i]));
		if (k < 0)
			break;
		used += (size_t)k;
	}
	if (n == 0)
		snprintf(out, cap, "none");
}

/* Refuse a restore whose devices are not the snapshot's. */
static int check_kinds(const uint32_t *have, unsigned nhave, const struct snapshot *s,
		       struct msb_err *err)
{
	bool same = nhave == s->ndevs;
	for (unsigned i = 0; same && i < nhave; i++)
		same = have[i] == s->devs[i].id;
	if (same)
		return 0;
	uint32_t want[SNAP_MAX_DEVICES];
	for (unsigned i = 0; i < s->ndevs; i++)
		want[i] = s->devs[i].id;
	char a[128], b[128];
	list_kinds(a, sizeof(a), want, s->ndevs);
	list_kinds(b, sizeof(b), have, nhave);
	return msb_err_set(
		err, MSB_EK_CORRUPT, 0,
		"the snapshot's devices are [%s] but the options give [%s] (same kinds "
		"in the same order: --disk..., --console, --vsock, --rng, --net, --fs...)",
		a, b);
}

bool vmm_devices_available(void)
{
	return HAVE_VIRTIO;
}

int vmm_request_power_off(const char *uds_path, struct msb_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(uds_path) >= sizeof(sa.sun_path))
		return msb_err_set(err, MSB_EK_USAGE, 0, "vsock socket path %s is too long",
				   uds_path);
	strcpy(sa.sun_path, uds_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return msb_err_sys(err, "socket");
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %d\n", POWER_PORT);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		msb_err_sys(err, "connecting to %s", uds_path);
		close(fd);
		return -1;
	}
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		msb_err_sys(err, "asking %s for guest port %d", uds_path, POWER_PORT);
		close(fd);
		return -1;
	}
	return fd;
}

#if HAVE_VIRTIO
static void virtio_bus(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write)
{
	virtio_mmio_access(ctx, offset, data, len, is_write);
}

static int request_shutdown(void *ctx)
{
	struct vmm_devices *d = ctx;
	struct msb_err err = {0};
	if (d->power_conn >= 0)
		return 0; /* asked already */
	d->power_conn = vmm_request_power_off(d->vsock_path, &err);
	if (d->power_conn < 0) {
		msb_warn("asking the guest to shut down: %s", err.msg);
		return -1;
	}
	return 0;
}

/* The backend of --net: none, fd:N, or a Unix socket path.  passt creates its
 * socket a moment after it starts, so a missing or refusing socket is retried
 * for a few seconds. */
static int net_backend(const char *spec, struct msb_err *err)
{
	if (strcmp(spec, "none") == 0)
		return -1;
	if (strncmp(spec, "fd:", 3) == 0) {
		char *end;
		errno = 0;
		long fd = strtol(spec + 3, &end, 10);
		int type = 0;
		socklen_t tl = sizeof(type);
		if (errno || end == spec + 3 || *end || fd < 3 || fd > 65535 ||
		    getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "--net %s: not an open stream socket descriptor", spec);
		return (int)fd;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(spec) >= sizeof(sa.sun_path))
		return msb_err_set(err, MSB_EK_USAGE, 0, "--net socket path %s is too long", spec);
	strcpy(sa.sun_path, spec);
	for (int tries = 0;; tries++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return msb_err_sys(err, "socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		int e = errno;
		close(fd);
		if ((e != ENOENT && e != ECONNREFUSED) || tries >= 100) {
			errno = e;
			return msb_err_sys(err,
					   "connecting to the network backend %s (is passt "
					   "running?)",
					   spec);
		}
		usleep(50 * 1000);
	}
}

static struct virtio_dev *net_new(struct vm *vm, const char *spec, int irqfd, struct msb_err *err)
{
	/* Locally administered, fixed: a restored guest keeps the MAC its driver read. */
	static const uint8_t mac[6] = {0x02, 0x6d, 0x73, 0x62, 0x00, 0x01};
	int fd = -1;
	if (strcmp(spec, "none") != 0 && (fd = net_backend(spec, err)) < 0)
		return NULL;
	struct virtio_dev *dev = virtio_net_new(&vm->mem, irqfd, fd, mac, err);
	if (!dev && fd >= 0)
		close(fd);
	return dev;
}

static struct virtio_dev *create(struct vmm_devices *d, struct vm *vm,
				 const struct vmm_devices_config *cfg, unsigned k, int irqfd,
				 struct msb_err *err)
{
	if (k < cfg->ndisks) {
		struct virtio_dev *dev = virtio_blk_new(&vm->mem, irqfd, cfg->disks[k].path,
							cfg->disks[k].readonly, err);
		if (!dev)
			msb_err_wrap(err, "disk %s",
				     cfg->disks[k].path ? cfg->disks[k].path : "(empty slot)");
		return dev;
	}
	k -= cfg->ndisks;
	if (cfg->console_fd >= 0 && k-- == 0)
		return virtio_console_new(&vm->mem, irqfd, -1, cfg->console_fd, err);
	if (cfg->vsock_path && k-- == 0) {
		struct virtio_dev *dev =
			virtio_vsock_new(&vm->mem, irqfd, cfg->cid, cfg->vsock_path, err);
		if (dev) {
			d->vsock_path = cfg->vsock_path;
			vm->request_shutdown = request_shutdown;
			vm->request_ctx = d;
		}
		return dev;
	}
	if (cfg->rng && k-- == 0)
		return virtio_rng_new(&vm->mem, irqfd, err);
	if (cfg->net && k-- == 0)
		return net_new(vm, cfg->net, irqfd, err);
	const struct vmm_fs *f = &cfg->fs[k];
	struct virtio_dev *dev = virtio_fs_new(&vm->mem, irqfd, f->tag, f->dir, f->readonly, err);
	if (!dev)
		msb_err_wrap(err, "file system %s", f->tag);
	return dev;
}

int vmm_devices_attach(struct vmm_devices *d, struct vm *vm, const struct vmm_devices_config *cfg,
		       char *decl, size_t cap, struct msb_err *err)
{
	memset(d, 0, sizeof(*d));
	d->power_conn = -1;
	unsigned total = cfg->ndisks + (cfg->console_fd >= 0) + (cfg->vsock_path != NULL) +
			 (cfg->rng ? 1 : 0) + (cfg->net != NULL) + cfg->nfs;
	if (total > VM_MMIO_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "a VM has at most %d devices (asked for %u)", VM_MMIO_MAX,
				   total);
	for (unsigned k = 0; k < total; k++) {
		uint64_t base;
		unsigned gsi;
		int irqfd;
		if (vm_mmio_reserve(vm, &base, &gsi, &irqfd, err) < 0)
			return -1;
		struct virtio_dev *dev = create(d, vm, cfg, k, irqfd, err);
		if (!dev)
			return -1;
		d->devs[d->n++] = dev;
		if (vm_mmio_plug(vm, base, virtio_bus, dev, err) < 0)
			return -1;
		size_t used = strlen(decl);
		int n = snprintf(decl + used, cap - used, "%svirtio_mmio.device=4K@0x%llx:%u",
				 used ? " " : "", (unsigned long long)base, gsi);
		if (n < 0 || (size_t)n >= cap - used)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "too many devices for the kernel command line");
		msb_info("device %s at 0x%llx, GSI %u", virtio_dev_name(dev),
			 (unsigned long long)base, gsi);
	}
	return 0;
}

int vmm_devices_pause(struct vmm_devices *d, struct msb_err *err)
{
	for (unsigned i = 0; i < d->n; i++) {
		if (virtio_dev_pause(d->devs[i], err) < 0) {
			msb_err_wrap(err, "pausing device %u (%s)", i, virtio_dev_name(d->devs[i]));
			for (unsigned k = 0; k < i; k++)
				virtio_dev_resume(d->devs[k]);
			return -1;
		}
	}
	return 0;
}

void vmm_devices_resume(struct vmm_devices *d)
{
	for (unsigned i = 0; i < d->n; i++)
		virtio_dev_resume(d->devs[i]);
}

int vmm_devices_save(struct vmm_devices *d, struct snapshot *s, struct msb_err *err)
{
	for (unsigned i = 0; i < d->n; i++) {
		struct snap_device *sd = &s->devs[i];
		sd->id = virtio_dev_id(d->devs[i]);
		s->ndevs = i + 1;
		if (virtio_dev_save(d->devs[i], &sd->blob, &sd->len, err) < 0)
			return msb_err_wrap(err, "saving device %u (%s)", i,
					    virtio_dev_name(d->devs[i]));
	}
	return 0;
}

int vmm_devices_restore(struct vmm_devices *d, const struct snapshot *s, struct msb_err *err)
{
	uint32_t have[VM_MMIO_MAX];
	for (unsigned i = 0; i < d->n; i++)
		have[i] = virtio_dev_id(d->devs[i]);
	if (check_kinds(have, d->n, s, err) < 0)
		return -1;
	for (unsigned i = 0; i < d->n; i++)
		if (virtio_dev_restore(d->devs[i], s->devs[i].blob, s->devs[i].len, err) < 0)
			return msb_err_wrap(err, "restoring device %u (%s)", i,
					    virtio_dev_name(d->devs[i]));
	return 0;
}

void vmm_devices_free(struct vmm_devices *d)
{
	for (unsigned i = 0; i < d->n; i++)
		virtio_dev_free(d->devs[i]);
	d->n = 0;
	if (d->power_conn >= 0)
		close(d->power_conn);
	d->power_conn = -1;
}
#else
int vmm_devices_attach(struct vmm_devices *d, struct vm *vm, const struct vmm_devices_config *cfg,
		       char *decl, size_t cap, struct msb_err *err)
{
	memset(d, 0, sizeof(*d));
	d->power_conn = -1;
	if (cfg->ndisks || cfg->console_fd >= 0 || cfg->vsock_path || cfg->rng || cfg->net ||
	    cfg->nfs)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "this msb-vmm was built without virtio devices (src/virtio)");
	return 0;
}

int vmm_devices_pause(struct vmm_devices *d, struct msb_err *err)
{
	return 0;
}

void vmm_devices_resume(struct vmm_devices *d)
{
}

int vmm_devices_save(struct vmm_devices *d, struct snapshot *s, struct msb_err *err)
{
	return 0;
}

int vmm_devices_restore(struct vmm_devices *d, const struct snapshot *s, struct msb_err *err)
{
	return check_kinds(NULL, 0, s, err);
}

void vmm_devices_free(struct vmm_devices *d)
{
	if (d->power_conn >= 0)
		close(d->power_conn);
	d->power_conn = -1;
}
#endif
