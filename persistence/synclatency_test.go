package persistence

import (
	"testing"
	"testing/synctest"
	"time"

	"twopc/messages"
)

// Options.SyncLatency is waited before every fsync, on the caller's clock
// (virtual inside a synctest bubble): a forced append is answered only
// after it, a lazy one waits for nothing, and a power cut during the wait
// loses the records the fsync would have made durable.
func TestSyncLatencyIsWaitedBeforeEachFsync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Registered first, so run last: protoactor's dead-letter throttle
		// (a stop in a later cleanup makes one) ends inside the bubble.
		t.Cleanup(func() { time.Sleep(2 * time.Second) })
		dir := t.TempDir()
		l, err := Open(Options{Dir: dir, SyncLatency: func() time.Duration { return 5 * time.Millisecond }})
		if err != nil {
			t.Fatal(err)
		}
		n := spawnNode(t, newSystem(t), l)
		start := time.Now()
		n.mustAppend(false, prepared(1, messages.Set("a", 1)))
		if took := time.Since(start); took != 0 {
			t.Fatalf("a lazy append took %v, want no wait", took)
		}
		n.mustAppend(true, committed(1))
		if took := time.Since(start); took != 5*time.Millisecond {
			t.Fatalf("a forced append took %v, want the 5ms latency", took)
		}

		done := make(chan error, 1)
		go func() { done <- n.appendRecs(true, prepared(2, messages.Set("b", 2))) }()
		time.Sleep(time.Millisecond) // the fsync is waiting its latency
		n.log.PowerCut()
		if err := <-done; err == nil {
			t.Fatal("an append whose fsync the power cut interrupted succeeded")
		}
		n.stop()
		l2 := openLog(t, dir, 0)
		defer l2.Close()
		if _, ok := l2.State().InDoubt[tx(2)]; ok {
			t.Fatal("PREPARED of the append the power cut interrupted survived the crash")
		}
		if got := l2.State().KV["a"]; got != 1 {
			t.Fatalf("a = %d after the crash, want 1 (committed before it)", got)
		}
	})
}
