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

// After a run, a node's directory is 0700 and every file in it (segments,
// CLUSTER, LOCK) 0600; a symbolic link in place of CLUSTER or LOCK, or of
// the node's directory itself, stops the node with an error naming it, and
// the file it points to is left alone.
func TestDamageLinksRefusedAndFilesPrivate(t *testing.T) {
	data := t.TempDir()
	l, err := StartLocal(LocalConfig{Nodes: 2, DataDir: data, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	if o, err := l.Node(0).Submit(messages.Set("n1/x", 1), messages.Set("n0/y", 1)); err != nil || !o.Committed {
		t.Fatalf("%v %v", o, err)
	}
	if err := l.StopNode(1); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "node-1")
	wantPrivateDir(t, dir, membershipFile, "LOCK", filepath.Base(onlySegment(t, dir)))

	outside := filepath.Join(t.TempDir(), "outside")
	for _, name := range []string{membershipFile, "LOCK"} {
		p := filepath.Join(dir, name)
		saved, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(outside, saved, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, p); err != nil {
			t.Fatal(err)
		}
		err = l.RestartNode(1)
		if want := p + " is a symbolic link (to " + outside + ")"; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "node 1") {
			t.Fatalf("restart with %s a link: %v, want an error naming node 1 and saying %q", name, err, want)
		}
		if st, err := os.Stat(outside); err != nil || st.Mode().Perm() != 0o644 {
			t.Fatalf("the link's target was changed: %v %v", st, err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, saved, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	real := filepath.Join(data, "node-1-real")
	if err := os.Rename(dir, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, dir); err != nil {
		t.Fatal(err)
	}
	err = l.RestartNode(1)
	if want := "data directory " + dir + " is a symbolic link"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("restart with the node's directory a link: %v, want %q", err, want)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(real, dir); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	vals, err := l.Node(0).Read("n1/x")
	if err != nil || vals[0].Value != 1 {
		t.Fatalf("n1/x after the links were undone: %v %v, want 1", vals, err)
	}
}

// wantPrivateDir checks dir is 0700 and every entry a 0600 regular file,
// the names given among them.
func wantPrivateDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	st, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != os.ModeDir|0o700 {
		t.Errorf("%s: mode %v, want drwx------", dir, st.Mode())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Name()] = true
		if info.Mode() != 0o600 {
			t.Errorf("%s: mode %v, want -rw-------", e.Name(), info.Mode())
		}
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("%s: no %s to check (have %v)", dir, n, seen)
		}
	}
}
