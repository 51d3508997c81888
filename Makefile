# tcpstat: see README.md.
GO ?= go

.PHONY: build generate test bench lint test-kernels
build:
	$(GO) build -o bin/tcpstat ./cmd/tcpstat

# Regenerate the BPF objects with Debian's clang and libbpf-dev headers.
generate:
	$(GO) generate ./internal/tracer

# Unit tests always; the privileged tests run when root (CI is root).
test:
	$(GO) test -count=1 ./...

lint:
	test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(GO) vet ./...

# Run the tests (as root) in Debian kernels 5.10, 6.1, 6.12, newest stable
# and newest rc under QEMU; see test/kernels. KERNELS_FLAGS picks kernels,
# packages or tests, e.g. KERNELS_FLAGS='-kernels 5.10 -pkgs ./internal/tracer'.
# Built, not `go run`, which would turn exit status 2 (not tested) into 1.
KERNELS_FLAGS ?=
test-kernels:
	$(GO) build -o bin/test-kernels ./test/kernels
	bin/test-kernels $(KERNELS_FLAGS)
