# Thin wrapper over CMake. `make`, `make test`, `make asan`, `make fuzz`, `make bench[-quick]`,
# `make demo`, `make install PREFIX=...`, `make clean`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_TIME  ?= 60
CMAKE      ?= cmake
CTEST      ?= ctest
PYTHON     ?= python3

.PHONY: all build asan test test-release test-asan unit fuzz bench bench-quick bench-micro demo install clean format

all: build

build:
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

asan:
	@$(CMAKE) -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFUSTOR_SANITIZE=ON >/dev/null
	@$(CMAKE) --build $(ASAN_BUILD) -j $(JOBS)

# Everything CI runs: the release build's tests, then the same suites under ASan+UBSan.
test: test-release test-asan

test-release: build
	cd $(BUILD) && $(CTEST) --output-on-failure -j $(JOBS)

test-asan: asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST) --output-on-failure -j $(JOBS)

# libFuzzer harnesses (clang). FUZZ_TIME is seconds per harness.
fuzz:
	@CC=clang $(CMAKE) -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFUSTOR_FUZZ=ON >/dev/null
	@$(CMAKE) --build $(FUZZ_BUILD) -j $(JOBS)
	@set -e; for h in $(FUZZ_BUILD)/bin/fuzz_*; do \
	  name=$$(basename $$h); corpus=fuzz/corpus/$${name#fuzz_}; mkdir -p $$corpus; \
	  new=$$(mktemp -d); \
	  echo "== $$name for $(FUZZ_TIME)s (corpus $$corpus)"; \
	  $$h -max_total_time=$(FUZZ_TIME) -max_len=65536 -print_final_stats=1 $$new $$corpus; \
	  echo "== keeping the new inputs that add coverage"; \
	  $$h -merge=1 $$corpus $$new 2>&1 | tail -1; rm -rf $$new; done

# The benchmark suite (bench/run.py): 1M files, every workload beside find, the bare walker,
# plocate and watchman; bench-quick: 100k files in under two minutes. Results and the HTML
# report go to bench/results/. bench-micro: the single-purpose benchmarks.
bench: build
	@$(CMAKE) --build $(BUILD) --target bench_programs -j $(JOBS)
	$(PYTHON) bench/run.py --bin-dir $(BUILD)/bin

bench-quick: build
	@$(CMAKE) --build $(BUILD) --target bench_programs -j $(JOBS)
	$(PYTHON) bench/run.py --quick --bin-dir $(BUILD)/bin

bench-micro: build
	@$(CMAKE) --build $(BUILD) --target bench_micro -j $(JOBS)

# Fusion and an agent on a sample tree, on free loopback ports: snapshot, stats, tree, three
# live changes with their latency, then everything stopped and removed (also on Ctrl-C).
demo: build
	@$(PYTHON) scripts/demo.py --bin-dir $(BUILD)/bin

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
