# lastmile — `make run` and `make test` set up everything they need on a fresh
# machine: Go modules (go build fetches them), libchdb.so (from npm into
# ~/.cache/lastmile, outside the repo), Debian packages for the tests and
# sdk/web's pinned npm packages (the SDK's build, the players of the browser tests).

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/lastmile
FUZZTIME ?= 60s
FUZZ    ?= .
export CGO_ENABLED ?= 0

.PHONY: all build run test test-short bench deps libchdb system-deps web-deps sdk-test fuzz fuzz-short clean help

all: build

help:
	@echo "make run    start lastmile (collector, processor, query) on embedded Kafka + chDB under ./data"
	@echo "make test   install what the tests need, then run vet, every test, and every fuzz target for 3s (fuzz-short)"
	@echo "make bench  throughput and latency benchmarks (collector, processor, whole path, baseline; edge fan-out; trace and metrics queries at 50M events, ~20 min, ~4 GB in a temp dir or \$$LASTMILE_BENCH_QUERY_DIR)"
	@echo "make fuzz   fuzz every FuzzXxx target of the repo in turn, FUZZTIME each (default 60s; FUZZ=regexp picks targets); a failing input goes to <pkg>/testdata/fuzz/"
	@echo "make build  build $(BIN)"

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/lastmile

libchdb:
	@bash scripts/fetch-libchdb.sh

system-deps:
	@bash scripts/install-system-deps.sh

# After system-deps: it needs npm.
web-deps: system-deps
	@bash scripts/install-web-deps.sh

deps: libchdb system-deps web-deps

# sdk/web's unit tests (node --test).
sdk-test: web-deps
	cd sdk/web && npm test --silent

run: libchdb build
	./$(BIN) run $(ARGS)

test: deps build
	$(GO) vet ./...
	@$(MAKE) --no-print-directory sdk-test
	LASTMILE_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 60m ./...
	@$(MAKE) --no-print-directory fuzz-short
	@if [ -z "$$LASTMILE_CLICKHOUSE_ADDR" ]; then \
		echo "SKIPPED: ClickHouse-server integration test (internal/store TestClickHouse*): no server; set LASTMILE_CLICKHOUSE_ADDR=clickhouse://user:pass@host:9000/db to run it"; \
	fi

test-short: libchdb build
	LASTMILE_BIN=$(CURDIR)/$(BIN) $(GO) test -short -count=1 ./...

bench: libchdb build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/flatjson ./schemas ./collector ./processor ./internal/store
	LASTMILE_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^TestBenchPipeline$$' -count=1 -timeout 60m -v ./e2e -bench-pipeline
	LASTMILE_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^TestBenchEdge$$' -count=1 -timeout 30m -v ./e2e -bench-edge
	LASTMILE_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^TestBenchQuery$$' -count=1 -timeout 60m -v ./e2e -bench-query

# Every `func FuzzXxx(f *testing.F)` in the repo, found by scripts/fuzz.sh.
fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' FUZZ='$(FUZZ)' bash scripts/fuzz.sh

# The short run of `make test`: each target for 3s, minimizing new inputs
# for at most 1s (a longer minimization would take the whole run).
fuzz-short:
	GO='$(GO)' FUZZTIME=3s FUZZMINIMIZETIME=1s bash scripts/fuzz.sh

clean:
	rm -rf bin
