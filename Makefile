# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go

# staticcheck at a pinned version, run by `go run pkg@version`: its
# dependencies then stay out of go.mod. Pinning it with go.mod's tool
# directive would raise golang.org/x/sys (0.19 -> 0.48), which the node
# binaries compile in, and add five modules to the build list, all for a
# lint tool.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run test bench build vet lint clean

# The four-node cluster on 127.0.0.1:3000-3003 and the seed's demo.
run:
	$(GO) run ./cmd/cluster $(ARGS)

# Every package, under the race detector, bounded in time.
test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

# go vet, then staticcheck's default checks; both must be clean.
lint: vet
	$(GO) run $(STATICCHECK) ./...

build:
	$(GO) build ./...

# Commits per second with 64 concurrent clients, next to the disk's raw
# fsync rate; the last line is the summary.
bench:
	$(GO) run ./cmd/bench -clients 64 -duration 5s

clean:
	rm -rf ./logs
