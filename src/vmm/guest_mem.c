#include "vmm/guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static void layout(struct guest_mem *m, uint8_t *host, uint64_t ram_size)
{
	m->ram_size = ram_size;
	m->nregions = 0;
	uint64_t low = ram_size < GM_MMIO_GAP_START ? ram_size : GM_MMIO_GAP_START;
	m->regions[m->nregions++] = (struct gm_region){.gpa = 0, .size = low, .host = host};
	if (ram_size > low)
		m->regions[m->nregions++] = (struct gm_region){
			.gpa = GM_HIGH_RAM_START, .size = ram_size - low, .host = host + low};
}

int gm_map(struct guest_mem *m, uint64_t ram_size, struct msb_err *err)
{
	memset(m, 0, sizeof(*m));
	if (ram_size == 0 || ram_size % 4096)
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"guest memory must be a non-zero multiple of 4 KiB (got %llu bytes)",
			(unsigned long long)ram_size);
	void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return msb_err_sys(err, "mapping %llu MiB of guest memory",
				   (unsigned long long)(ram_size >> 20));
	m->base = p;
	m->map_size = ram_size;
	layout(m, p, ram_size);
	return 0;
}

int gm_map_file(struct guest_mem *m, int fd, uint64_t ram_size, struct msb_err *err)
{
	memset(m, 0, sizeof(*m));
	if (ram_size == 0 || ram_size % 4096)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "guest memory must be a non-zero multiple of 4 KiB");
	void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return msb_err_sys(err, "mapping %llu MiB of guest memory from its file",
				   (unsigned long long)(ram_size >> 20));
	m->base = p;
	m->map_size = ram_size;
	layout(m, p, ram_size);
	return 0;
}

void gm_init_flat(struct guest_mem *m, void *host, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	m->ram_size = size;
	m->nregions = 1;
	m->regions[0] = (struct gm_region){.gpa = 0, .size = size, .host = host};
}

void gm_unmap(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, m->map_size);
	memset(m, 0, sizeof(*m));
}

void *gm_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct gm_region *r = &m->regions[i];
		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		/* off <= size and len <= size - off: no addition that can wrap. */
		if (off > r->size || len > r->size - off)
			continue;
		return r->host + off;
	}
	return NULL;
}

bool gm_valid(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return gm_ptr(m, gpa, len) != NULL;
}

int gm_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gm_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}
