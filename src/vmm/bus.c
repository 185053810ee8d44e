#include "vmm/bus.h"

#include <string.h>

void bus_init(struct bus *b)
{
	memset(b, 0, sizeof(*b));
}

int bus_add(struct bus *b, uint64_t base, uint64_t len, bus_fn fn, void *ctx, struct msb_err *err)
{
	if (len == 0 || base > UINT64_MAX - len || !fn)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "bad bus range 0x%llx+0x%llx",
				   (unsigned long long)base, (unsigned long long)len);
	if (b->n == BUS_MAX_RANGES)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "too many device ranges");
	unsigned i = 0;
	while (i < b->n && b->ranges[i].base < base)
		i++;
	/* Neighbours must end before us / start after us. */
	if (i > 0 && b->ranges[i - 1].base + b->ranges[i - 1].len > base)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "bus range 0x%llx overlaps another",
				   (unsigned long long)base);
	if (i < b->n && base + len > b->ranges[i].base)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "bus range 0x%llx overlaps another",
				   (unsigned long long)base);
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->n - i) * sizeof(b->ranges[0]));
	b->ranges[i] = (struct bus_range){.base = base, .len = len, .fn = fn, .ctx = ctx};
	b->n++;
	return 0;
}

const struct bus_range *bus_find(const struct bus *b, uint64_t addr, uint32_t len)
{
	unsigned lo = 0, hi = b->n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &b->ranges[mid];
		if (addr < r->base) {
			hi = mid;
		} else if (addr - r->base >= r->len) {
			lo = mid + 1;
		} else {
			/* addr is inside: the whole access must be too. */
			if (len > r->len - (addr - r->base))
				return NULL;
			return r;
		}
	}
	return NULL;
}

bool bus_access(const struct bus *b, uint64_t addr, void *data, uint32_t len, bool is_write)
{
	const struct bus_range *r = bus_find(b, addr, len);
	if (!r) {
		if (!is_write)
			memset(data, 0xff, len);
		return false;
	}
	r->fn(r->ctx, addr - r->base, data, len, is_write);
	return true;
}
