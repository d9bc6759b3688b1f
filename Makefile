# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go

.PHONY: run test bench build vet clean

# The four-node cluster on 127.0.0.1:3000-3003 and the seed's demo.
run:
	$(GO) run ./cmd/cluster

# Every package, under the race detector, bounded in time.
test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

build:
	$(GO) build ./...

# Commits per second with 64 concurrent clients, next to the disk's raw
# fsync rate; the last line is the summary.
bench:
	$(GO) run ./cmd/bench -clients 64 -duration 5s

clean:
	rm -rf ./logs
