# The job service. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/server

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the server on :8080 (PORT, WORKERS, ... from the environment; see ./bin/server -h)
	$(GO) run ./cmd/server

.PHONY: build
build: ## Build bin/server
	$(GO) build -o $(BIN) ./cmd/server

.PHONY: generate
generate: ## Regenerate gqlgen code from schema.graphqls
	$(GO) tool gqlgen generate

.PHONY: check-generated
check-generated: ## Fail when the committed generated code is stale
	./scripts/check-generated.sh

.PHONY: lint
lint: ## gofmt check and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

.PHONY: test-go
test-go: ## Go tests with the race detector
	$(GO) test -race -count=1 -timeout 8m ./...

.PHONY: e2e
e2e: build ## End-to-end tests: the built binary driven by real Node clients
	cd e2e && npm ci --no-audit --no-fund --loglevel=error && SERVER_BIN=../$(BIN) npm test

.PHONY: test
test: lint check-generated test-go e2e ## Everything CI runs: lint, generated-code check, Go tests (-race), e2e

.PHONY: bench
bench: ## Benchmarks: in-process throughput, then load against a live server (figures for the README)
	$(GO) test -run '^$$' -bench '^BenchmarkThroughput$$' -benchtime 200000x ./internal/worker
	$(GO) test -run '^$$' -bench 'ScheduledDispatchLatency|RetryThroughput' -benchtime 2000x ./internal/worker
	$(GO) test -run '^$$' -bench . ./internal/broker
	./bench/run.sh
