MODULES += cli
cli_LDLIBS :=
BINS += msb
msb_SRCS := src/cli/main.c
msb_MODULES := cli sandbox agent server oci rootfs project common
