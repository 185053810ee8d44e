#include "vmm/i8042.h"

#include <string.h>

#define STATUS_OBF    0x01
#define STATUS_SYSTEM 0x04

enum {
	CMD_READ_CTR = 0x20,
	CMD_WRITE_CTR = 0x60,
	CMD_TEST_AUX = 0xa9,
	CMD_SELF_TEST = 0xaa,
	CMD_TEST_KBD = 0xab,
	CMD_WRITE_AUX = 0xd4,
	CMD_RESET = 0xfe,
};

void i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->reset = reset;
	k->reset_ctx = ctx;
	k->ctr = 0x30; /* both ports' clocks disabled, no interrupts */
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

static void reply(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->out_full = true;
}

void i8042_data_pio(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write)
{
	struct i8042 *k = ctx;
	uint8_t *b = data;
	pthread_mutex_lock(&k->lock);
	if (!is_write) {
		memset(b, 0, len);
		b[0] = k->out;
		k->out_full = false;
	} else if (k->pending_cmd == CMD_WRITE_CTR) {
		k->ctr = b[0];
		k->pending_cmd = 0;
	} else {
		/* A byte for the keyboard or the mouse: nobody is there. */
		k->pending_cmd = 0;
	}
	pthread_mutex_unlock(&k->lock);
}

void i8042_command_pio(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write)
{
	struct i8042 *k = ctx;
	uint8_t *b = data;
	bool reset = false;
	pthread_mutex_lock(&k->lock);
	if (!is_write) {
		memset(b, 0, len);
		b[0] = (uint8_t)(STATUS_SYSTEM | (k->out_full ? STATUS_OBF : 0));
	} else {
		switch (b[0]) {
		case CMD_READ_CTR:
			reply(k, k->ctr);
			break;
		case CMD_WRITE_CTR:
		case CMD_WRITE_AUX:
			k->pending_cmd = b[0];
			break;
		case CMD_SELF_TEST:
			reply(k, 0x55);
			break;
		case CMD_TEST_KBD:
			reply(k, 0x00);
			break;
		case CMD_TEST_AUX:
			reply(k, 0xff); /* no mouse port */
			break;
		case CMD_RESET:
			reset = true;
			break;
		default:
			break;
		}
	}
	pthread_mutex_unlock(&k->lock);
	if (reset && k->reset)
		k->reset(k->reset_ctx);
}
