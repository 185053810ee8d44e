/* The snapshot state file's codec: no I/O, no ioctls (snapshot.h).
 *
 * Layout (little-endian):
 *   header, 32 bytes: magic "MSBSNAP\0", u32 version, u32 flags (0),
 *                     u64 body length, u32 CRC-32C, u32 zero
 *   body: sections, each u32 type, u32 index, u32 length, then `length` bytes.
 * The CRC covers the header's first 24 bytes and the whole body.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/snapshot.h"

enum {
	SEC_VM = 1,	 /* u32 ncpus, u32 nregions, u64 mem_bytes, regions, u32 ndevs, ids, id */
	SEC_CMDLINE = 2, /* bytes, no NUL */
	SEC_REGS = 10,	 /* index: vCPU */
	SEC_SREGS,
	SEC_FPU,
	SEC_XSAVE,
	SEC_XCRS,
	SEC_LAPIC,
	SEC_EVENTS,
	SEC_MP_STATE,
	SEC_DEBUGREGS,
	SEC_MSRS,	  /* struct kvm_msr_entry[] */
	SEC_IRQCHIP = 30, /* index: chip 0..2 */
	SEC_PIT2,
	SEC_CLOCK,
	SEC_SERIAL = 40,
	SEC_I8042,
	SEC_DEVICE = 50, /* index: slot; u32 device id, then the device's blob */
};

/* ---- CRC-32C -------------------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, crc_init);
	const uint8_t *p = data;
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- little-endian helpers ------------------------------------------------------ */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- memory management ----------------------------------------------------------- */

int snap_alloc_vcpus(struct snapshot *s, uint32_t ncpus, struct msb_err *err)
{
	s->vcpus = calloc(ncpus ? ncpus : 1, sizeof(*s->vcpus));
	if (!s->vcpus)
		return msb_err_sys(err, "allocating the state of %u vCPUs", ncpus);
	s->ncpus = ncpus;
	return 0;
}

void snap_free(struct snapshot *s)
{
	if (s->vcpus)
		for (uint32_t i = 0; i < s->ncpus; i++)
			free(s->vcpus[i].msrs);
	free(s->vcpus);
	for (uint32_t i = 0; i < s->ndevs && i < SNAP_MAX_DEVICES; i++)
		free(s->devs[i].blob);
	free(s->cmdline);
	memset(s, 0, sizeof(*s));
}

/* ---- encoding ---------------------------------------------------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool failed;
};

static uint8_t *wb_grow(struct wbuf *b, size_t n)
{
	if (b->failed)
		return NULL;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 65536;
		while (n > cap - b->len)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (!q) {
			b->failed = true;
			return NULL;
		}
		b->p = q;
		b->cap = cap;
	}
	uint8_t *at = b->p + b->len;
	b->len += n;
	return at;
}

/* Append a section header and reserve `len` bytes for its payload. */
static uint8_t *wb_section(struct wbuf *b, uint32_t type, uint32_t index, size_t len)
{
	uint8_t *h = wb_grow(b, 12 + len);
	if (!h)
		return NULL;
	put32(h, type);
	put32(h + 4, index);
	put32(h + 8, (uint32_t)len);
	return h + 12;
}

static void wb_put(struct wbuf *b, uint32_t type, uint32_t index, const void *data, size_t len)
{
	uint8_t *p = wb_section(b, type, index, len);
	if (p && len)
		memcpy(p, data, len);
}

