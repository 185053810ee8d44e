/* A 16550A UART at COM1 (0x3f8, IRQ 4), output only.
 *
 * Enough of the chip for Linux's 8250 driver to find a 16550A, use it as a
 * console and drive it by interrupt (transmit-holding-register-empty); input is
 * never offered.  Every guest byte costs a vCPU exit, so the serial console is
 * for debugging: without an output file the bytes are answered and dropped.
 */
#ifndef MSB_VMM_SERIAL_H
#define MSB_VMM_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ	 4
#define SERIAL_NPORTS	 8

struct serial {
	pthread_mutex_t lock;
	int out_fd; /* borrowed; -1 drops output */
	/* Pulses the UART's interrupt line (edge), may be NULL. */
	void (*irq)(void *ctx);
	void *irq_ctx;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thre_pending; /* a transmit-empty interrupt waits to be seen in IIR */
};

void serial_init(struct serial *s, int out_fd, void (*irq)(void *ctx), void *irq_ctx);
void serial_destroy(struct serial *s);

/* The bus handler for the 8 ports at SERIAL_COM1_BASE (ctx: struct serial *). */
void serial_pio(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write);

#endif
