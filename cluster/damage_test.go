package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"twopc/messages"
	"twopc/persistence"
)

// Bad input on disk, seen from a node: damage in the middle of the log stops
// the node with an error naming the file and offset and changes nothing; a
// torn tail (a crash mid-write) is trimmed with a warning and the node runs.

func TestDamagedLogStopsTheNodeAndChangesNothing(t *testing.T) {
	logger, logs := newBufferLogger(hclog.Warn)
	data := t.TempDir()
	l, err := StartLocal(LocalConfig{Nodes: 2, DataDir: data, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	for i := int64(1); i <= 5; i++ {
		if o, err := l.Node(0).Submit(messages.Set("n1/x", i), messages.Set("n0/y", i)); err != nil || !o.Committed {
			t.Fatalf("%v %v", o, err)
		}
	}
	if err := l.StopNode(1); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "node-1")
	seg := onlySegment(t, dir)

	// One flipped byte in the middle: intact records follow it, so this is
	// damage, not a crash's torn tail.
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	mid := int64(len(b) / 2)
	b[mid] ^= 0x40
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirContents(t, dir)
	err = l.RestartNode(1)
	if err == nil {
		t.Fatal("a node with a damaged log started")
	}
	var damage *persistence.DamageError
	if !errors.As(err, &damage) || damage.File != seg || damage.Offset <= 0 || damage.Offset > mid {
		t.Fatalf("error %v: want a DamageError naming %s at an offset up to %d", err, seg, mid)
	}
	if msg := err.Error(); !strings.Contains(msg, seg) || !strings.Contains(msg, fmt.Sprintf("offset %d", damage.Offset)) || !strings.Contains(msg, "node 1") {
		t.Fatalf("error %q does not name the node, file and offset", msg)
	}
	if after := dirContents(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refusing to start changed the directory:\nbefore %q\nafter  %q", keys(before), keys(after))
	}

	// Undo the damage and tear the tail instead, as a crash mid-write does:
	// the node trims it, says so, and serves everything committed.
	b[mid] ^= 0x40
	torn := append(append([]byte{}, b...), 0x30, 0, 0, 0, 1, 2) // a header promising 48 bytes, then 2
	if err := os.WriteFile(seg, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(1); err != nil {
		t.Fatalf("a torn tail stopped the node: %v", err)
	}
	if !strings.Contains(logs.String(), "trimming torn tail of log") {
		t.Fatalf("no warning about the torn tail; log:\n%s", logs.String())
	}
	vals, err := l.Node(0).Read("n1/x")
	if err != nil || vals[0].Value != 5 {
		t.Fatalf("n1/x after trimming: %v %v, want 5", vals, err)
	}
}