int snap_encode(const struct snapshot *s, uint8_t **out, size_t *outlen, struct msb_err *err)
{
	if (s->ncpus == 0 || s->ncpus > SNAP_MAX_VCPUS || s->nregions == 0 ||
	    s->nregions > GM_MAX_REGIONS || s->ndevs > SNAP_MAX_DEVICES)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "snapshot with impossible shape");
	struct wbuf b = {0};
	wb_grow(&b, SNAP_HEADER_SIZE);

	size_t vmlen = 16 + 16 * (size_t)s->nregions + 4 + 4 * (size_t)s->ndevs + SNAP_ID_SIZE;
	uint8_t *p = wb_section(&b, SEC_VM, 0, vmlen);
	if (p) {
		put32(p, s->ncpus);
		put32(p + 4, s->nregions);
		put64(p + 8, s->mem_bytes);
		p += 16;
		for (uint32_t i = 0; i < s->nregions; i++, p += 16) {
			put64(p, s->regions[i].gpa);
			put64(p + 8, s->regions[i].size);
		}
		put32(p, s->ndevs);
		p += 4;
		for (uint32_t i = 0; i < s->ndevs; i++, p += 4)
			put32(p, s->devs[i].id);
		memcpy(p, s->id, SNAP_ID_SIZE);
	}
	if (s->cmdline) {
		size_t n = strnlen(s->cmdline, SNAP_MAX_CMDLINE);
		wb_put(&b, SEC_CMDLINE, 0, s->cmdline, n);
	}
	for (uint32_t i = 0; i < s->ncpus; i++) {
		const struct snap_vcpu *v = &s->vcpus[i];
		wb_put(&b, SEC_REGS, i, &v->regs, sizeof(v->regs));
		wb_put(&b, SEC_SREGS, i, &v->sregs, sizeof(v->sregs));
		wb_put(&b, SEC_FPU, i, &v->fpu, sizeof(v->fpu));
		if (v->present & SNAP_HAS_XSAVE)
			wb_put(&b, SEC_XSAVE, i, v->xsave, sizeof(v->xsave));
		if (v->present & SNAP_HAS_XCRS)
			wb_put(&b, SEC_XCRS, i, &v->xcrs, sizeof(v->xcrs));
		wb_put(&b, SEC_LAPIC, i, &v->lapic, sizeof(v->lapic));
		wb_put(&b, SEC_EVENTS, i, &v->events, sizeof(v->events));
		wb_put(&b, SEC_MP_STATE, i, &v->mp_state, sizeof(v->mp_state));
		if (v->present & SNAP_HAS_DEBUGREGS)
			wb_put(&b, SEC_DEBUGREGS, i, &v->debugregs, sizeof(v->debugregs));
		if (v->nmsrs > SNAP_MAX_MSRS) {
			free(b.p);
			return msb_err_set(err, MSB_EK_INTERNAL, 0, "vCPU %u has %u MSRs", i,
					   v->nmsrs);
		}
		wb_put(&b, SEC_MSRS, i, v->msrs, v->nmsrs * sizeof(*v->msrs));
	}
	for (uint32_t i = 0; i < 3; i++)
		wb_put(&b, SEC_IRQCHIP, i, &s->irqchip[i], sizeof(s->irqchip[i]));
	wb_put(&b, SEC_PIT2, 0, &s->pit, sizeof(s->pit));
	wb_put(&b, SEC_CLOCK, 0, &s->clock, sizeof(s->clock));
	const struct snap_serial *u = &s->serial;
	uint8_t ser[8] = {u->ier, u->lcr, u->mcr, u->scr, u->fcr, u->dll, u->dlm, u->thre_pending};
	wb_put(&b, SEC_SERIAL, 0, ser, sizeof(ser));
	const struct snap_i8042 *k = &s->i8042;
	uint8_t kb[4] = {k->ctr, k->out, k->out_full, k->pending_cmd};
	wb_put(&b, SEC_I8042, 0, kb, sizeof(kb));
	for (uint32_t i = 0; i < s->ndevs; i++) {
		const struct snap_device *d = &s->devs[i];
		if (d->len > SNAP_MAX_DEVICE_BLOB) {
			free(b.p);
			return msb_err_set(err, MSB_EK_INTERNAL, 0,
					   "device %u's state is %zu bytes (at most %u)", i, d->len,
					   SNAP_MAX_DEVICE_BLOB);
		}
		p = wb_section(&b, SEC_DEVICE, i, 4 + d->len);
		if (p) {
			put32(p, d->id);
			if (d->len)
				memcpy(p + 4, d->blob, d->len);
		}
	}
	if (b.failed) {
		free(b.p);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "encoding the snapshot state");
	}
	if (b.len > SNAP_STATE_MAX) {
		free(b.p);
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "snapshot state of %zu bytes", b.len);
	}
	uint8_t *h = b.p;
	memcpy(h, SNAP_MAGIC, 8);
	put32(h + 8, SNAP_VERSION);
	put32(h + 12, 0);
	put64(h + 16, b.len - SNAP_HEADER_SIZE);
	uint32_t crc = snap_crc32c(0, h, 24);
	crc = snap_crc32c(crc, h + SNAP_HEADER_SIZE, b.len - SNAP_HEADER_SIZE);
	put32(h + 24, crc);
	put32(h + 28, 0);
	*out = b.p;
	*outlen = b.len;
	return 0;
}

