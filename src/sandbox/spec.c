/* The pure parts of starting a sandbox: msb-init's command line, msb-vmm's argv,
 * and the image defaults (env, workdir, command).  No I/O here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "sandbox/sandbox.h"
#include "sandbox/volumes.h"

#define HOSTNAME_MAX 63

char *sandbox_guest_cmdline(const char *rootfs_format, bool rw_disk, const char *hostname,
			    struct msb_err *err)
{
	if (!rootfs_format ||
	    (strcmp(rootfs_format, "ext4") != 0 && strcmp(rootfs_format, "erofs") != 0)) {
		msb_err_set(err, MSB_EK_CORRUPT, 0,
			    "the image's root filesystem format '%s' is not ext4 or erofs; "
			    "pull or import the image again",
			    rootfs_format ? rootfs_format : "(none)");
		return NULL;
	}
	/* msb-init refuses a hostname outside [A-Za-z0-9.-]: map the rest, so a
	 * sandbox named "my_app" still boots (as "my-app"). */
	char host[HOSTNAME_MAX + 1];
	size_t n = 0;
	for (const char *c = hostname ? hostname : ""; *c && n < HOSTNAME_MAX; c++) {
		char ch = *c;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
		host[n++] = ok ? ch : '-';
	}
	host[n] = '\0';
	if (n == 0)
		snprintf(host, sizeof(host), "sandbox");
	char *out = NULL;
	if (asprintf(&out, "msb.root=/dev/vda msb.rootfstype=%s msb.overlay=%s msb.hostname=%s",
		     rootfs_format, rw_disk ? "/dev/vdb" : "tmpfs", host) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	return out;
}

