# msb-init twice: a host build (msb-init --serve-unix, for tests; sanitizers
# apply) and the guest build, static with its own flags, packed as /init in an
# uncompressed newc initramfs.
MODULES += init
init_LDLIBS :=
BINS += msb-init
msb-init_SRCS := src/init/main.c
msb-init_MODULES := init agent common

GUEST_O := $(O)/guest
GUEST_SRCS := $(wildcard src/init/*.c) src/agent/codec.c src/agent/files_codec.c src/agent/codec_setup.c src/common/clock.c src/common/error.c src/common/log.c src/common/paths.c
# musl makes a ~10x smaller static binary than glibc (docs/agent-protocol.md);
# it has no kernel headers of its own, so point it at Debian's.
GUEST_CC := $(shell command -v musl-gcc 2>/dev/null)
ifeq ($(GUEST_CC),)
GUEST_CC := gcc
GUEST_INC :=
else
GUEST_INC := -isystem $(GUEST_O)/include
endif
GUEST_CFLAGS := -std=gnu17 $(WARNINGS_GCC) -D_GNU_SOURCE -Isrc -I. -Os -static \
	-ffunction-sections -fdata-sections -Wl,--gc-sections -s

$(GUEST_O)/include/.stamp:
	@mkdir -p $(@D)
	ln -sfn /usr/include/linux $(@D)/linux
	ln -sfn /usr/include/asm-generic $(@D)/asm-generic
	ln -sfn /usr/include/$(shell gcc -print-multiarch)/asm $(@D)/asm
	@touch $@

$(GUEST_O)/msb-init: $(GUEST_SRCS) $(wildcard src/init/*.h src/agent/*.h src/common/*.h) \
		$(GUEST_O)/include/.stamp
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_INC) -o $@ $(GUEST_SRCS)

$(O)/initramfs.cpio: $(GUEST_O)/msb-init src/init/mkinitramfs.sh
	src/init/mkinitramfs.sh $< $@

EXTRA_TARGETS += $(O)/initramfs.cpio
