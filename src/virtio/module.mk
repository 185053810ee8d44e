MODULES += virtio
virtio_LDLIBS :=