static int push_fmt(struct msb_strv *s, struct msb_err *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int push_fmt(struct msb_strv *s, struct msb_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *str = NULL;
	int r = vasprintf(&str, fmt, ap);
	va_end(ap);
	if (r < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	r = msb_strv_push(s, str, err);
	free(str);
	return r;
}

int sandbox_vmm_argv(const struct sandbox_vmm_args *a, struct msb_strv *out, struct msb_err *err)
{
	struct msb_strv s = {0};
	const struct sandbox_parts *p = a->parts;
	int r = msb_strv_push(&s, p->vmm, err);
	if (a->restore) {
		r = r < 0 ? r : msb_strv_push(&s, "--restore", err);
		r = r < 0 ? r : msb_strv_push(&s, a->restore, err);
	} else {
		r = r < 0 ? r : msb_strv_push(&s, "--kernel", err);
		r = r < 0 ? r : msb_strv_push(&s, p->kernel, err);
		r = r < 0 ? r : msb_strv_push(&s, "--initrd", err);
		r = r < 0 ? r : msb_strv_push(&s, p->initrd, err);
		if (r == 0 && p->base_cmdline) {
			r = msb_strv_push(&s, "--base-cmdline", err);
			r = r < 0 ? r : msb_strv_push(&s, p->base_cmdline, err);
		}
		if (r == 0 && a->guest_cmdline) {
			r = msb_strv_push(&s, "--cmdline", err);
			r = r < 0 ? r : msb_strv_push(&s, a->guest_cmdline, err);
		}
		r = r < 0 ? r : msb_strv_push(&s, "--cpus", err);
		r = r < 0 ? r : push_fmt(&s, err, "%u", a->cpus ? a->cpus : 1);
		r = r < 0 ? r : msb_strv_push(&s, "--memory", err);
		r = r < 0 ? r
			  : push_fmt(&s, err, "%u",
				     a->memory_mib ? a->memory_mib : MSB_DEFAULT_MEMORY);
	}
	/* The order of --disk is the guest's device order: image = vda, rw = vdb.
	 * A snapshot fixes the number of slots; "none" is an empty one. */
	unsigned disks = a->disks ? a->disks : (a->rw_disk ? 2 : 1);
	r = r < 0 ? r : msb_strv_push(&s, "--disk", err);
	r = r < 0 ? r
		  : (a->rootfs_path ? push_fmt(&s, err, "%s,ro", a->rootfs_path)
				    : msb_strv_push(&s, "none", err));
	if (r == 0 && disks >= 2) {
		r = msb_strv_push(&s, "--disk", err);
		r = r < 0 ? r : msb_strv_push(&s, a->rw_disk ? a->rw_disk : "none", err);
	}
	r = r < 0 ? r : msb_strv_push(&s, "--vsock", err);
	r = r < 0 ? r : msb_strv_push(&s, a->vsock_path, err);
	if (r == 0 && a->cid) {
		r = msb_strv_push(&s, "--cid", err);
		r = r < 0 ? r : push_fmt(&s, err, "%u", a->cid);
	}
	if (r == 0 && a->console) {
		r = msb_strv_push(&s, "--console", err);
		r = r < 0 ? r : msb_strv_push(&s, a->console, err);
	}
	/* Without a hardware RNG the guest's getrandom() can block for a long time
	 * where kernel code is emulated (docs/kernel.md). */
	r = r < 0 ? r : msb_strv_push(&s, "--rng", err);
	r = r < 0 ? r : sandbox_volumes_fs_argv(&s, a->fs_slots, a->volumes, err);
	if (r == 0 && a->net) {
		r = msb_strv_push(&s, "--net", err);
		r = r < 0 ? r : msb_strv_push(&s, a->net, err);
	}
	if (r == 0 && a->control) {
		r = msb_strv_push(&s, "--control", err);
		r = r < 0 ? r : msb_strv_push(&s, a->control, err);
	}
	if (r < 0) {
		msb_strv_clear(&s);
		return -1;
	}
	*out = s;
	return 0;
}

static size_t name_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : 0;
}

int sandbox_merge_env(const char *const *image_env, const char *const *over, struct msb_strv *out,
		      struct msb_err *err)
{
	struct msb_strv s = {0};
	for (size_t i = 0; image_env && image_env[i]; i++)
		if (name_len(image_env[i]) > 0 && msb_strv_push(&s, image_env[i], err) < 0)
			goto fail;
	for (size_t i = 0; over && over[i]; i++) {
		size_t nl = name_len(over[i]);
		if (nl == 0)
			continue;
		size_t j = 0;
		for (; j < s.n; j++)
			if (name_len(s.v[j]) == nl && strncmp(s.v[j], over[i], nl) == 0)
				break;
		if (j == s.n) {
			if (msb_strv_push(&s, over[i], err) < 0)
				goto fail;
			continue;
		}
		char *dup = strdup(over[i]);
		if (!dup) {
			msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
			goto fail;
		}
		free(s.v[j]);
		s.v[j] = dup;
	}
	if (!s.v && msb_strv_push(&s, "", err) == 0) {
		/* Always hand back a NULL-terminated (possibly empty) array. */
		free(s.v[0]);
		s.v[0] = NULL;
		s.n = 0;
	}
	*out = s;
	return 0;
fail:
	msb_strv_clear(&s);
	return -1;
}

int sandbox_apply_image_defaults(struct msb_sandbox *sb, const struct oci_image_config *cfg,
				 struct msb_err *err)
{
	if (!sb->workdir && cfg->working_dir && cfg->working_dir[0]) {
		if (!(sb->workdir = strdup(cfg->working_dir)))
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	if (sb->command.n == 0) {
		for (size_t i = 0; cfg->entrypoint && cfg->entrypoint[i]; i++)
			if (msb_strv_push(&sb->command, cfg->entrypoint[i], err) < 0)
				return -1;
		for (size_t i = 0; cfg->cmd && cfg->cmd[i]; i++)
			if (msb_strv_push(&sb->command, cfg->cmd[i], err) < 0)
				return -1;
	}
	return 0;
}
