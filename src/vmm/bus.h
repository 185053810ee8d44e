/* Dispatch of guest port I/O and MMIO exits to device handlers.
 *
 * A bus is a small sorted table of non-overlapping address ranges, each with a
 * handler.  msb-vmm has two: the PIO bus (UART, i8042, power port) and the MMIO
 * bus (virtio-mmio windows).  Ranges are added before the vCPUs start and the
 * table is read-only afterwards, so lookups take no lock; handlers that share
 * state between vCPUs lock it themselves.
 */
#ifndef MSB_VMM_BUS_H
#define MSB_VMM_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

#define BUS_MAX_RANGES 32

/* `offset` is relative to the range's base; `data` holds `len` bytes in guest
 * (little-endian) order, filled by a read handler, consumed by a write. */
typedef void (*bus_fn)(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_fn fn;
	void *ctx; /* borrowed */
};

struct bus {
	struct bus_range ranges[BUS_MAX_RANGES];
	unsigned n;
};

void bus_init(struct bus *b);

/* Add [base, base + len).  -1 (internal error) when it overlaps a range
 * already there, wraps, is empty, or the table is full. */
int bus_add(struct bus *b, uint64_t base, uint64_t len, bus_fn fn, void *ctx, struct msb_err *err);

/* The range holding all of [addr, addr + len), or NULL. */
const struct bus_range *bus_find(const struct bus *b, uint64_t addr, uint32_t len);

/* Call the handler of the range holding the access.  When none does, a read
 * returns all ones (as an absent ISA device does) and false is returned. */
bool bus_access(const struct bus *b, uint64_t addr, void *data, uint32_t len, bool is_write);

#endif
