/* What msb-init takes from the kernel command line (docs/agent-protocol.md,
 * "Guest start-up").  Parsing is pure so that tests can feed it anything. */
#ifndef MSB_INIT_CMDLINE_H
#define MSB_INIT_CMDLINE_H

#include "common/error.h"

struct init_cmdline {
	char root[64];	     /* msb.root=/dev/vdX; "" = stay in the initramfs */
	char rootfstype[16]; /* msb.rootfstype=erofs|ext4; "" = try both */
	char overlay[64];    /* msb.overlay=tmpfs|/dev/vdY; "" = tmpfs */
	char hostname[64];   /* msb.hostname=NAME; "" = keep the kernel's */
};

/* Parses `line` (the contents of /proc/cmdline).  Unknown words are ignored
 * (they belong to the kernel); a malformed msb.* value fails with kind usage
 * and leaves the other values parsed. */
int init_parse_cmdline(const char *line, struct init_cmdline *out, struct msb_err *err);

#endif
