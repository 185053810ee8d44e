/* SETUP (docs/agent-protocol.md): what a guest restored from a snapshot cannot
 * know by itself.  The base snapshot is taken while msb-init waits in its
 * initramfs; after the restore the host attaches the sandbox's disks and asks
 * for the root (once per boot), the time (the guest clock stood still while
 * the snapshot slept), fresh entropy (two restores of one snapshot would
 * otherwise produce the same random numbers), the hostname and the machine id.
 *
 * As a host process (`msb-init --serve-unix`) msb-init must not touch the
 * host: it validates every field, applies HOSTNAME to the name it announces,
 * and refuses the root, the clock, entropy, the machine id, volumes and WARM.
 *
 * After a warm snapshot (docs/snapshot.md) the root is mounted already: each
 * copy gets a SETUP without ROOT_DEV (clock, entropy, hostname, machine id,
 * network, volumes), which is accepted any time; a second root is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "init/net.h"
#include "init/volumes.h"
#include "init/pid1.h"
#include "init/server_int.h"
#include "init/warm.h"

/* The disks arrive after the restore: msb-vmm fills the empty slots and the
 * guest learns their size from a config-change interrupt, asynchronously. */
#define MEDIUM_WAIT_MS 10000
#define MEDIUM_POLL_MS 10

/* Wait until `dev` exists and has a non-zero size. */
static int wait_for_medium(const char *dev, struct msb_err *err)
{
	uint64_t deadline = now_ms() + MEDIUM_WAIT_MS;
	int fd = -1, last = ENOENT;
	uint64_t size = 0;
	for (;;) {
		if (fd < 0)
			fd = open(dev, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			last = errno;
		} else if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			last = errno;
			break; /* not a block device: waiting will not help */
		} else if (size) {
			break;
		} else {
			last = 0;
		}
		if (now_ms() >= deadline || (last && last != ENOENT && last != ENXIO))
			break;
		struct timespec ts = {0, MEDIUM_POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (fd >= 0)
		close(fd);
	if (size)
		return 0;
	if (last == ENOENT || last == ENXIO)
		return msb_err_set(err, MSB_EK_NOT_FOUND, last,
				   "the disk %s did not appear within %d s (is it attached?)", dev,
				   MEDIUM_WAIT_MS / 1000);
	if (last)
		return msb_err_set(err, MSB_EK_SYSTEM, last, "checking the disk %s: %s", dev,
				   strerror(last));
	return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			   "the disk %s still had no medium (size 0) after %d s (was it attached "
			   "after the restore?)",
			   dev, MEDIUM_WAIT_MS / 1000);
}

static int write_machine_id(const char *id, struct msb_err *err)
{
	if (mkdir("/etc", 0755) < 0 && errno != EEXIST)
		return msb_err_sys(err, "creating /etc for the machine id");
	/* The image is the user's: do not follow a link it may have planted. */
	_cleanup_close_ int fd = open("/etc/machine-id",
				      O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (fd < 0)
		return msb_err_sys(err, "writing /etc/machine-id");
	char line[34];
	int n = snprintf(line, sizeof(line), "%s\n", id);
	if (write(fd, line, (size_t)n) != n)
		return msb_err_sys(err, "writing /etc/machine-id");
	return 0;
}

static int set_clock(uint64_t ns, struct msb_err *err)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u)};
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		return msb_err_sys(err, "setting the clock");
	return 0;
}

static int add_entropy(const uint8_t *bytes, size_t n, struct msb_err *err)
{
	/* struct rand_pool_info ends in a flexible array of u32. */
	_Alignas(struct rand_pool_info)
		uint8_t raw[sizeof(struct rand_pool_info) + AGENT_ENTROPY_MAX];
	struct rand_pool_info *info = (struct rand_pool_info *)raw;
	info->entropy_count = (int)(n * 8);
	info->buf_size = (int)n;
	memcpy(info->buf, bytes, n);
	_cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening /dev/urandom");
	if (ioctl(fd, RNDADDENTROPY, info) < 0)
		return msb_err_sys(err, "adding entropy (RNDADDENTROPY)");
	/* Without a reseed the CRNG would keep its restored key for a while.
	 * ENODATA: it is not initialised yet, and will be from this pool. */
	if (ioctl(fd, RNDRESEEDCRNG) < 0 && errno != ENODATA)
		return msb_err_sys(err, "reseeding the kernel's random generator");
	return 0;
}

static int setup_root(struct server *s, const struct agent_setup_req *r, struct msb_err *err)
{
	struct init_cmdline cl = {0};
	snprintf(cl.root, sizeof(cl.root), "%s", r->root_dev);
	snprintf(cl.rootfstype, sizeof(cl.rootfstype), "%s", r->root_fstype);
	snprintf(cl.overlay, sizeof(cl.overlay), "%s", r->overlay);
	if (wait_for_medium(cl.root, err) < 0)
		return msb_err_wrap(err, "mounting the root");
	if (cl.overlay[0] && strcmp(cl.overlay, "tmpfs") != 0 &&
	    wait_for_medium(cl.overlay, err) < 0)
		return msb_err_wrap(err, "mounting the writable layer");
	if (pid1_mount_root(s->opts.p1, &cl, err) < 0)
		return msb_err_wrap(err, "mounting the root");
	return 0;
}

