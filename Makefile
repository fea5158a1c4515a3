# The job service. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/server

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# make run keeps jobs in ./data/jobs.db (SQLite) unless DATABASE_URL says
# otherwise (memory:, sqlite:PATH, postgres://…).
DATABASE_URL ?= sqlite:./data/jobs.db

.PHONY: run
run: ## Start the server on :8080 with jobs kept in ./data/jobs.db (PORT, WORKERS, DATABASE_URL, ... from the environment; see ./bin/server -h)
	DATABASE_URL='$(DATABASE_URL)' $(GO) run ./cmd/server

.PHONY: build
build: ## Build bin/server
	$(GO) build -o $(BIN) ./cmd/server

.PHONY: generate
generate: web ## Regenerate gqlgen code from schema.graphqls, and the web files (make web)
	$(GO) tool gqlgen generate

# The web pages the server embeds take their JavaScript and CSS from pinned
# npm packages: each page's step below copies its files from the packages'
# tarballs (checked against the registry's integrity hashes, cached under
# the user's cache directory) into the folder it embeds. Node is not
# needed. A page with its own sources adds a step of its own to `web`.
.PHONY: web
web: web-playground web-dashboard ## Refresh the embedded web files from the pinned npm packages

.PHONY: web-playground
web-playground: # GraphiQL, React and the explorer plugin for the playground at /
	$(GO) run ./scripts/npmfetch -manifest internal/playground/npm.json -out internal/playground/npm

.PHONY: web-dashboard
web-dashboard: # The dashboard at /ui/: web/dashboard bundled by esbuild with Preact and htm
	./scripts/web-dashboard.sh

.PHONY: check-generated
check-generated: ## Fail when the committed generated code or web files are stale
	./scripts/check-generated.sh

.PHONY: lint
lint: ## gofmt check and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# The PostgreSQL tests use TEST_DATABASE_URL; they skip when it cannot be
# reached, unless JOBQUEUE_REQUIRE_POSTGRES=1 (set by .ci/run) fails them.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export TEST_DATABASE_URL

.PHONY: check-postgres
check-postgres:
	@if ! $(GO) run ./scripts/pgcheck >/dev/null 2>&1; then \
		echo "################################################################"; \
		echo "## PostgreSQL is NOT reachable at TEST_DATABASE_URL:"; \
		echo "##   $(TEST_DATABASE_URL)"; \
		echo "## Every PostgreSQL test (Go and e2e) will be SKIPPED."; \
		echo "## Start it, or set JOBQUEUE_REQUIRE_POSTGRES=1 to fail instead."; \
		echo "################################################################"; \
	fi

.PHONY: test-go
test-go: check-postgres ## Go tests with the race detector
	$(GO) test -race -count=1 -timeout 8m ./...

# Fuzzing runs a fixed number of inputs per target (FUZZ_GRAPHQL_EXECS,
# FUZZ_WS_EXECS), not a fixed time: Go 1.26's fuzzing coordinator can fail
# a run with a bare "context deadline exceeded" when a -fuzztime duration
# ends while a worker is busy (go.dev/issue/75804, fixed in Go 1.27), which
# a loaded machine makes likely; a count has no deadline to race. A new
# input is minimized for at most a second (the default is a minute).
FUZZ_GRAPHQL_EXECS ?= 200x
FUZZ_WS_EXECS      ?= 3000x

.PHONY: fuzz
fuzz: ## Fuzz GraphQL request bodies and websocket messages (a fixed number of inputs each); a failing input lands in the package's testdata/fuzz
	$(GO) test -run '^$$' -fuzz '^FuzzGraphQLRequest$$' -fuzztime $(FUZZ_GRAPHQL_EXECS) -fuzzminimizetime 1s ./graph
	$(GO) test -run '^$$' -fuzz '^FuzzMessages$$' -fuzztime $(FUZZ_WS_EXECS) -fuzzminimizetime 1s ./internal/wstransport

.PHONY: e2e
e2e: build ## End-to-end tests: the built binary driven by real Node clients
	cd e2e && npm ci --no-audit --no-fund --loglevel=error && SERVER_BIN=../$(BIN) npm test

.PHONY: test
test: lint check-generated test-go fuzz e2e ## Everything CI runs: lint, generated-code check, Go tests (-race), fuzzing (a fixed number of inputs per target), e2e

.PHONY: bench
bench: ## Benchmarks: in-process throughput, then load against a live server (figures for the README)
	$(GO) test -run '^$$' -bench '^BenchmarkThroughput$$' -benchtime 200000x -count 3 ./internal/worker
	$(GO) test -run '^$$' -bench 'ScheduledDispatchLatency|RetryThroughput' -benchtime 2000x ./internal/worker
	$(GO) test -run '^$$' -bench . ./internal/broker
	$(GO) test -run '^$$' -bench CreateJobAccess -count 5 -benchtime 20000x ./internal/httpapi
	$(GO) test -run '^$$' -bench CreateJobsAPI -count 3 -benchtime 20x ./cmd/server
	$(GO) test -run '^$$' -bench '^BenchmarkClaim$$' -count 3 -benchtime 1000x ./internal/store/postgres
	./bench/run.sh
	./bench/storage.sh

.PHONY: bench-storage
bench-storage: ## Storage benchmarks only: createJob over HTTP, single inserts and burn-down per backend, River beside PostgreSQL
	./bench/storage.sh