/* ---- decoding ------------------------------------------------------------------------ */

#define BAD(...) msb_err_set(err, MSB_EK_CORRUPT, 0, __VA_ARGS__)

/* A fixed-size section: the length must match and it may appear once. */
static int fixed(const char *what, uint32_t index, uint32_t len, size_t want, const uint8_t *p,
		 void *dst, bool *seen, struct msb_err *err)
{
	if (*seen)
		return BAD("section %s %u appears twice", what, index);
	if (len != want)
		return BAD("section %s %u is %u bytes, expected %zu", what, index, len, want);
	memcpy(dst, p, want);
	*seen = true;
	return 0;
}

static int decode_vm(const uint8_t *p, uint32_t len, struct snapshot *s, struct msb_err *err)
{
	if (len < 16)
		return BAD("section vm is %u bytes, too short", len);
	uint32_t ncpus = get32(p), nregions = get32(p + 4);
	uint64_t mem = get64(p + 8);
	if (ncpus == 0 || ncpus > SNAP_MAX_VCPUS)
		return BAD("the snapshot has %u vCPUs (1 to %u)", ncpus, SNAP_MAX_VCPUS);
	if (nregions == 0 || nregions > GM_MAX_REGIONS)
		return BAD("the snapshot has %u memory regions (1 to %u)", nregions,
			   GM_MAX_REGIONS);
	if (mem == 0 || mem % 4096 || mem > (1ull << 40))
		return BAD("the snapshot's memory size %llu is impossible",
			   (unsigned long long)mem);
	size_t need = 16 + 16 * (size_t)nregions + 4;
	if (len < need)
		return BAD("section vm is %u bytes, too short", len);
	const uint8_t *q = p + 16;
	uint64_t total = 0;
	for (uint32_t i = 0; i < nregions; i++, q += 16) {
		s->regions[i].gpa = get64(q);
		s->regions[i].size = get64(q + 8);
		if (s->regions[i].size > mem || s->regions[i].gpa > (1ull << 48))
			return BAD("memory region %u is out of range", i);
		total += s->regions[i].size;
	}
	if (total != mem)
		return BAD("the memory regions add up to %llu bytes, not %llu",
			   (unsigned long long)total, (unsigned long long)mem);
	uint32_t ndevs = get32(q);
	q += 4;
	if (ndevs > SNAP_MAX_DEVICES)
		return BAD("the snapshot has %u devices (at most %u)", ndevs, SNAP_MAX_DEVICES);
	if (len != need + 4 * (size_t)ndevs + SNAP_ID_SIZE)
		return BAD("section vm is %u bytes, expected %zu", len,
			   need + 4 * (size_t)ndevs + SNAP_ID_SIZE);
	for (uint32_t i = 0; i < ndevs; i++, q += 4)
		s->devs[i].id = get32(q);
	memcpy(s->id, q, SNAP_ID_SIZE);
	s->nregions = nregions;
	s->mem_bytes = mem;
	s->ndevs = ndevs;
	return snap_alloc_vcpus(s, ncpus, err);
}

struct seen {
	bool vm, cmdline, irqchip[3], pit, clock, serial, i8042, dev[SNAP_MAX_DEVICES];
	/* per vCPU: one bit per section type SEC_REGS.. */
	uint32_t *vcpu;
};

