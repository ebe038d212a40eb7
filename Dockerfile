# The turtles container image: one image for every part (hook, reporter,
# bots, image peers, serve); deploy/kubernetes runs it with the part's
# subcommand as args. Build: make image (docker or podman).
#
# Checked by go test ./deploy/kubernetes (TestDockerfile): the Go version
# matches go.mod, the binary is static, the runtime packages provide every
# program turtles runs, and ENTRYPOINT is the binary. It has not been built
# on the machines that run the tests (no container engine there).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
# Static (pure Go, no cgo): the runtime stage needs no Go or C libraries.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/turtles ./cmd/turtles

FROM debian:bookworm-slim
# qemu-system-x86 and qemu-utils: test VMs (KVM when the pod gets
# /dev/kvm, TCG otherwise). git and openssh-client: checkouts over
# https:// and ssh://. ca-certificates: the forge, S3 and image mirrors
# over TLS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates git openssh-client qemu-system-x86 qemu-utils \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/turtles /usr/local/bin/turtles
# Root in the container, as deploy/kubernetes expects (secret volumes are
# mode 0400, the per-node image cache is a hostPath): the container is not
# the sandbox. Untrusted code only ever runs inside the test VMs
# (docs/trust.md).
ENTRYPOINT ["/usr/local/bin/turtles"]
CMD ["--help"]
