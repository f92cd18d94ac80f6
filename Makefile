# superimap — one GNU Makefile for every binary, test and variant.
#
#   make              build every binary into build/bin/
#   make deps         install the Debian packages the build, run and tests need
#   make run-deps     only those the build, make run and make demo need
#   make run          private Redis + api + watcher + dispatcher in the foreground
#   make demo         the whole fleet on this machine, one mail to a signed webhook
#   make soak         DURATION=<s> (600) SOAK_PROFILE=default|full: the fleet under
#                     faults and restarts, a report
#   make test         unit and integration tests; ends with "N passed, N failed"
#   make check-asan   the same tests on an ASan+UBSan build (build/asan/)
#   make valgrind     the same tests under valgrind (build/valgrind/)
#   make fuzz         libFuzzer drivers, a bounded run of each
#   make bench        benchmarks, printing tables
#   make screenshots  docs/dashboard/*.png from the dashboard's browser test
#   make compose-check  docker-compose.yml on podman: build, up, one mail to a
#                     webhook through nginx, scale, down (root; tests/deploy/)
#   make format / format-check / clean
#
# Variables: O (output dir, default build), WERROR=0 drops -Werror,
# EXTRA_CFLAGS/EXTRA_LDFLAGS are appended, V=1 shows full command lines.
#
# SPDX-License-Identifier: MIT

O ?= build
WERROR ?= 1
OPT ?= -O2 -g
FUZZ_SECONDS ?= 60

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

WARN := -Wall -Wextra -pedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wwrite-strings -Wformat=2 -Wundef -Wpointer-arith -Wcast-align \
        -Wnull-dereference -Wimplicit-fallthrough -Wvla
ifeq ($(WERROR),1)
WARN += -Werror
endif

PKGS := hiredis libcurl yajl openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

ALL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(OPT) -I. -I$(O)/gen $(PKG_CFLAGS) \
             -DSUPERIMAP_VERSION='"$(VERSION)"' -DSUPERIMAP_GIT_REV='"$(GIT_REV)"' \
             -MMD -MP $(CFLAGS) $(EXTRA_CFLAGS)
ALL_LDFLAGS = $(LDFLAGS) $(EXTRA_LDFLAGS)
LIBS := $(PKG_LIBS) -lev -lcivetweb -lpthread -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---- Sources ----

