MODULES += cli
cli_LDLIBS :=
BINS += msb
msb_SRCS := src/cli/main.c
msb_MODULES := cli server oci rootfs project common
