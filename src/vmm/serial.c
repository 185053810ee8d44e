#include "vmm/serial.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

enum { THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

#define IER_THRI     0x02
#define IIR_NONE     0x01
#define IIR_THRI     0x02
#define IIR_FIFO     0xc0
#define FCR_ENABLE   0x01
#define LCR_DLAB     0x80
#define LSR_THRE     0x20
#define LSR_TEMT     0x40
#define MCR_LOOP     0x10
#define MSR_DEFAULTS 0xb0 /* DCD, DSR, CTS: a cable with the other end ready */

void serial_init(struct serial *s, int out_fd, void (*irq)(void *ctx), void *irq_ctx)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->irq = irq;
	s->irq_ctx = irq_ctx;
	s->mcr = 0x08; /* OUT2 */
	s->dll = 12;   /* 9600 baud, as after reset */
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

static void emit(struct serial *s, uint8_t byte)
{
	if (s->out_fd < 0)
		return;
	for (;;) {
		ssize_t n = write(s->out_fd, &byte, 1);
		if (n < 0 && errno == EINTR)
			continue;
		/* A full or closed output loses the byte, never stalls the guest. */
		return;
	}
}

/* Whether the UART wants an interrupt now. */
static bool irq_wanted(const struct serial *s)
{
	return (s->ier & IER_THRI) && s->thre_pending;
}

static uint8_t modem_status(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return MSR_DEFAULTS;
	/* Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (the driver's probe). */
	uint8_t m = s->mcr;
	return (uint8_t)(((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) |
			 ((m & 0x08) << 4));
}

static uint8_t reg_read(struct serial *s, unsigned reg)
{
	switch (reg) {
	case THR:
		return (s->lcr & LCR_DLAB) ? s->dll : 0;
	case IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case IIR: {
		uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
		if (irq_wanted(s)) {
			s->thre_pending = false; /* reading IIR acknowledges THRE */
			return fifo | IIR_THRI;
		}
		return fifo | IIR_NONE;
	}
	case LCR:
		return s->lcr;
	case MCR:
		return s->mcr;
	case LSR:
		return LSR_THRE | LSR_TEMT;
	case MSR:
		return modem_status(s);
	default:
		return s->scr;
	}
}

/* Returns true when the interrupt line should be pulsed. */
static bool reg_write(struct serial *s, unsigned reg, uint8_t v)
{
	bool before = irq_wanted(s);
	switch (reg) {
	case THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			return false;
		}
		if (!(s->mcr & MCR_LOOP))
			emit(s, v);
		/* Sent at once: the holding register is empty again. */
		s->thre_pending = true;
		return irq_wanted(s);
	case IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			return false;
		}
		s->ier = v & 0x0f;
		if (s->ier & IER_THRI)
			s->thre_pending = true;
		return !before && irq_wanted(s);
	case IIR:
		s->fcr = v;
		return false;
	case LCR:
		s->lcr = v;
		return false;
	case MCR:
		s->mcr = v & 0x1f;
		return false;
	case SCR:
		s->scr = v;
		return false;
	default: /* LSR, MSR: read-only */
		return false;
	}
}

void serial_pio(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write)
{
	struct serial *s = ctx;
	uint8_t *b = data;
	bool pulse = false;
	pthread_mutex_lock(&s->lock);
	/* Wider accesses touch consecutive registers, as on a real ISA bus. */
	for (uint32_t i = 0; i < len && offset + i < SERIAL_NPORTS; i++) {
		if (is_write)
			pulse |= reg_write(s, (unsigned)(offset + i), b[i]);
		else
			b[i] = reg_read(s, (unsigned)(offset + i));
	}
	pthread_mutex_unlock(&s->lock);
	if (pulse && s->irq)
		s->irq(s->irq_ctx);
}