static int decode_vcpu(uint32_t type, uint32_t idx, const uint8_t *p, uint32_t len,
		       struct snapshot *s, struct seen *seen, struct msb_err *err)
{
	if (idx >= s->ncpus)
		return BAD("section %u names vCPU %u of %u", type, idx, s->ncpus);
	struct snap_vcpu *v = &s->vcpus[idx];
	uint32_t bit = 1u << (type - SEC_REGS);
	bool was = seen->vcpu[idx] & bit;
	seen->vcpu[idx] |= bit;
	switch (type) {
	case SEC_REGS:
		return fixed("regs", idx, len, sizeof(v->regs), p, &v->regs, &was, err);
	case SEC_SREGS:
		return fixed("sregs", idx, len, sizeof(v->sregs), p, &v->sregs, &was, err);
	case SEC_FPU:
		return fixed("fpu", idx, len, sizeof(v->fpu), p, &v->fpu, &was, err);
	case SEC_XSAVE:
		v->present |= SNAP_HAS_XSAVE;
		return fixed("xsave", idx, len, sizeof(v->xsave), p, v->xsave, &was, err);
	case SEC_XCRS:
		v->present |= SNAP_HAS_XCRS;
		return fixed("xcrs", idx, len, sizeof(v->xcrs), p, &v->xcrs, &was, err);
	case SEC_LAPIC:
		return fixed("lapic", idx, len, sizeof(v->lapic), p, &v->lapic, &was, err);
	case SEC_EVENTS:
		return fixed("events", idx, len, sizeof(v->events), p, &v->events, &was, err);
	case SEC_MP_STATE:
		return fixed("mp_state", idx, len, sizeof(v->mp_state), p, &v->mp_state, &was, err);
	case SEC_DEBUGREGS:
		v->present |= SNAP_HAS_DEBUGREGS;
		return fixed("debugregs", idx, len, sizeof(v->debugregs), p, &v->debugregs, &was,
			     err);
	case SEC_MSRS: {
		if (was)
			return BAD("section msrs %u appears twice", idx);
		if (len % sizeof(struct kvm_msr_entry) ||
		    len / sizeof(struct kvm_msr_entry) > SNAP_MAX_MSRS)
			return BAD("section msrs %u has a bad length %u", idx, len);
		v->nmsrs = len / sizeof(struct kvm_msr_entry);
		v->msrs = malloc(len ? len : 1);
		if (!v->msrs)
			return msb_err_sys(err, "allocating MSRs");
		memcpy(v->msrs, p, len);
		return 0;
	}
	default:
		return BAD("unknown section type %u", type);
	}
}

static int decode_section(uint32_t type, uint32_t idx, const uint8_t *p, uint32_t len,
			  struct snapshot *s, struct seen *seen, struct msb_err *err)
{
	if (type == SEC_VM) {
		if (seen->vm)
			return BAD("section vm appears twice");
		seen->vm = true;
		if (decode_vm(p, len, s, err) < 0)
			return -1;
		seen->vcpu = calloc(s->ncpus, sizeof(*seen->vcpu));
		if (!seen->vcpu)
			return msb_err_sys(err, "allocating");
		return 0;
	}
	if (!seen->vm)
		return BAD("section %u comes before the vm section", type);
	if (type >= SEC_REGS && type <= SEC_MSRS)
		return decode_vcpu(type, idx, p, len, s, seen, err);
	switch (type) {
	case SEC_CMDLINE:
		if (seen->cmdline)
			return BAD("section cmdline appears twice");
		if (len > SNAP_MAX_CMDLINE || memchr(p, 0, len))
			return BAD("section cmdline is not a command line");
		seen->cmdline = true;
		s->cmdline = strndup((const char *)p, len);
		if (!s->cmdline)
			return msb_err_sys(err, "allocating");
		return 0;
	case SEC_IRQCHIP:
		if (idx > 2)
			return BAD("irqchip %u does not exist", idx);
		if (fixed("irqchip", idx, len, sizeof(s->irqchip[idx]), p, &s->irqchip[idx],
			  &seen->irqchip[idx], err) < 0)
			return -1;
		if (s->irqchip[idx].chip_id != idx)
			return BAD("irqchip %u claims to be chip %u", idx, s->irqchip[idx].chip_id);
		return 0;
	case SEC_PIT2:
		return fixed("pit2", idx, len, sizeof(s->pit), p, &s->pit, &seen->pit, err);
	case SEC_CLOCK:
		return fixed("clock", idx, len, sizeof(s->clock), p, &s->clock, &seen->clock, err);
	case SEC_SERIAL: {
		uint8_t b[8];
		if (fixed("serial", idx, len, sizeof(b), p, b, &seen->serial, err) < 0)
			return -1;
		s->serial = (struct snap_serial){b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]};
		return 0;
	}
	case SEC_I8042: {
		uint8_t b[4];
		if (fixed("i8042", idx, len, sizeof(b), p, b, &seen->i8042, err) < 0)
			return -1;
		s->i8042 = (struct snap_i8042){b[0], b[1], b[2], b[3]};
		return 0;
	}
	case SEC_DEVICE: {
		if (idx >= s->ndevs)
			return BAD("device section %u, but the snapshot has %u devices", idx,
				   s->ndevs);
		if (seen->dev[idx])
			return BAD("device section %u appears twice", idx);
		if (len < 4 || len - 4 > SNAP_MAX_DEVICE_BLOB)
			return BAD("device section %u has a bad length %u", idx, len);
		seen->dev[idx] = true;
		struct snap_device *d = &s->devs[idx];
		if (get32(p) != d->id)
			return BAD("device section %u is device kind %u, the device list says %u",
				   idx, get32(p), d->id);
		d->len = len - 4;
		d->blob = malloc(d->len ? d->len : 1);
		if (!d->blob)
			return msb_err_sys(err, "allocating");
		memcpy(d->blob, p + 4, d->len);
		return 0;
	}
	default:
		return BAD("unknown section type %u", type);
	}
}

