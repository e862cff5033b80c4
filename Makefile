# taskd's developer tasks. `make test` is what CI runs (.ci/run).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: run test fuzz chaos bench generate sqlc-check vet fmt-check

## run: start taskd against the development database, migrating it first;
## CONFIG=examples/taskd.yaml runs it with a configuration file.
CONFIG ?=
run:
	go build -o bin/taskd ./cmd/taskd
	url=$$(scripts/devdb.sh taskd); \
	DATABASE_URL=$$url exec bin/taskd serve --migrate $(if $(CONFIG),--config $(CONFIG))

## test: everything CI checks, against a PostgreSQL server that
## scripts/devdb.sh finds or starts (or TASKD_TEST_DATABASE_URL if set).
test: sqlc-check vet fmt-check
	if [[ -z $${TASKD_TEST_DATABASE_URL:-} ]]; then \
		TASKD_TEST_DATABASE_URL=$$(scripts/devdb.sh postgres); \
	fi; \
	export TASKD_TEST_DATABASE_URL; \
	go test -race -count=1 ./...

## fuzz: run every fuzz target for a few seconds (FUZZTIME=30s for longer);
## CI runs it after the tests. `make test` runs only their corpus.
fuzz:
	if [[ -z $${TASKD_TEST_DATABASE_URL:-} ]]; then \
		TASKD_TEST_DATABASE_URL=$$(scripts/devdb.sh postgres); \
	fi; \
	export TASKD_TEST_DATABASE_URL; \
	scripts/fuzz.sh

## chaos: the fault and abuse suite at full size (docs/RELIABILITY.md):
## every TestChaos* test (R1–R7, executor faults, the 10-minute load, whose
## plot goes to docs/), the authorization matrices and 30 s per fuzz
## target. Each test's figures are appended to CHAOS_REPORT. One package at
## a time (-p 1), so that no fault test shares the machine with another.
## `make test` runs the short sizes of the same tests.
CHAOS_REPORT ?= docs/reliability-last-run.jsonl
chaos:
	if [[ -z $${TASKD_TEST_DATABASE_URL:-} ]]; then \
		TASKD_TEST_DATABASE_URL=$$(scripts/devdb.sh postgres); \
	fi; \
	export TASKD_TEST_DATABASE_URL TASKD_CHAOS=full TASKD_LOAD_DURATION=10m \
		TASKD_LOAD_OUT=$(CURDIR)/docs TASKD_CHAOS_REPORT=$(abspath $(CHAOS_REPORT)); \
	: > $(CHAOS_REPORT); \
	go test -p 1 -count=1 -timeout 90m -v -run '^TestChaos' ./... 2>&1 | tee /tmp/taskd-chaos.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+\S+_test.go:[0-9]+: TestChaos)'; \
	go test -race -count=1 -run '^TestAuth' ./internal/http/ ./internal/taskdtest/; \
	FUZZTIME=30s scripts/fuzz.sh

## bench: run the load benchmark against the development database;
## SCENARIOS=10,11,12 runs only those (docs/PERFORMANCE.md), BENCH_FLAGS
## passes more flags (go run ./cmd/taskd-bench -help lists them).
SCENARIOS ?=
BENCH_FLAGS ?=
bench:
	url=$$(scripts/devdb.sh taskd); \
	DATABASE_URL=$$url go run ./cmd/taskd-bench $(if $(SCENARIOS),-scenarios $(SCENARIOS)) $(BENCH_FLAGS)

## generate: regenerate River's goose migrations and sqlc's code.
generate:
	go run ./cmd/rivergoose
	scripts/sqlc.sh generate

## sqlc-check: fail if sqlc's generated code is out of date.
sqlc-check:
	scripts/sqlc-check.sh

vet:
	go vet ./...

## fmt-check: fail listing the Go files gofmt would change.
fmt-check:
	files=$$(find . -path './.*' -prune -o -name '*.go' -print); \
	unformatted=$$(gofmt -l $$files); \
	if [[ -n $$unformatted ]]; then \
		echo "gofmt needed in:" >&2; echo "$$unformatted" >&2; exit 1; \
	fi
