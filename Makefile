# make test: everything CI checks. It installs what it lacks first:
# Debian packages through scripts/deps.sh, Go tools pinned in tools/go.mod.
SHELL := /bin/bash
GO ?= go
TOOL := $(GO) tool -modfile=tools/go.mod

.PHONY: test deps fmt vet staticcheck unit fuzz-short fuzz actionlint nix-parse e2e bench plan

test: deps fmt vet staticcheck actionlint nix-parse unit fuzz-short

deps:
	@bash scripts/deps.sh

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(TOOL) staticcheck ./...

unit:
	$(GO) test -race -count=1 ./...

# Every Fuzz* function in the module (found by scripts/fuzz.sh), briefly in
# make test by count (no wall clock: it holds on a busy machine), longer in
# make fuzz (FUZZTIME=30m make fuzz for a night).
FUZZTIME_SHORT ?= 5000x
FUZZTIME ?= 5m

fuzz-short:
	@GO=$(GO) bash scripts/fuzz.sh $(FUZZTIME_SHORT)

fuzz:
	@GO=$(GO) bash scripts/fuzz.sh $(FUZZTIME)

actionlint:
	$(TOOL) actionlint -shellcheck="$$(command -v shellcheck)" .github/workflows/*.yml

nix-parse:
	@for f in $$(git ls-files '*.nix'); do nix-instantiate --parse "$$f" >/dev/null || { echo "does not parse: $$f"; exit 1; }; done; echo "nix-parse: all .nix files parse"

# The real binary against the ARM emulator and a real sshd in a network
# namespace; needs root (CI runs as root) and skips loudly otherwise.
e2e: deps
	$(GO) test -tags e2e -race -count=1 -v ./test/e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

plan:
	$(GO) run ./cmd/action plan
