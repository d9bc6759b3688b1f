package persistence

import (
	"fmt"
	"sync"
	"testing"

	"twopc/messages"
)

// Options.Written hears of every append once its records are written,
// with its own force flag (a lazy append riding along a forced batch is
// still lazy), and of nothing after a power cut: those writes never happen.
func TestWrittenObserver(t *testing.T) {
	var mu sync.Mutex
	var got []string
	l, err := Open(Options{Dir: t.TempDir(), Written: func(recs []messages.Record, forced bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			got = append(got, fmt.Sprintf("%v/%v", r, forced))
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	n := spawnNode(t, newSystem(t), l)
	n.mustAppend(true, prepared(1, messages.Set("a", 1)))
	n.mustAppend(false, committed(1), prepared(2))
	n.mustAppend(true, committed(2))
	n.log.PowerCut()
	if err := n.appendRecs(true, committed(3)); err == nil {
		t.Fatal("append after a power cut succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	want := "[PREPARED 1.1.1/true COMMITTED 1.1.1/false PREPARED 1.1.2/false COMMITTED 1.1.2/true]"
	if fmt.Sprint(got) != want {
		t.Fatalf("observed %v\nwant     %s", got, want)
	}
}
