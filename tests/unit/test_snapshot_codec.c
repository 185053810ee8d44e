/* The snapshot state file's codec and the snapshot directory: round trips,
 * and every kind of damage refused with a message that says what is wrong. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "vmm/snapshot.h"

static void fill(struct snapshot *s, unsigned ncpus)
{
	memset(s, 0, sizeof(*s));
	if (snap_alloc_vcpus(s, ncpus, NULL) < 0)
		abort();
	memset(s->id, 0xab, sizeof(s->id));
	s->mem_bytes = 64ull << 20;
	s->nregions = 1;
	s->regions[0] = (struct snap_region){0, 64ull << 20};
	for (unsigned i = 0; i < ncpus; i++) {
		struct snap_vcpu *v = &s->vcpus[i];
		v->present = SNAP_HAS_XSAVE | SNAP_HAS_XCRS | (i ? 0 : SNAP_HAS_DEBUGREGS);
		v->regs.rip = 0x1000000 + i;
		v->regs.rax = 12345 + i;
		v->sregs.cr3 = 0x9000;
		v->fpu.fcw = 0x37f;
		v->xsave[5] = 0x1234 + i;
		v->xcrs.nr_xcrs = 1;
		v->lapic.regs[0x20] = (char)i;
		v->events.exception.injected = 1;
		v->mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
		v->debugregs.dr7 = 0x400;
		v->nmsrs = 3;
		v->msrs = calloc(3, sizeof(*v->msrs));
		v->msrs[0] = (struct kvm_msr_entry){.index = 0x10, .data = 999};
		v->msrs[1] =
			(struct kvm_msr_entry){.index = 0xc0000082, .data = 0xffffffff81000000};
		v->msrs[2] = (struct kvm_msr_entry){.index = 0x4b564d01, .data = 0x5001};
	}
	for (uint32_t c = 0; c < 3; c++) {
		s->irqchip[c].chip_id = c;
		s->irqchip[c].chip.dummy[7] = (char)(c + 1);
	}
	s->pit.channels[0].count = 0x1234;
	s->clock.clock = 987654321;
	s->serial = (struct snap_serial){.ier = 2, .lcr = 3, .dll = 1, .thre_pending = 1};
	s->i8042 = (struct snap_i8042){.ctr = 0x47};
	s->ndevs = 2;
	s->devs[0] = (struct snap_device){2, (uint8_t *)strdup("blk-state"), 9};
	s->devs[1] = (struct snap_device){19, (uint8_t *)strdup(""), 0};
	s->cmdline = strdup("console=hvc0 quiet");
}

static uint8_t *encoded(size_t *len)
{
	struct snapshot s;
	fill(&s, 2);
	uint8_t *buf = NULL;
	struct msb_err err = {0};
	if (snap_encode(&s, &buf, len, &err) < 0)
		abort();
	snap_free(&s);
	return buf;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* Make the header agree with a body that was changed on purpose. */
static void reseal(uint8_t *buf, size_t len)
{
	uint64_t body = len - SNAP_HEADER_SIZE;
	memcpy(buf + 16, &body, 8);
	uint32_t crc = snap_crc32c(0, buf, 24);
	crc = snap_crc32c(crc, buf + SNAP_HEADER_SIZE, body);
	wr32(buf + 24, crc);
}

/* Offset of the k-th section (k from 0), or 0 when there are fewer. */
static size_t section_at(const uint8_t *buf, size_t len, unsigned k)
{
	size_t off = SNAP_HEADER_SIZE;
	while (off + 12 <= len) {
		if (k-- == 0)
			return off;
		off += 12 + rd32(buf + off + 8);
	}
	return 0;
}

static const char *decode_err(const uint8_t *buf, size_t len, struct msb_err *err)
{
	struct snapshot s;
	memset(err, 0, sizeof(*err));
	if (snap_decode(buf, len, &s, err) == 0) {
		snap_free(&s);
		return NULL;
	}
	return err->msg;
}

#define CHECK_REFUSED(buf, len, needle)                                               \
	do {                                                                          \
		struct msb_err e_;                                                    \
		const char *m_ = decode_err((buf), (len), &e_);                       \
		if (!m_)                                                              \
			TEST_FAIL("decoded, expected a refusal with '%s'", (needle)); \
		if (!strstr(m_, (needle)))                                            \
			TEST_FAIL("message '%s' lacks '%s'", m_, (needle));           \
		CHECK_INT(e_.kind, ==, MSB_EK_CORRUPT);                               \
	} while (0)