LIB_SRC := $(sort $(wildcard core/*.c proto/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(O)/obj/%.o) $(O)/obj/gen/lua_scripts.o
LUA_SRC := $(sort $(wildcard scripts/lua/*.lua))
LUA_PRELUDE := $(sort $(wildcard scripts/lua/prelude/*.lua))

CMDS := $(notdir $(patsubst %/,%,$(sort $(dir $(wildcard cmd/*/main.c)))))
BINS := $(CMDS:%=$(O)/bin/superimap-%)

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/unit/%)
INTEG_SRC := $(sort $(wildcard tests/integration/test_*.c))
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(O)/tests/integration/%)
HARNESS_SRC := $(filter-out tests/integration/test_%.c,$(wildcard tests/integration/*.c))
HARNESS_OBJ := $(HARNESS_SRC:%.c=$(O)/obj/%.o)

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC := $(sort $(wildcard tests/bench/bench_*.c))
BENCH_BINS := $(BENCH_SRC:tests/bench/%.c=$(O)/bench/%)

.PHONY: all deps run-deps run test tests check-asan valgrind fuzz bench screenshots format format-check clean readme-config
.DEFAULT_GOAL := all

all: $(BINS)

# ---- Compilation ----

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(O)/gen/lua_scripts.c: $(LUA_SRC) $(LUA_PRELUDE) scripts/embed-lua.sh
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)sh scripts/embed-lua.sh $(addprefix -p ,$(LUA_PRELUDE)) $(LUA_SRC) > $@.tmp && mv $@.tmp $@

# A script longer than C's 4,095-character minimum for literals is fine on
# gcc and clang: only the generated file may have one.
$(O)/obj/gen/lua_scripts.o: $(O)/gen/lua_scripts.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -Wno-overlength-strings -c -o $@ $<

$(O)/libsuperimap.a: $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# Each binary is every .c in cmd/<name>/ plus the library.
.SECONDEXPANSION:
$(O)/bin/superimap-%: $$(addprefix $(O)/obj/,$$(addsuffix .o,$$(basename $$(wildcard cmd/$$*/*.c)))) \
                      $(O)/libsuperimap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(CFLAGS) $(EXTRA_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(O)/tests/unit/%: $(O)/obj/tests/unit/%.o $(O)/libsuperimap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(CFLAGS) $(EXTRA_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

$(O)/tests/integration/%: $(O)/obj/tests/integration/%.o $(HARNESS_OBJ) $(O)/libsuperimap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(CFLAGS) $(EXTRA_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

$(O)/bench/%: $(O)/obj/tests/bench/%.o $(O)/libsuperimap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(CFLAGS) $(EXTRA_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# bench_failover, bench_oauth2 and bench_sentinel start their servers with the
# integration harness.
$(O)/bench/bench_failover $(O)/bench/bench_oauth2 $(O)/bench/bench_sentinel: $(O)/bench/%: $(O)/obj/tests/bench/%.o $(HARNESS_OBJ) $(O)/libsuperimap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(CFLAGS) $(EXTRA_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

# Objects of binaries and tests are made by chained rules: keep them.
.SECONDARY:

tests: $(BINS) $(UNIT_BINS) $(INTEG_BINS)

# ---- Set-up, run, test ----

# Neither ever removes a package (scripts/deps.sh says why it stops instead).
deps:
	@sh scripts/deps.sh test
	@sh scripts/promtool.sh build/tools

run-deps:
	@sh scripts/deps.sh run

run: run-deps
	@$(MAKE) --no-print-directory all
	@bash scripts/run.sh $(O)

# `make demo`: the whole product on this machine, one mail end to end
# (scripts/demo.sh), with its helper built from tests/demo/.
DEMO_TOOL := $(O)/tools/demo-tool
.PHONY: demo
demo: run-deps
	@$(MAKE) --no-print-directory all $(DEMO_TOOL)
	@bash scripts/demo.sh $(O)

$(DEMO_TOOL): $(O)/obj/tests/demo/demo_tool.o $(O)/libsuperimap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(CFLAGS) $(EXTRA_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# `make soak DURATION=<seconds>`: the fleet on fake-imapd with faults and
# watcher restarts, then a report (tests/soak/soak.c); not part of `make test`.
# SOAK_PROFILE=full adds kill -9 and SIGSTOP of watchers and dispatchers,
# Redis restarts, receiver outages and users archived or given new passwords.
DURATION ?= 600
SOAK_PROFILE ?= default
SOAK_BIN := $(O)/tests/soak/soak
.PHONY: soak
soak: deps
	@$(MAKE) --no-print-directory all $(SOAK_BIN)
	@SUPERIMAP_BIN_DIR=$(abspath $(O)/bin) SUPERIMAP_SRC_DIR=$(CURDIR) SOAK_PROFILE=$(SOAK_PROFILE) $(SOAK_BIN) $(DURATION)

$(SOAK_BIN): $(O)/obj/tests/soak/soak.o $(HARNESS_OBJ) $(O)/libsuperimap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(CFLAGS) $(EXTRA_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

# `make compose-check`: the container deployment proven with docker-compose
# on podman (tests/deploy/compose-check.sh); installs its own packages.
.PHONY: compose-check
compose-check:
	@bash tests/deploy/compose-check.sh

test: deps
	@$(MAKE) --no-print-directory tests
	@sh tests/run-tests.sh $(O)

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
check-asan: deps
	@$(MAKE) --no-print-directory O=build/asan OPT="$(ASAN_FLAGS)" tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		sh tests/run-tests.sh build/asan

valgrind: deps
	@$(MAKE) --no-print-directory O=build/valgrind OPT="-O0 -g" tests
	@TEST_PREFIX="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-origins=yes --suppressions=$(CURDIR)/tests/valgrind.supp" \
		sh tests/run-tests.sh build/valgrind

FUZZ_FLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
fuzz: deps
	@$(MAKE) --no-print-directory O=build/fuzz CC=clang OPT="$(FUZZ_FLAGS)" build/fuzz/libsuperimap.a
	@sh tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS) "$(PKG_CFLAGS)" "$(LIBS)" $(FUZZ_SRC)

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@sh tests/bench/run.sh $(O)

# `make screenshots`: the admin dashboard's views as its browser test
# (tests/integration/test_admin_dashboard.c) sees them, into docs/dashboard/
# for the README.
screenshots: deps
	@$(MAKE) --no-print-directory all $(O)/tests/integration/test_admin_dashboard
	@mkdir -p docs/dashboard
	@SUPERIMAP_DASHBOARD_SHOTS=$(CURDIR)/docs/dashboard TEST_FILTER=test_admin_dashboard \
		sh tests/run-tests.sh $(O)

FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(O)/obj -name '*.d' 2>/dev/null)

readme-config: $(O)/bin/superimap-api
	@$(O)/bin/superimap-api --config-markdown > $(O)/config.md
	@awk -v table="$(O)/config.md" \
		'/^<!-- BEGIN config/ { print; while ((getline line < table) > 0) print line; skip = 1; next } \
		 /^<!-- END config/ { skip = 0 } !skip' README.md > README.md.tmp && mv README.md.tmp README.md
