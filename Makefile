# turtles: `make demo` and `make test` set up everything they need.
GO      ?= go
BIN     := bin/turtles
BENCH   ?= all
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo devel)
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
GOBIN   := $(shell $(GO) env GOPATH 2>/dev/null)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build deps test test-clusters test-short bench demo fuzz vet clean image static deb release kubernetes-tidy

all: build

deps:
	@scripts/deps.sh

build:
	@echo "==> building $(BIN) ($(VERSION))"
	@$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/turtles

# What turtles ships, built by cmd/release without a container engine
# (docs/install.md). ARCH is amd64 or arm64; times come from
# SOURCE_DATE_EPOCH (default: the last commit's), so rebuilds are the same.
ARCH      ?= amd64
STATIC    := bin/turtles-linux-$(ARCH)
RELEASE   := $(GO) run ./cmd/release
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)

# A static binary for images and packages (no cgo, no build paths).
static:
	@echo "==> building $(STATIC) ($(VERSION), static)"
	@CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath \
		-ldflags "-s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(STATIC) ./cmd/turtles

# The container image of deploy/kubernetes as an OCI layout in bin/image:
# a Debian 12 base layer made with debootstrap (root and a Debian mirror;
# built once, then cached), the binary as its own layer, user turtles.
#   make image                                        bin/image only
#   make image IMAGE=registry.example.com/turtles:TAG  and push it there
# The Dockerfile builds the same image with docker or podman.
IMAGE ?=
image: static
	@echo "==> building the container image into bin/image$(if $(IMAGE), and pushing it to $(IMAGE))"
	@$(RELEASE) image --arch $(ARCH) --binary $(STATIC) --out bin/image --ref turtles:$(VERSION) \
		--version $(VERSION) --revision $(COMMIT) $(if $(IMAGE),--push $(IMAGE))

# The Debian package (dpkg-deb): bin/turtles_VERSION_ARCH.deb.
MAINTAINER ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
deb: static
	@echo "==> building the Debian package"
	@$(RELEASE) deb --arch $(ARCH) --binary $(STATIC) --version $(VERSION) --maintainer "$(MAINTAINER)" --out bin

# A release from the signed tag at HEAD (or TAG=...) into dist/TAG: the tag's
# signature is verified against deploy/release/allowed_signers first, and
# SHA256SUMS is signed with the SSH key RELEASE_KEY (Ed25519).
TAG         ?= $(shell git describe --exact-match --tags HEAD 2>/dev/null)
RELEASE_KEY ?=
release:
	@test -n "$(TAG)" || { echo "make release: HEAD is not tagged (git tag -s vX.Y.Z, or TAG=...)" >&2; exit 1; }
	@test -n "$(RELEASE_KEY)" || { echo "make release: set RELEASE_KEY to the SSH key that signs SHA256SUMS" >&2; exit 1; }
	@echo "==> release $(TAG) into dist/$(TAG)"
	@$(RELEASE) release --tag $(TAG) --key $(RELEASE_KEY) --out dist/$(TAG)

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

# Kubernetes clusters of VMs under TCG take minutes each: their proof runs
# here, and CI runs it after make test (.ci/run). The first run builds
# Kubernetes (10-20 minutes on 2 cores) and the node image, then caches them.
test-clusters: deps
	@echo "==> Kubernetes clusters: turtles cluster, and a task's cluster: on a bot (docs/clusters.md)"
	@TURTLES_TEST_CLUSTERS=1 $(GO) test -count=1 -p 1 -timeout 40m -run '^TestKubernetes' -v ./cmd/turtles ./bot

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
		web:FuzzSearchQuery vm:FuzzUnpack; do \
		echo "==> fuzz $$f for $(FUZZTIME)"; \
		$(GO) test -run XXX -fuzz "^$${f#*:}$$" -fuzztime $(FUZZTIME) ./$${f%%:*} || exit 1; \
	done

demo: deps build
	@scripts/demo.sh

clean:
	rm -rf bin demo-data dist

# Update the modules Kubernetes nodes are built from (kubernetes/src): each
# is laid out as a module in a temporary directory, tidied, and its go.mod
# and go.sum copied back. Change kubernetes.Version and the pins together.
kubernetes-tidy:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	for m in components node; do \
		mkdir -p $$tmp/$$m; cp kubernetes/src/$$m/go.mod.txt $$tmp/$$m/go.mod; cp kubernetes/src/$$m/go.sum.txt $$tmp/$$m/go.sum; \
	done; \
	mkdir -p $$tmp/components/kubebin $$tmp/node/pause $$tmp/node/dns; \
	sed '/^\/\/go:build ignore$$/d' kubernetes/src/components/main.go > $$tmp/components/kubebin/main.go; \
	sed '/^\/\/go:build ignore$$/d' kubernetes/src/node/pause.go > $$tmp/node/pause/main.go; \
	sed '/^\/\/go:build ignore$$/d' kubernetes/src/node/dns.go > $$tmp/node/dns/main.go; \
	for m in components node; do \
		echo "==> go mod tidy and vet: kubernetes/src/$$m"; \
		(cd $$tmp/$$m && GOFLAGS=-mod=mod $(GO) mod tidy && $(GO) vet ./...); \
		cp $$tmp/$$m/go.mod kubernetes/src/$$m/go.mod.txt; cp $$tmp/$$m/go.sum kubernetes/src/$$m/go.sum.txt; \
	done