TEST(crc32c_known_value)
{
	CHECK_INT(snap_crc32c(0, "123456789", 9), ==, 0xe3069283u);
	/* Incremental = one shot. */
	CHECK_INT(snap_crc32c(snap_crc32c(0, "1234", 4), "56789", 5), ==, 0xe3069283u);
}

TEST(round_trip_keeps_every_field)
{
	struct snapshot a, b;
	fill(&a, 2);
	uint8_t *buf;
	size_t len;
	struct msb_err err = {0};
	CHECK_INT(snap_encode(&a, &buf, &len, &err), ==, 0);
	CHECK_INT(snap_decode(buf, len, &b, &err), ==, 0);
	CHECK_INT(b.ncpus, ==, 2);
	CHECK_INT(b.mem_bytes, ==, 64ull << 20);
	CHECK_INT(b.nregions, ==, 1);
	CHECK(memcmp(a.id, b.id, sizeof(a.id)) == 0);
	CHECK_STR(b.cmdline, "console=hvc0 quiet");
	for (unsigned i = 0; i < 2; i++) {
		const struct snap_vcpu *x = &a.vcpus[i], *y = &b.vcpus[i];
		CHECK_INT(y->present, ==, x->present);
		CHECK(memcmp(&x->regs, &y->regs, sizeof(x->regs)) == 0);
		CHECK(memcmp(&x->sregs, &y->sregs, sizeof(x->sregs)) == 0);
		CHECK(memcmp(&x->fpu, &y->fpu, sizeof(x->fpu)) == 0);
		CHECK(memcmp(x->xsave, y->xsave, sizeof(x->xsave)) == 0);
		CHECK(memcmp(&x->lapic, &y->lapic, sizeof(x->lapic)) == 0);
		CHECK(memcmp(&x->events, &y->events, sizeof(x->events)) == 0);
		CHECK_INT(y->mp_state.mp_state, ==, KVM_MP_STATE_RUNNABLE);
		CHECK_INT(y->nmsrs, ==, 3);
		CHECK(memcmp(x->msrs, y->msrs, 3 * sizeof(*x->msrs)) == 0);
	}
	CHECK_INT(b.vcpus[0].debugregs.dr7, ==, 0x400);
	CHECK(!(b.vcpus[1].present & SNAP_HAS_DEBUGREGS));
	CHECK(memcmp(a.irqchip, b.irqchip, sizeof(a.irqchip)) == 0);
	CHECK_INT(b.pit.channels[0].count, ==, 0x1234);
	CHECK_INT(b.clock.clock, ==, 987654321);
	CHECK(memcmp(&a.serial, &b.serial, sizeof(a.serial)) == 0);
	CHECK_INT(b.i8042.ctr, ==, 0x47);
	CHECK_INT(b.ndevs, ==, 2);
	CHECK_INT(b.devs[0].id, ==, 2);
	CHECK_INT(b.devs[0].len, ==, 9);
	CHECK(memcmp(b.devs[0].blob, "blk-state", 9) == 0);
	CHECK_INT(b.devs[1].id, ==, 19);
	CHECK_INT(b.devs[1].len, ==, 0);
	free(buf);
	snap_free(&a);
	snap_free(&b);
}

TEST(every_truncation_is_refused)
{
	size_t len;
	uint8_t *buf = encoded(&len);
	for (size_t n = 0; n < len; n++) {
		struct msb_err e;
		if (!decode_err(buf, n, &e))
			TEST_FAIL("a file cut to %zu of %zu bytes decoded", n, len);
		if (!strstr(e.msg, "truncated"))
			TEST_FAIL("cut to %zu: '%s'", n, e.msg);
	}
	free(buf);
}

TEST(any_flipped_bit_fails_the_checksum)
{
	size_t len;
	uint8_t *buf = encoded(&len);
	for (size_t off = 24; off < len; off += 97) {
		buf[off] ^= 0x10;
		CHECK_REFUSED(buf, len, "checksum");
		buf[off] ^= 0x10;
	}
	struct msb_err e;
	CHECK(decode_err(buf, len, &e) == NULL);
	free(buf);
}

