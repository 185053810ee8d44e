MODULES += rootfs
rootfs_LDLIBS := -larchive -lext2fs -lcom_err
