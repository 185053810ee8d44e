# microsandbox — one non-recursive Makefile.
#
#   make                 build everything that runs on the host (BUILD=release)
#   make BUILD=debug     -O0, for gdb
#   make asan            ASan+UBSan build of everything host-side, then its unit tests
#   make test            unit tests, a short fuzz run, then integration tests
#   make unit            unit tests only
#   make fuzz            libFuzzer targets (clang), build/fuzz/bin/fuzz_*
#   make format          clang-format in place;  make format-check  fails on drift
#
# Each subsystem describes itself in src/<name>/module.mk:
#   MODULES += <name>                 the files src/<name>/*.c except main*.c become
#                                     build/$(BUILD)/lib/libmsb_<name>.a
#   <name>_LDLIBS := -lfoo            libraries its code needs
#   BINS += <bin>                     a host binary build/$(BUILD)/bin/<bin> with
#   <bin>_SRCS := src/<name>/main.c   its own sources and
#   <bin>_MODULES := <name> common    the module libraries it links, in link order
# Unit tests are tests/unit/test_*.c; each links every module library.
# Fuzz targets are tests/fuzz/fuzz_*.c; each links every module library.

BUILD ?= release
O := build/$(BUILD)

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wundef -Wimplicit-fallthrough \
	-Wno-unused-parameter -Wno-missing-field-initializers
# gcc's truncation warnings fire on every deliberate snprintf truncation.
# WARNINGS_GCC is for code always built with gcc (the static guest binary).
WARNINGS_GCC := $(WARNINGS) -Wno-format-truncation -Wno-stringop-truncation
ifeq ($(findstring clang,$(shell $(CC) --version 2>/dev/null)),)
WARNINGS := $(WARNINGS_GCC)
endif
BASE_CFLAGS := -std=gnu17 $(WARNINGS) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Isrc -I. \
	-MMD -MP -g -fno-omit-frame-pointer -pthread
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all

ifeq ($(BUILD),release)
OPT := -O2
else ifeq ($(BUILD),debug)
OPT := -O0
else ifeq ($(BUILD),asan)
OPT := -O1 $(SAN)
else ifeq ($(BUILD),fuzz)
OPT := -O1 -fsanitize=fuzzer-no-link,address,undefined -DMSB_FUZZING
else
$(error BUILD must be release, debug, asan or fuzz)
endif

CFLAGS ?=
LDFLAGS ?=
ALL_CFLAGS = $(BASE_CFLAGS) $(OPT) $(CFLAGS)
ALL_LDFLAGS = $(OPT) -pthread $(LDFLAGS)

MODULES :=
BINS :=
# Files that are not host code (guest programs, kernel config) hook into these.
EXTRA_TARGETS :=
EXTRA_UNIT_DEPS :=

# Modules may define rules (src/cli's msx/msi/msr links): `make` still means `make all`.
.DEFAULT_GOAL := all
include $(sort $(wildcard src/*/module.mk))
include $(sort $(wildcard mk/*.mk))

objs = $(patsubst %.c,$(O)/obj/%.o,$(1))
module_srcs = $(filter-out src/$(1)/main%.c,$(wildcard src/$(1)/*.c))
module_lib = $(O)/lib/libmsb_$(1).a
ALL_MODULE_LDLIBS = $(sort $(foreach m,$(MODULES),$($(m)_LDLIBS)))

.PHONY: all
all: $(foreach b,$(BINS),$(O)/bin/$(b)) $(EXTRA_TARGETS)

$(O)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

define module_template
$(call module_lib,$(1)): $(call objs,$(call module_srcs,$(1)))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_template,$(m))))

define bin_template
$(O)/bin/$(1): $(call objs,$($(1)_SRCS)) $(foreach m,$($(1)_MODULES),$(call module_lib,$(m)))
	@mkdir -p $$(@D)
	$(CC) $(ALL_LDFLAGS) -o $$@ $(call objs,$($(1)_SRCS)) \
		-Wl,--start-group $(foreach m,$($(1)_MODULES),$(call module_lib,$(m))) -Wl,--end-group \
		$(sort $(foreach m,$($(1)_MODULES),$($(m)_LDLIBS))) $($(1)_LDLIBS)
.PHONY: $(1)
$(1): $(O)/bin/$(1)
endef
$(foreach b,$(BINS),$(eval $(call bin_template,$(b))))

ALL_MODULE_LIBS = $(foreach m,$(MODULES),$(call module_lib,$(m)))

# ---- unit tests -------------------------------------------------------------
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/unit/%,$(UNIT_SRCS))

$(O)/tests/unit/%: $(O)/obj/tests/unit/%.o $(ALL_MODULE_LIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< -Wl,--start-group $(ALL_MODULE_LIBS) -Wl,--end-group \
		$(ALL_MODULE_LDLIBS)

.PHONY: unit-build unit
unit-build: $(UNIT_BINS) $(EXTRA_UNIT_DEPS)
unit: unit-build all
	@scripts/run-unit $(O) $(UNIT_BINS)

# ---- sanitizers ---------------------------------------------------------------
.PHONY: asan
asan:
	$(MAKE) BUILD=asan all unit

# ---- fuzzing --------------------------------------------------------------------
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/bin/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 10

.PHONY: fuzz fuzz-build fuzz-smoke
ifeq ($(BUILD),fuzz)
build/fuzz/bin/%: $(O)/obj/tests/fuzz/%.o $(ALL_MODULE_LIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $< -Wl,--start-group $(ALL_MODULE_LIBS) \
		-Wl,--end-group $(ALL_MODULE_LDLIBS)
fuzz-build: $(FUZZ_BINS)
else
fuzz-build fuzz:
	$(MAKE) BUILD=fuzz CC=clang fuzz-build
fuzz-smoke: fuzz-build
	@scripts/run-fuzz $(FUZZ_SECONDS) $(FUZZ_BINS)
endif

# ---- integration and the whole suite -----------------------------------------------
.PHONY: integration test
integration: all
	@scripts/run-integration $(O)

test: all
	@scripts/run-all-tests

# ---- formatting -------------------------------------------------------------------------
FORMAT_FILES = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null)
.PHONY: format format-check
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	@scripts/format-check $(FORMAT_FILES)

.SECONDARY:

.PHONY: clean
clean:
	rm -rf build

-include $(shell find $(O) -name '*.d' 2>/dev/null)