TEST(wrong_magic_version_size_and_trailing_bytes)
{
	size_t len;
	uint8_t *buf = encoded(&len);
	buf[0] = 'X';
	CHECK_REFUSED(buf, len, "wrong magic");
	buf[0] = 'M';
	wr32(buf + 8, 1); /* format 1: vsock state without connections */
	reseal(buf, len);
	CHECK_REFUSED(buf, len, "version 1");
	wr32(buf + 8, SNAP_VERSION + 1);
	reseal(buf, len);
	CHECK_REFUSED(buf, len, "version 3");
	wr32(buf + 8, SNAP_VERSION);
	uint64_t huge = (uint64_t)SNAP_STATE_MAX + 1;
	memcpy(buf + 16, &huge, 8);
	CHECK_REFUSED(buf, len, "at most");
	reseal(buf, len);
	uint8_t *longer = malloc(len + 5);
	memcpy(longer, buf, len);
	memset(longer + len, 0, 5);
	CHECK_REFUSED(longer, len + 5, "trailing");
	free(longer);
	free(buf);
}

/* Sections made wrong on purpose, each with a valid checksum. */
TEST(bad_sections_are_refused)
{
	size_t len;
	uint8_t *buf = encoded(&len);
	uint8_t *w = malloc(len + 64);

	/* Each section left out in turn: the cmdline is the only optional one
	 * (and XSAVE/XCRS/DEBUGREGS, which mark themselves present). */
	unsigned removed_refused = 0, k;
	for (k = 0;; k++) {
		size_t off = section_at(buf, len, k);
		if (!off)
			break;
		size_t slen = 12 + rd32(buf + off + 8);
		uint32_t type = rd32(buf + off);
		memcpy(w, buf, off);
		memcpy(w + off, buf + off + slen, len - off - slen);
		reseal(w, len - slen);
		struct msb_err e;
		const char *m = decode_err(w, len - slen, &e);
		bool optional = type == 2 || type == 13 || type == 14 || type == 18;
		if (optional) {
			CHECK(m == NULL);
		} else {
			if (!m)
				TEST_FAIL("section %u (type %u) left out, still decoded", k, type);
			removed_refused++;
		}
	}
	CHECK_INT(removed_refused, >, 20);

	/* The first vCPU section repeated. */
	size_t regs = section_at(buf, len, 2);
	CHECK_INT(rd32(buf + regs), ==, 10);
	size_t rl = 12 + rd32(buf + regs + 8);
	uint8_t *dup = malloc(len + rl);
	memcpy(dup, buf, len);
	memcpy(dup + len, buf + regs, rl);
	reseal(dup, len + rl);
	CHECK_REFUSED(dup, len + rl, "twice");

	/* An unknown section type. */
	memcpy(w, buf, len);
	wr32(w + regs, 77);
	reseal(w, len);
	CHECK_REFUSED(w, len, "unknown section");

	/* A vCPU section naming a vCPU that does not exist. */
	memcpy(w, buf, len);
	wr32(w + regs + 4, 9);
	reseal(w, len);
	CHECK_REFUSED(w, len, "vCPU 9");

	/* A fixed-size section of the wrong size (the length grows into the next). */
	memcpy(w, buf, len);
	wr32(w + regs + 8, rd32(w + regs + 8) - 8);
	reseal(w, len);
	struct msb_err e;
	CHECK(decode_err(w, len, &e) != NULL);

	/* A section length past the end. */
	memcpy(w, buf, len);
	wr32(w + regs + 8, 0x7fffffff);
	reseal(w, len);
	CHECK_REFUSED(w, len, "past the end");

	/* The vm section: 0 vCPUs; then a device section of another kind. */
	size_t vm = section_at(buf, len, 0);
	memcpy(w, buf, len);
	wr32(w + vm + 12, 0);
	reseal(w, len);
	CHECK_REFUSED(w, len, "0 vCPUs");
	for (k = 0;; k++) {
		size_t off = section_at(buf, len, k);
		CHECK(off != 0);
		if (rd32(buf + off) == 50) {
			memcpy(w, buf, len);
			wr32(w + off + 12, 3);
			reseal(w, len);
			CHECK_REFUSED(w, len, "device kind 3");
			break;
		}
	}
	free(dup);
	free(w);
	free(buf);
}

