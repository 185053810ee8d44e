/* The Intel MultiProcessor Specification 1.4 table.
 *
 * Without ACPI the kernel learns the vCPUs (their local APIC ids), the IOAPIC
 * and how ISA interrupts reach it only from this table, whose floating pointer
 * it looks for in the last KiB of base memory.  Without it a guest sees one CPU and
 * no IOAPIC.
 *
 * Interrupt routing declared here matches KVM's default GSI routing: ISA IRQ n
 * goes to IOAPIC pin n (n < MPTABLE_IRQS), LINT0 is ExtINT and LINT1 is NMI.
 */
#ifndef MSB_VMM_MPTABLE_H
#define MSB_VMM_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define MPTABLE_IRQS	    16
#define MPTABLE_IOAPIC_ADDR 0xfec00000u
#define MPTABLE_LAPIC_ADDR  0xfee00000u
#define MPTABLE_MAX_CPUS    254

/* Bytes the table takes for `ncpus` vCPUs (floating pointer included). */
size_t mptable_size(unsigned ncpus);

/* Build the configuration table for `ncpus` vCPUs (APIC ids 0..ncpus-1, vCPU
 * 0 the boot processor) followed by the 16-byte floating pointer into `buf`
 * (`cap` bytes), as it will sit at guest physical address `gpa`; place it at
 * (0xa0000 - size) & ~15 so the pointer ends up in the last KiB below 640K.  Returns the size
 * written, or 0 when ncpus is 0 or above MPTABLE_MAX_CPUS or the buffer is too small. */
size_t mptable_build(void *buf, size_t cap, uint32_t gpa, unsigned ncpus);

#endif
