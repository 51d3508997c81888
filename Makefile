# tcpstat: see README.md.
GO ?= go

.PHONY: build generate test bench lint bench-list
# urfave_cli_no_docs drops cli's man/markdown generator (blackfriday), whose
# init alone costs a few ms of every start: listings must start fast.
TAGS ?= urfave_cli_no_docs

build:
	$(GO) build -tags '$(TAGS)' -o bin/tcpstat ./cmd/tcpstat

# Regenerate the BPF objects with Debian's clang and libbpf-dev headers.
generate:
	$(GO) generate ./internal/tracer

# Unit tests always; the privileged tests run when root (CI is root).
test:
	$(GO) test -count=1 ./...

lint:
	test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(GO) vet ./...

# Times tcpstat list against ss and netstat while holding many loopback
# sockets (needs net-tools and iproute2; heavy: run it on an idle machine).
bench-list: build
	$(GO) run ./cmd/listbench -sizes 10000,50000,100000
