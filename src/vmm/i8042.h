/* The few bits of the PS/2 controller (ports 0x60 and 0x64) a guest uses.
 *
 * The reason it exists: `reboot=k` resets the machine by writing command 0xFE
 * to port 0x64, which msb-vmm turns into "the guest reset" and an exit.  The
 * controller commands Linux's i8042 driver sends at boot (read/write the
 * configuration byte, self tests) are answered at once, so its probe ends in a
 * few exits instead of polling a silent port through its timeouts.  There is
 * no keyboard or mouse behind it.
 */
#ifndef MSB_VMM_I8042_H
#define MSB_VMM_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define I8042_DATA_PORT	   0x60
#define I8042_COMMAND_PORT 0x64

struct i8042 {
	pthread_mutex_t lock;
	void (*reset)(void *ctx); /* called on command 0xFE */
	void *reset_ctx;
	uint8_t ctr;	     /* controller configuration byte */
	uint8_t out;	     /* output buffer */
	bool out_full;	     /* status bit 0 */
	uint8_t pending_cmd; /* command waiting for its data byte, or 0 */
};

void i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx);
void i8042_destroy(struct i8042 *k);

/* Bus handlers (ctx: struct i8042 *) for the data port and the command port. */
void i8042_data_pio(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write);
void i8042_command_pio(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write);

#endif
