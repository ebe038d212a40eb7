# turtles: `make demo` and `make test` set up everything they need.
GO      ?= go
BIN     := bin/turtles
BENCH   ?= all
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo devel)
GOBIN   := $(shell $(GO) env GOPATH 2>/dev/null)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build deps test test-short bench demo fuzz vet clean image

all: build

deps:
	@scripts/deps.sh

build:
	@echo "==> building $(BIN) ($(VERSION))"
	@$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/turtles

# The container image of deploy/kubernetes (Dockerfile), with docker or
# podman: make image IMAGE=registry.example.com/turtles:TAG
IMAGE     ?= turtles:$(VERSION)
CONTAINER ?= $(shell command -v docker || command -v podman)
image:
	@test -n "$(CONTAINER)" || { echo "make image needs docker or podman (neither is installed)" >&2; exit 1; }
	@echo "==> building container image $(IMAGE) with $(CONTAINER)"
	@$(CONTAINER) build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

vet:
	@echo "==> go vet and gofmt"
	@$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# The whole suite: unit, contract, fuzz seeds, end-to-end (real binaries,
# real git, kill -9 of a server). Slow tests are real tests, here too.
# The attack suite runs alongside; its count of attacks tried and held is
# the last line (scripts/test.sh says how the packages are scheduled).
test: deps vet
	@TURTLES_TEST_ARTIFACTS=$(CURDIR)/test-artifacts GO=$(GO) scripts/test.sh

test-short:
	@$(GO) test -short -count=1 $$($(GO) list ./... | grep -v '/attack$$')

# make bench            runs every benchmark
# make bench BENCH=NAME runs one (e.g. queue-embedded)
bench: deps
	@$(GO) run ./bench $(BENCH)

# A few seconds of each fuzzer, beyond the seeds that `make test` runs.
FUZZTIME ?= 20s
fuzz:
	@for f in hook:FuzzParseGitHub hook:FuzzParseGitLab config:FuzzParse command:FuzzParse \
		tap:FuzzParse tap:FuzzDirective junit:FuzzParse scrub:FuzzWriter image/cache:FuzzManifest \
		image/cache:FuzzParseID image/cache:FuzzContentRange image/cache:FuzzParsePeers \
		state/postgres:FuzzURLError triage:FuzzNormalize triage:FuzzParse metrics:FuzzForgeRateHeaders \
		web:FuzzSearchQuery; do \
		echo "==> fuzz $$f for $(FUZZTIME)"; \
		$(GO) test -run XXX -fuzz "^$${f#*:}$$" -fuzztime $(FUZZTIME) ./$${f%%:*} || exit 1; \
	done

demo: deps build
	@scripts/demo.sh

clean:
	rm -rf bin demo-data
