package cluster

import (
	"os"
	"runtime"
)

// TuneProcs sets GOMAXPROCS for a process that hosts nodes nodes, unless
// the GOMAXPROCS environment variable already chose.
//
// Each node's persistence actor spends much of its time inside write and
// fsync, and a goroutine in a blocking system call keeps its P until the
// runtime hands it off. With one P per core, a few nodes syncing at once
// leave the rest of the process waiting, although the cores are idle.
// One extra P per node keeps the other actors running. Measured with
// `go run ./cmd/bench -clients 64` (4 nodes, 2 cores, medians of 3-5 runs):
// 6,735 commits/s with GOMAXPROCS=2, 14,162 with 6.
func TuneProcs(nodes int) {
	if os.Getenv("GOMAXPROCS") != "" || nodes < 1 {
		return
	}
	runtime.GOMAXPROCS(runtime.NumCPU() + nodes)
}