/* In the guest: everything, in an order where each step sees the previous
 * ones (files written after the clock is right).  The first failure ends the
 * request; what was done before it stays done. */
static int setup_guest(struct server *s, const struct agent_setup_req *r, uint32_t *kind,
		       struct msb_err *err)
{
	struct pid1 *p = s->opts.p1;
	*kind = AGENT_E_SYSTEM;
	if (r->root_dev[0] && (p->switched || p->moved)) {
		*kind = AGENT_E_BAD_REQUEST;
		return msb_err_set(err, MSB_EK_STATE, 0,
				   p->switched ? "the root is already mounted"
					       : "an earlier root setup failed half-way; restart "
						 "the sandbox");
	}
	if (r->has_realtime && set_clock(r->realtime_ns, err) < 0)
		return -1;
	if (r->entropy_len && add_entropy(r->entropy, r->entropy_len, err) < 0)
		return -1;
	if (r->hostname[0]) {
		if (sethostname(r->hostname, strlen(r->hostname)) < 0)
			return msb_err_sys(err, "setting the hostname to %s", r->hostname);
		snprintf(s->hostname, sizeof(s->hostname), "%s", r->hostname);
	}
	if (r->machine_id[0])
		snprintf(s->machine_id, sizeof(s->machine_id), "%s", r->machine_id);
	if (r->root_dev[0] && setup_root(s, r, err) < 0) {
		if (err->kind == MSB_EK_NOT_FOUND)
			*kind = AGENT_E_NOT_FOUND;
		return -1;
	}
	/* eth0 after the root: resolv.conf belongs to it. */
	if (r->net.prefix && init_net_setup(&r->net, p->switched, err) < 0)
		return -1;
	/* Volumes after the root: their mount points are in it. */
	if (r->nmounts && init_mount_volumes(r->mounts, r->nmounts, err) < 0) {
		if (err->kind == MSB_EK_NOT_FOUND)
			*kind = AGENT_E_NOT_FOUND;
		return -1;
	}
	/* The machine id belongs to the root; without one it waits for it. */
	if (s->machine_id[0] && p->switched) {
		if (write_machine_id(s->machine_id, err) < 0)
			return -1;
		s->machine_id[0] = '\0';
	}
	/* Last: the programs come from the root just mounted. */
	if (r->nwarm) {
		struct warm_stats ws;
		uint64_t t0 = now_ms();
		warm_programs((const char(*)[256])r->warm, r->nwarm, r->warm_path, &ws);
		fprintf(stderr, "msb-init: warm: %u files, %llu KiB read in %llu ms\n", ws.files,
			(unsigned long long)(ws.bytes / 1024), (unsigned long long)(now_ms() - t0));
	}
	return 0;
}

/* As a host process: only what cannot harm the host. */
static int setup_host(struct server *s, const struct agent_setup_req *r, uint32_t *kind,
		      struct msb_err *err)
{
	const char *what = r->root_dev[0]     ? "mount a root (ROOT_DEV)"
			   : r->has_realtime  ? "set the clock (REALTIME_NS)"
			   : r->entropy_len   ? "add entropy (ENTROPY)"
			   : r->machine_id[0] ? "write a machine id (MACHINE_ID)"
			   : r->nmounts	      ? "mount volumes (MOUNT)"
			   : r->nwarm	      ? "read programs into a page cache (WARM)"
					      : NULL;
	if (what) {
		*kind = AGENT_E_UNSUPPORTED;
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "msb-init --serve-unix runs on the host and does not %s; only "
				   "HOSTNAME is applied (to the name it announces)",
				   what);
	}
	if (r->hostname[0])
		snprintf(s->hostname, sizeof(s->hostname), "%s", r->hostname);
	/* NET (checked by the decoder) is not applied: the host's network is not
	 * ours.  Accepted, so that msb's sandboxes run on this fake guest. */
	return 0;
}

void handle_setup(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p)
{
	struct agent_setup_req r;
	struct msb_err err = {0};
	uint32_t kind = AGENT_E_BAD_REQUEST;
	int rc = agent_decode_setup(p, h->len, &r, &err);
	if (rc < 0 && err.kind == MSB_EK_USAGE)
		kind = AGENT_E_UNSUPPORTED; /* a critical field this agent does not know */
	if (rc == 0)
		rc = s->opts.pid1 && s->opts.p1 ? setup_guest(s, &r, &kind, &err)
						: setup_host(s, &r, &kind, &err);
	/* The entropy must not linger in memory a later snapshot would keep. */
	explicit_bzero(r.entropy, sizeof(r.entropy));
	if (rc < 0) {
		if (s->opts.pid1)
			fprintf(stderr, "msb-init: setup: %s\n", err.msg);
		send_error(c, h->id, kind, err.errnum, err.msg);
		return;
	}
	send_simple(c, AGENT_OK, h->id, 0);
}
