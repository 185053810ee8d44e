MODULES += vmm
vmm_LDLIBS :=
