/* SETUP's decoder and the validators it shares with msb-init's kernel command
 * line (see proto.h).  Pure, like the rest of the codec. */
#include <arpa/inet.h>
#include <string.h>

#include "agent/codec_int.h"
#include "agent/proto.h"

bool agent_valid_dev(const char *v, size_t n)
{
	if (n <= 5 || strncmp(v, "/dev/", 5) != 0)
		return false;
	for (size_t i = 5; i < n; i++) {
		char c = v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' || c == '-' ||
		      c == '_'))
			return false;
	}
	/* "/dev/../etc" has no dots, but "/dev//" or a trailing slash names no device. */
	return v[n - 1] != '/';
}

bool agent_valid_mount_path(const char *v, size_t n)
{
	if (n < 2 || n >= sizeof(((struct agent_mount *)0)->path) || v[0] != '/' || memchr(v, 0, n))
		return false;
	/* Each component: not empty (no "//", no trailing '/'), not "." or "..". */
	for (size_t i = 1, start = 1; i <= n; i++) {
		if (i < n && v[i] != '/')
			continue;
		size_t cl = i - start;
		if (cl == 0 || (cl == 1 && v[start] == '.') ||
		    (cl == 2 && v[start] == '.' && v[start + 1] == '.'))
			return false;
		start = i + 1;
	}
	return true;
}

bool agent_valid_hostname(const char *v, size_t n)
{
	if (n == 0 || v[0] == '-' || v[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	return true;
}

bool agent_valid_machine_id(const char *v, size_t n)
{
	/* systemd's format: 128 bits as 32 lowercase hex digits, not all zero. */
	bool nonzero = false;
	if (n != 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		nonzero |= c != '0';
	}
	return nonzero;
}

/* One dotted quad of v[0..n), in network order. */
static bool quad(const char *v, size_t n, uint32_t *out)
{
	char s[16];
	if (n == 0 || n >= sizeof(s))
		return false;
	memcpy(s, v, n);
	s[n] = '\0';
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return false;
	*out = a.s_addr;
	return true;
}

int agent_parse_net(const char *v, size_t n, struct agent_net *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *end = v + n, *p = v;
	const char *slash = memchr(p, '/', n);
	const char *sp1 = slash ? memchr(slash, ' ', (size_t)(end - slash)) : NULL;
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
	unsigned prefix = 0;
	bool ok = slash && sp1 && sp2 && memchr(v, 0, n) == NULL &&
		  quad(p, (size_t)(slash - p), &out->addr);
	for (const char *c = slash ? slash + 1 : NULL; ok && c < sp1; c++) {
		ok = *c >= '0' && *c <= '9' && c - slash <= 2;
		prefix = prefix * 10 + (unsigned)(*c - '0');
	}
	ok = ok && sp1 > slash + 1 && prefix >= 1 && prefix <= 30 &&
	     quad(sp1 + 1, (size_t)(sp2 - sp1 - 1), &out->gateway) &&
	     quad(sp2 + 1, (size_t)(end - sp2 - 1), &out->dns);
	if (ok) {
		uint32_t mask = ~0u << (32 - prefix);
		uint32_t a = ntohl(out->addr), g = ntohl(out->gateway);
		ok = (a & mask) == (g & mask) && a != g && (a & ~mask) != 0 &&
		     (a & ~mask) != ~mask && (g & ~mask) != 0 && (g & ~mask) != ~mask;
	}
	if (!ok) {
		memset(out, 0, sizeof(*out));
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "SETUP: bad network '%.*s' (want ADDR/PREFIX GATEWAY DNS, the "
				   "gateway in the address's network)",
				   (int)(n > 80 ? 80 : n), v);
	}
	out->prefix = (uint8_t)prefix;
	return 0;
}

int agent_parse_mount(const char *v, size_t n, struct agent_mount *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *sp = memchr(v, ' ', n);
	size_t tl = sp ? (size_t)(sp - v) : n;
	bool tag_ok = tl > 0 && tl < sizeof(out->tag);
	for (size_t i = 0; tag_ok && i < tl; i++) {
		char c = v[i];
		tag_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_' || c == '-';
	}
	if (!tag_ok || n - tl < 5 ||
	    (memcmp(sp + 1, "ro ", 3) != 0 && memcmp(sp + 1, "rw ", 3) != 0))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "SETUP: bad mount '%.*s' (want TAG ro|rw PATH)",
				   (int)(n > 64 ? 64 : n), v);
	const char *path = sp + 4;
	size_t pl = n - tl - 4;
	if (!agent_valid_mount_path(path, pl))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "SETUP: bad mount point '%.*s' (an absolute path other than /, "
				   "without . or .. components)",
				   (int)(pl > 64 ? 64 : pl), path);
	memcpy(out->tag, v, tl);
	out->readonly = sp[1] == 'r' && sp[2] == 'o';
	memcpy(out->path, path, pl);
	return 0;
}

static bool valid_fstype(const char *v, size_t n)
{
	return (n == 5 && memcmp(v, "erofs", 5) == 0) || (n == 4 && memcmp(v, "ext4", 4) == 0);
}