/* ---- the directory ------------------------------------------------------------------ */

static char tmpdir[64];

static void make_tmp(void)
{
	strcpy(tmpdir, "/tmp/msb-snap-XXXXXX");
	if (!mkdtemp(tmpdir))
		abort();
}

static void rm_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		abort();
}

TEST(directory_round_trip_is_sparse_and_atomic)
{
	make_tmp();
	size_t ram_size = 8u << 20;
	uint8_t *ram =
		mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ram != MAP_FAILED);
	memset(ram + 4096, 0x5a, 4096);
	memcpy(ram + (5u << 20) + 17, "hello", 5);
	struct guest_mem m;
	gm_init_flat(&m, ram, ram_size);
	struct snapshot s;
	fill(&s, 1);
	s.mem_bytes = ram_size;
	s.regions[0].size = ram_size;
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/snap", tmpdir);
	struct msb_err err = {0};
	CHECK_INT(snap_write_dir(dir, &s, &m, &err), ==, 0);
	uint8_t id[SNAP_ID_SIZE];
	memcpy(id, s.id, sizeof(id));
	snap_free(&s);

	char p[192];
	struct stat st;
	snprintf(p, sizeof(p), "%s/memory", dir);
	CHECK_INT(stat(p, &st), ==, 0);
	CHECK_INT(st.st_size, ==, ram_size + SNAP_MEM_TRAILER);
	/* Two data pages and the trailer, not 8 MiB (filesystems allocate in
	 * blocks of up to 64 KiB here and there). */
	CHECK_INT(st.st_blocks * 512, <=, 512 * 1024);
	snprintf(p, sizeof(p), "%s/memory.tmp", dir);
	CHECK_INT(access(p, F_OK), ==, -1);
	snprintf(p, sizeof(p), "%s/state.tmp", dir);
	CHECK_INT(access(p, F_OK), ==, -1);

	int fd = -1;
	CHECK_INT(snap_read_dir(dir, &s, &fd, &err), ==, 0);
	CHECK(memcmp(s.id, id, sizeof(id)) == 0);
	uint8_t page[4096];
	CHECK_INT(pread(fd, page, sizeof(page), 4096), ==, 4096);
	CHECK_INT(page[100], ==, 0x5a);
	CHECK_INT(pread(fd, page, 5, (5 << 20) + 17), ==, 5);
	CHECK(memcmp(page, "hello", 5) == 0);
	close(fd);
	snap_free(&s);

	/* A second snapshot's memory under the first one's state: refused. */
	char dir2[128];
	snprintf(dir2, sizeof(dir2), "%s/snap2", tmpdir);
	fill(&s, 1);
	s.mem_bytes = ram_size;
	s.regions[0].size = ram_size;
	CHECK_INT(snap_write_dir(dir2, &s, &m, &err), ==, 0);
	snap_free(&s);
	char from[192], to[192];
	snprintf(from, sizeof(from), "%s/memory", dir2);
	snprintf(to, sizeof(to), "%s/memory", dir);
	CHECK_INT(rename(from, to), ==, 0);
	CHECK_INT(snap_read_dir(dir, &s, &fd, &err), ==, -1);
	CHECK(strstr(err.msg, "another snapshot") != NULL);

	/* A truncated memory file. */
	CHECK_INT(truncate(to, ram_size), ==, 0);
	CHECK_INT(snap_read_dir(dir, &s, &fd, &err), ==, -1);
	CHECK(strstr(err.msg, "truncated") != NULL);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);

	/* No memory file; no state file. */
	CHECK_INT(unlink(to), ==, 0);
	CHECK_INT(snap_read_dir(dir, &s, &fd, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "memory") != NULL);
	CHECK_INT(snap_read_dir(tmpdir, &s, &fd, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "state") != NULL);
	munmap(ram, ram_size);
	rm_tmp();
}

TEST_MAIN(T(crc32c_known_value), T(round_trip_keeps_every_field), T(every_truncation_is_refused),
	  T(any_flipped_bit_fails_the_checksum), T(wrong_magic_version_size_and_trailing_bytes),
	  T(bad_sections_are_refused), T(directory_round_trip_is_sparse_and_atomic))
