# tcpstat: see README.md.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build watch man generate test lint check-generated bench bench-list test-kernels
# urfave_cli_no_docs drops cli's man/markdown generator (blackfriday), whose
# init alone costs a few ms of every start: listings must start fast.
TAGS ?= urfave_cli_no_docs

# The version and commit `tcpstat version` prints; `go install` builds
# without them and fall back on the module's build info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS ?= -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# bin/tcpstat leaves the metrics server out (noserve): its packages'
# initialisation would cost every listing 3-7 ms. Its `serve` runs
# bin/tcpstat-agent, the same program with the server in.
build:
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/tcpstat-agent ./cmd/tcpstat
	$(GO) build -tags '$(TAGS) noserve' -ldflags '$(LDFLAGS)' -o bin/tcpstat ./cmd/tcpstat

# Man pages, written from the command definitions by a hidden command (the
# binary has no doc generator to link: see TAGS); install with
# `install -m 644 man/*.1 /usr/local/share/man/man1/`.
man: build
	./bin/tcpstat man-pages --dir man

# Build and run the live transition view (needs root or CAP_BPF+CAP_PERFMON).
watch: build
	./bin/tcpstat watch

# The packages whose BPF objects bpf2go generates and the tree commits.
BPF_PKGS := internal/tracer internal/sockfds internal/tcpiter

# Regenerate the BPF objects with Debian's clang and libbpf-dev headers.
generate:
	$(GO) generate $(addprefix ./,$(BPF_PKGS))

# Unit tests always; the privileged tests run when root (CI is root).
test:
	./scripts/deps.sh
	$(GO) test -count=1 ./...

lint:
	@test -z "$$(gofmt -l .)" || { echo "not gofmt-formatted:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags noserve ./cmd/tcpstat
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags noserve ./cmd/tcpstat
	@deps="$$($(GO) list -deps -tags noserve ./cmd/tcpstat)" || exit 1; \
	if echo "$$deps" | grep -E 'prometheus|exporter-toolkit'; then echo "the noserve build links the metrics server"; exit 1; fi

# The committed BPF objects must be what the sources generate.
check-generated: generate
	@git diff --exit-code --stat -- $(BPF_PKGS) || { echo "BPF objects are stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(BPF_PKGS))" || { git status --porcelain -- $(BPF_PKGS); exit 1; }

# Loopback churn with and without tracers, side by side (needs root), at 1,
# 2 and 4 churning workers, with each variant of the kernel program.
BENCH_FLAGS ?= -workers 1,2,4 -levers
bench: build
	$(GO) run ./cmd/tcpstat-bench -tcpstat ./bin/tcpstat $(BENCH_FLAGS)

# Times tcpstat list against ss and netstat while holding many loopback
# sockets (needs net-tools and iproute2; heavy: run it on an idle machine).
bench-list: build
	$(GO) run ./cmd/listbench -sizes 10000,50000,100000

# Run the tests (as root) in Debian kernels 5.10, 6.1, 6.12, newest stable
# and newest rc under QEMU; see test/kernels. KERNELS_FLAGS picks kernels,
# packages or tests, e.g. KERNELS_FLAGS='-kernels 5.10 -pkgs ./internal/tracer'.
# Built, not `go run`, which would turn exit status 2 (not tested) into 1.
KERNELS_FLAGS ?=
test-kernels:
	$(GO) build -o bin/test-kernels ./test/kernels
	bin/test-kernels $(KERNELS_FLAGS)

# The container image (deploy/Containerfile): a static binary FROM scratch,
# run as a non-root user, with file capabilities permitted (not effective:
# tcpstat raises what its pod grants). Built with podman, or buildah, from
# the local tree: no registry. IMAGE names it.
IMAGE ?= localhost/tcpstat:latest
IMAGE_CAPS := cap_bpf,cap_perfmon,cap_sys_admin,cap_sys_ptrace,cap_dac_read_search+p
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -tags '$(TAGS)' -o bin/tcpstat-static ./cmd/tcpstat
	setcap $(IMAGE_CAPS) bin/tcpstat-static
	if command -v podman >/dev/null; then podman build -f deploy/Containerfile -t $(IMAGE) .; \
	else buildah bud -f deploy/Containerfile -t $(IMAGE) .; fi
