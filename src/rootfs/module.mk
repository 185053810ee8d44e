MODULES += rootfs
rootfs_LDLIBS := -larchive -lext2fs -lcom_err
# A tool around rootfs_build() for tests, benchmarks and debugging (src/rootfs/main.c).
BINS += msb-rootfs
msb-rootfs_SRCS := src/rootfs/main.c
msb-rootfs_MODULES := rootfs common
