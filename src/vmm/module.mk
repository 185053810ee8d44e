MODULES += vmm
vmm_LDLIBS :=

# msb-vmm: the KVM virtual machine monitor, one process per VM.  It links the
# virtio devices once src/virtio/ provides them (devices.c checks the same).
BINS += msb-vmm
msb-vmm_SRCS := src/vmm/main.c
msb-vmm_MODULES := vmm $(if $(wildcard src/virtio/module.mk),virtio) common
