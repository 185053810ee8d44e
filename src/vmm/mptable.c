#include "vmm/mptable.h"

#include <string.h>

/* Sizes fixed by the MP specification. */
#define MPF_SIZE	  16
#define MPC_HEADER_SIZE	  44
#define MPC_CPU_SIZE	  20
#define MPC_ENTRY_SIZE	  8 /* bus, IOAPIC, I/O and local interrupt entries */
#define MP_APIC_VERSION	  0x14
#define MP_IOAPIC_VERSION 0x11

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)(0x100 - sum);
}

static size_t mpc_size(unsigned ncpus)
{
	/* cpus, one bus, one IOAPIC, the ISA IRQs, two local interrupts */
	return MPC_HEADER_SIZE + (size_t)ncpus * MPC_CPU_SIZE +
	       (2 + MPTABLE_IRQS + 2) * MPC_ENTRY_SIZE;
}

size_t mptable_size(unsigned ncpus)
{
	return ((mpc_size(ncpus) + 15) & ~(size_t)15) + MPF_SIZE;
}

static uint8_t *entry8(uint8_t *p, uint8_t type, uint8_t a, uint16_t flags, uint8_t bus,
		       uint8_t irq, uint8_t dst, uint8_t pin)
{
	p[0] = type;
	p[1] = a;
	put16(p + 2, flags);
	p[4] = bus;
	p[5] = irq;
	p[6] = dst;
	p[7] = pin;
	return p + MPC_ENTRY_SIZE;
}

size_t mptable_build(void *buf, size_t cap, uint32_t gpa, unsigned ncpus)
{
	size_t size = mptable_size(ncpus);
	if (ncpus == 0 || ncpus > MPTABLE_MAX_CPUS || cap < size)
		return 0;
	uint8_t *base = buf;
	memset(base, 0, size);
	uint8_t ioapic_id = (uint8_t)ncpus;

	/* The configuration table first, the floating pointer (16-byte aligned)
	 * last, so that placing the block at the end of base memory puts the
	 * pointer in the last KiB, where the kernel looks for it. */
	uint8_t *mpc = base;
	size_t fp_off = size - MPF_SIZE;
	uint8_t *p = mpc + MPC_HEADER_SIZE;
	uint16_t count = 0;
	for (unsigned i = 0; i < ncpus; i++, count++) {
		p[0] = MP_PROCESSOR;
		p[1] = (uint8_t)i; /* local APIC id */
		p[2] = MP_APIC_VERSION;
		p[3] = (uint8_t)(0x01 | (i == 0 ? 0x02 : 0)); /* enabled, boot processor */
		put32(p + 4, 0x600);			      /* family 6 */
		put32(p + 8, 0x201);			      /* FPU, APIC */
		p += MPC_CPU_SIZE;
	}
	p[0] = MP_BUS;
	p[1] = 0;
	memcpy(p + 2, "ISA   ", 6);
	p += MPC_ENTRY_SIZE;
	count++;
	p[0] = MP_IOAPIC;
	p[1] = ioapic_id;
	p[2] = MP_IOAPIC_VERSION;
	p[3] = 0x01; /* enabled */
	put32(p + 4, MPTABLE_IOAPIC_ADDR);
	p += MPC_ENTRY_SIZE;
	count++;
	for (uint8_t irq = 0; irq < MPTABLE_IRQS; irq++, count++)
		p = entry8(p, MP_INTSRC, MP_INT, 0, 0, irq, ioapic_id, irq);
	/* LINT0 of every local APIC is the 8259's ExtINT, LINT1 NMI. */
	p = entry8(p, MP_LINTSRC, MP_EXTINT, 0, 0, 0, 0xff, 0);
	p = entry8(p, MP_LINTSRC, MP_NMI, 0, 0, 0, 0xff, 1);
	count += 2;

	size_t mpc_len = (size_t)(p - mpc);
	memcpy(mpc, "PCMP", 4);
	put16(mpc + 4, (uint16_t)mpc_len);
	mpc[6] = 4; /* spec 1.4 */
	memcpy(mpc + 8, "MSB     ", 8);
	memcpy(mpc + 16, "MSB-VMM     ", 12);
	put16(mpc + 34, count);
	put32(mpc + 36, MPTABLE_LAPIC_ADDR);
	mpc[7] = checksum(mpc, mpc_len);

	uint8_t *fp = base + fp_off;
	memcpy(fp, "_MP_", 4);
	put32(fp + 4, gpa);
	fp[8] = 1; /* length in 16-byte units */
	fp[9] = 4; /* spec 1.4 */
	fp[10] = checksum(fp, MPF_SIZE);
	return size;
}
