MODULES += cli
cli_LDLIBS :=
BINS += msb
msb_SRCS := src/cli/main.c
msb_MODULES := cli sandbox agent server client oci rootfs project common

# msx / msi / msr: msb under another name behaves as exe / install / run.
MSB_ALIASES := $(addprefix $(O)/bin/,msx msi msr)
$(MSB_ALIASES): $(O)/bin/msb
	ln -sfn msb $@
EXTRA_TARGETS += $(MSB_ALIASES)
