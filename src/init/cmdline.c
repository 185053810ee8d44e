#include "init/cmdline.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/proto.h"

static int set(char *dst, size_t cap, const char *key, const char *v, size_t n, bool ok,
	       struct msb_err *err)
{
	if (!ok || n >= cap)
		return msb_err_set(err, MSB_EK_USAGE, 0, "kernel command line: bad %s='%.*s'", key,
				   (int)(n > 64 ? 64 : n), v);
	memcpy(dst, v, n);
	dst[n] = '\0';
	return 0;
}

int init_parse_cmdline(const char *line, struct init_cmdline *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = 0;
	const char *p = line;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		const char *w = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		size_t wl = (size_t)(p - w);
		const char *eq = memchr(w, '=', wl);
		if (!eq || wl < 4 || strncmp(w, "msb.", 4) != 0)
			continue;
		size_t kl = (size_t)(eq - w);
		const char *v = eq + 1;
		size_t vl = wl - kl - 1;
		int r = 0;
		if (kl == 8 && strncmp(w, "msb.root", kl) == 0) {
			r = set(out->root, sizeof(out->root), "msb.root", v, vl,
				agent_valid_dev(v, vl), err);
		} else if (kl == 14 && strncmp(w, "msb.rootfstype", kl) == 0) {
			bool ok = (vl == 5 && strncmp(v, "erofs", 5) == 0) ||
				  (vl == 4 && strncmp(v, "ext4", 4) == 0);
			r = set(out->rootfstype, sizeof(out->rootfstype), "msb.rootfstype", v, vl,
				ok, err);
		} else if (kl == 11 && strncmp(w, "msb.overlay", kl) == 0) {
			bool ok =
				(vl == 5 && strncmp(v, "tmpfs", 5) == 0) || agent_valid_dev(v, vl);
			r = set(out->overlay, sizeof(out->overlay), "msb.overlay", v, vl, ok, err);
		} else if (kl == 12 && strncmp(w, "msb.hostname", kl) == 0) {
			r = set(out->hostname, sizeof(out->hostname), "msb.hostname", v, vl,
				agent_valid_hostname(v, vl), err);
		}
		if (r < 0)
			rc = -1;
	}
	return rc;
}
