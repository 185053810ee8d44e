# libmicrosandbox, the C client of an msb server (include/microsandbox.h,
# docs/sdk.md).  As a module it is libmsb_client.a for the project's own
# programs and tests; the public libraries are the same sources built
# position-independent: build/$(BUILD)/lib/libmicrosandbox.{so.0,a}, the
# shared one exporting only what src/client/libmicrosandbox.map lists.
MODULES += client
client_LDLIBS := -lcurl -ljansson

# common/b64.c goes into the public libraries too (its symbols stay hidden in
# the shared one: the version script exports only msbc_*).
CLIENT_SRCS := $(filter-out src/client/main%.c,$(wildcard src/client/*.c)) src/common/b64.c
CLIENT_PIC_OBJS := $(patsubst %.c,$(O)/pic/%.o,$(CLIENT_SRCS))
CLIENT_SONAME := libmicrosandbox.so.0
CLIENT_SO := $(O)/lib/libmicrosandbox.so.0.2.0
CLIENT_A := $(O)/lib/libmicrosandbox.a
# sanitizer runtimes stay undefined in a shared object
CLIENT_LD_NOUNDEF := -Wl,--no-undefined
CLIENT_NO_UNDEF := $(if $(filter release debug,$(BUILD)),$(CLIENT_LD_NOUNDEF))

$(O)/pic/src/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(CLIENT_SO): $(CLIENT_PIC_OBJS) src/client/libmicrosandbox.map
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -shared -Wl,-soname,$(CLIENT_SONAME) \
		-Wl,--version-script=src/client/libmicrosandbox.map $(CLIENT_NO_UNDEF) \
		-o $@ $(CLIENT_PIC_OBJS) -lcurl -ljansson
	ln -sf libmicrosandbox.so.0.2.0 $(O)/lib/$(CLIENT_SONAME)
	ln -sf $(CLIENT_SONAME) $(O)/lib/libmicrosandbox.so

$(CLIENT_A): $(CLIENT_PIC_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

.PHONY: libmicrosandbox
libmicrosandbox: $(CLIENT_SO) $(CLIENT_A)
EXTRA_TARGETS += $(CLIENT_SO) $(CLIENT_A)