static int check_complete(const struct snapshot *s, const struct seen *seen, struct msb_err *err)
{
	if (!seen->vm)
		return BAD("the vm section is missing");
	const uint32_t need = 1u << (SEC_REGS - SEC_REGS) | 1u << (SEC_SREGS - SEC_REGS) |
			      1u << (SEC_FPU - SEC_REGS) | 1u << (SEC_LAPIC - SEC_REGS) |
			      1u << (SEC_EVENTS - SEC_REGS) | 1u << (SEC_MP_STATE - SEC_REGS) |
			      1u << (SEC_MSRS - SEC_REGS);
	for (uint32_t i = 0; i < s->ncpus; i++)
		if ((seen->vcpu[i] & need) != need)
			return BAD("vCPU %u's state is incomplete", i);
	for (int i = 0; i < 3; i++)
		if (!seen->irqchip[i])
			return BAD("irqchip %d's state is missing", i);
	if (!seen->pit || !seen->clock || !seen->serial || !seen->i8042)
		return BAD("the PIT, clock, serial or i8042 state is missing");
	for (uint32_t i = 0; i < s->ndevs; i++)
		if (!seen->dev[i])
			return BAD("device %u's state is missing", i);
	return 0;
}

int snap_decode(const uint8_t *buf, size_t len, struct snapshot *s, struct msb_err *err)
{
	memset(s, 0, sizeof(*s));
	if (len < SNAP_HEADER_SIZE)
		return BAD("the state file is truncated (%zu bytes, less than its header)", len);
	if (memcmp(buf, SNAP_MAGIC, 8) != 0)
		return BAD("not a snapshot state file (wrong magic)");
	uint32_t version = get32(buf + 8);
	if (version != SNAP_VERSION)
		return BAD("the snapshot has format version %u; this msb-vmm reads version %u "
			   "(rebuild the snapshot)",
			   version, SNAP_VERSION);
	uint64_t body = get64(buf + 16);
	if (body > SNAP_STATE_MAX)
		return BAD("the state file claims %llu bytes (at most %u)",
			   (unsigned long long)body, SNAP_STATE_MAX);
	if (len < SNAP_HEADER_SIZE + body)
		return BAD("the state file is truncated (%zu of %llu bytes)", len,
			   (unsigned long long)(SNAP_HEADER_SIZE + body));
	if (len > SNAP_HEADER_SIZE + body)
		return BAD("the state file has %llu bytes of trailing garbage",
			   (unsigned long long)(len - SNAP_HEADER_SIZE - body));
	uint32_t crc = snap_crc32c(0, buf, 24);
	crc = snap_crc32c(crc, buf + SNAP_HEADER_SIZE, (size_t)body);
	if (crc != get32(buf + 24))
		return BAD("the state file is corrupt (checksum mismatch)");
	if (get32(buf + 12) != 0 || get32(buf + 28) != 0)
		return BAD("the state file's header has unknown flags");

	struct seen seen = {0};
	const uint8_t *p = buf + SNAP_HEADER_SIZE, *end = p + body;
	int rc = 0;
	while (p < end && rc == 0) {
		if ((size_t)(end - p) < 12) {
			rc = BAD("a section header is cut short");
			break;
		}
		uint32_t type = get32(p), idx = get32(p + 4), slen = get32(p + 8);
		p += 12;
		if (slen > (size_t)(end - p)) {
			rc = BAD("section %u runs past the end of the file", type);
			break;
		}
		rc = decode_section(type, idx, p, slen, s, &seen, err);
		p += slen;
	}
	if (rc == 0)
		rc = check_complete(s, &seen, err);
	free(seen.vcpu);
	if (rc < 0) {
		struct msb_err keep = *err;
		snap_free(s);
		*err = keep;
	}
	return rc;
}