static bool valid_overlay(const char *v, size_t n)
{
	return (n == 5 && memcmp(v, "tmpfs", 5) == 0) || agent_valid_dev(v, n);
}

static int setup_net(const struct agent_field *f, void *out, struct msb_err *err)
{
	struct agent_setup_req *r = out;
	if (r->net.prefix)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "SETUP: the network is given twice");
	return agent_parse_net((const char *)f->val, f->len, &r->net, err);
}

static int setup_mount(const struct agent_field *f, void *out, struct msb_err *err)
{
	struct agent_setup_req *r = out;
	if (r->nmounts == AGENT_MOUNTS_MAX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "SETUP: more than %d mounts",
				   AGENT_MOUNTS_MAX);
	if (agent_parse_mount((const char *)f->val, f->len, &r->mounts[r->nmounts], err) < 0)
		return -1;
	r->nmounts++;
	return 0;
}

static int setup_clock(const struct agent_field *f, void *out, struct msb_err *err)
{
	struct agent_setup_req *r = out;
	if (r->has_realtime)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "SETUP: the clock is given twice");
	if (agent_field_u64(f, &r->realtime_ns, err) < 0)
		return -1;
	if (r->realtime_ns == 0)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "SETUP: a clock of 0 (1970) is not a time");
	r->has_realtime = true;
	return 0;
}

static int setup_entropy(const struct agent_field *f, void *out, struct msb_err *err)
{
	struct agent_setup_req *r = out;
	if (r->entropy_len)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "SETUP: entropy is given twice");
	if (f->len < AGENT_ENTROPY_MIN || f->len > AGENT_ENTROPY_MAX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "SETUP: %u bytes of entropy; want %d to %d", f->len,
				   AGENT_ENTROPY_MIN, AGENT_ENTROPY_MAX);
	memcpy(r->entropy, f->val, f->len);
	r->entropy_len = f->len;
	return 0;
}

bool agent_valid_warm_name(const char *v, size_t n)
{
	if (n == 0 || n >= AGENT_WARM_NAME_MAX || memchr(v, 0, n))
		return false;
	/* A name for the PATH lookup, or an absolute path. */
	return v[0] == '/' || memchr(v, '/', n) == NULL;
}

static bool valid_warm_path(const char *v, size_t n)
{
	return n < AGENT_WARM_PATH_MAX && memchr(v, 0, n) == NULL;
}

static int setup_warm(const struct agent_field *f, void *out, struct msb_err *err)
{
	struct agent_setup_req *r = out;
	if (r->nwarm == AGENT_WARM_MAX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "SETUP: more than %d WARM programs",
				   AGENT_WARM_MAX);
	if (!agent_valid_warm_name((const char *)f->val, f->len))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "SETUP: bad WARM program '%.*s' (a name without '/' or an "
				   "absolute path, below %d bytes)",
				   (int)(f->len > 64 ? 64 : f->len), (const char *)f->val,
				   AGENT_WARM_NAME_MAX);
	memcpy(r->warm[r->nwarm], f->val, f->len);
	r->warm[r->nwarm][f->len] = '\0';
	r->nwarm++;
	return 0;
}

int agent_decode_setup(const uint8_t *p, size_t n, struct agent_setup_req *out, struct msb_err *err)
{
	static const struct field_rule rules[] = {
		RULE_CHARS(AGENT_T_ROOT_DEV, struct agent_setup_req, root_dev, "root device",
			   agent_valid_dev),
		RULE_CHARS(AGENT_T_ROOT_FSTYPE, struct agent_setup_req, root_fstype,
			   "root filesystem type (erofs or ext4)", valid_fstype),
		RULE_CHARS(AGENT_T_OVERLAY, struct agent_setup_req, overlay,
			   "writable layer (tmpfs or a /dev/ device)", valid_overlay),
		RULE_CHARS(AGENT_T_HOSTNAME, struct agent_setup_req, hostname, "hostname",
			   agent_valid_hostname),
		RULE_CHARS(AGENT_T_MACHINE_ID, struct agent_setup_req, machine_id,
			   "machine id (32 lowercase hex digits, not all zero)",
			   agent_valid_machine_id),
		RULE_CALL(AGENT_T_NET, setup_net),
		RULE_CALL(AGENT_T_MOUNT, setup_mount),
		RULE_CALL(AGENT_T_REALTIME_NS, setup_clock),
		RULE_CALL(AGENT_T_ENTROPY, setup_entropy),
		RULE_CALL(AGENT_T_WARM, setup_warm),
		RULE_CHARS(AGENT_T_WARM_PATH, struct agent_setup_req, warm_path, "WARM_PATH",
			   valid_warm_path),
	};
	memset(out, 0, sizeof(*out));
	if (agent_decode_fields(p, n, AGENT_SETUP, rules, sizeof(rules) / sizeof(rules[0]), out,
				NULL, err) < 0)
		return -1;
	if (!out->root_dev[0] && (out->root_fstype[0] || out->overlay[0]))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "SETUP: a root filesystem type or writable layer without a "
				   "root device");
	return 0;
}
