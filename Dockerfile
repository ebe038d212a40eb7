# The turtles container image for docker and podman users: one image for
# every part (hook, reporter, bots, image peers, serve); deploy/kubernetes
# runs it with the part's subcommand as args. `make image` builds the same
# image without a container engine (cmd/release, release/ociimage).
#
# Checked by go test ./deploy/kubernetes (TestDockerfile): the Go version
# matches go.mod, the binary is static, the runtime packages provide every
# program turtles runs and are the list `make image` installs
# (ociimage.Packages), the user is the same, and ENTRYPOINT is the binary.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
# Static (pure Go, no cgo): the runtime stage needs no Go or C libraries.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.version=${VERSION}" \
      -o /out/turtles ./cmd/turtles

FROM debian:bookworm-slim
# qemu-system-x86 and qemu-utils: test VMs (KVM when the container gets
# /dev/kvm, TCG otherwise). git and openssh-client: checkouts over
# https:// and ssh://. ca-certificates: the forge, S3 and image mirrors
# over TLS. bubblewrap: the sandbox of commands a bot runs itself.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      bubblewrap ca-certificates git openssh-client qemu-system-x86 qemu-utils \
 && rm -rf /var/lib/apt/lists/*
# Not root: the account turtles (uid and gid 10001, numeric in USER so
# that Kubernetes' runAsNonRoot can check it), in group kvm for /dev/kvm.
RUN groupadd --gid 10001 turtles \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/turtles --no-create-home \
      --shell /usr/sbin/nologin --comment "turtles CI" turtles \
 && if getent group kvm >/dev/null; then usermod --append --groups kvm turtles; fi \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/turtles
COPY --from=build /out/turtles /usr/local/bin/turtles
USER 10001:10001
WORKDIR /var/lib/turtles
ENTRYPOINT ["/usr/local/bin/turtles"]
CMD ["--help"]
