package persistence

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"twopc/actors/actortest"
	"twopc/messages"
)

// A node's directory is private and holds only regular files; nothing in it
// is ever opened through a link (files.go).

// writtenLog leaves dir holding a closed log with fiveRecords in segment 1.
func writtenLog(t *testing.T, dir string) {
	t.Helper()
	l := openLog(t, dir, -1)
	if err := l.writeBatch(framesOf(t, fiveRecords()...), 5, 1, true); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// wantRefused checks that Open(dir) fails with an error naming path and
// saying what it is.
func wantRefused(t *testing.T, dir, path, what string) {
	t.Helper()
	l, err := Open(Options{Dir: dir})
	if err == nil {
		l.Close()
		t.Fatalf("Open(%s) accepted %s in place of a regular file", dir, what)
	}
	if msg := err.Error(); !strings.Contains(msg, path+" is "+what) {
		t.Fatalf("Open(%s): %q, want it to say %q", dir, msg, path+" is "+what)
	}
}

func TestSymlinkedSegmentRefusedAndTargetUntouched(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-0")
	writtenLog(t, dir)
	seg := segPath(dir, 1)
	// The file outside ends in a torn tail: had Open followed the link, the
	// trim would have cut it, and appends would have landed there.
	outside := filepath.Join(t.TempDir(), "victim")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	victim := append(b, 0x30, 0, 0, 0, 1, 2)
	if err := os.WriteFile(outside, victim, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, seg); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, dir, seg, "a symbolic link (to "+outside+")")
	got, err := os.ReadFile(outside)
	if err != nil || string(got) != string(victim) {
		t.Fatalf("the link's target changed: %d bytes, want %d (%v)", len(got), len(victim), err)
	}
	if st, err := os.Lstat(seg); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link itself was replaced: %v %v", st, err)
	}

	// Should a link appear after the directory was checked, the opens still
	// refuse it: O_NOFOLLOW, for reading, appending and trimming alike.
	for _, flag := range []int{os.O_RDONLY, os.O_WRONLY | os.O_APPEND, os.O_WRONLY} {
		if f, err := OpenFile(seg, flag, 0); err == nil || !strings.Contains(err.Error(), seg+" is a symbolic link") {
			if f != nil {
				f.Close()
			}
			t.Fatalf("OpenFile(link, %#x): %v, want a refusal naming it", flag, err)
		}
	}
	l := &Log{dir: dir, logger: hclog.NewNullLogger()}
	if err := l.trim(1, segmentScan{size: int64(len(victim)), end: int64(len(b)), torn: "test"}); err == nil {
		t.Fatal("trim followed the link")
	}
	if got, _ := os.ReadFile(outside); string(got) != string(victim) {
		t.Fatalf("trim cut the link's target to %d bytes", len(got))
	}
}

func TestSymlinkedSnapshotAndNodeDirRefused(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "node-0")
	n := startNode(t, newSystem(t), dir, -1)
	n.mustAppend(true, fiveRecords()...)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.stop()
	snap := filepath.Join(dir, snapName(2))
	moved := filepath.Join(parent, "elsewhere.snap")
	if err := os.Rename(snap, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, snap); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, dir, snap, "a symbolic link (to "+moved+")")
	if err := os.Remove(snap); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, snap); err != nil {
		t.Fatal(err)
	}

	// The node's directory itself a link to a real log directory.
	real := filepath.Join(parent, "real")
	if err := os.Rename(dir, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, dir); err != nil {
		t.Fatal(err)
	}
	l, err := Open(Options{Dir: dir})
	if err == nil {
		l.Close()
		t.Fatal("Open accepted a symbolic link as the node's directory")
	}
	if want := "data directory " + dir + " is a symbolic link (to " + real + ")"; !strings.Contains(err.Error(), want) {
		t.Fatalf("Open: %q, want it to say %q", err, want)
	}
}

func TestFIFOOrDirectoryInPlaceOfSegmentRefused(t *testing.T) {
	for _, what := range []string{"a named pipe (FIFO)", "a directory"} {
		t.Run(what, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "node-0")
			writtenLog(t, dir)
			seg := segPath(dir, 1)
			if err := os.Remove(seg); err != nil {
				t.Fatal(err)
			}
			var err error
			if what == "a directory" {
				err = os.Mkdir(seg, 0o700)
			} else {
				err = syscall.Mkfifo(seg, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			// A FIFO opened for reading or writing would wait for the other
			// end: Open must refuse it without opening it.
			wantRefused(t, dir, seg, what)
			// And an open that gets there anyway (a FIFO made after the
			// check) neither waits nor accepts it.
			for _, flag := range []int{os.O_RDONLY, os.O_WRONLY | os.O_APPEND} {
				if f, err := OpenFile(seg, flag, 0); err == nil {
					f.Close()
					t.Fatalf("OpenFile(%s, %#x) accepted it", what, flag)
				}
			}
		})
	}
}

// A fresh log's directory and every file in it, segments and snapshots
// alike, are private to the node's user.
func TestFilePermissionsAfterARun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node-0")
	n := startNode(t, newSystem(t), dir, 2) // automatic snapshots too
	n.mustAppend(true, fiveRecords()...)
	n.mustAppend(true, prepared(3, messages.Set("c", 1)), committed(3))
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.mustAppend(false, prepared(4, messages.Set("d", 1)))
	n.stop()
	wantPrivate(t, dir)
	names := keys(dirContents(t, dir))
	if !strings.Contains(strings.Join(names, " "), snapSuffix) || !strings.Contains(strings.Join(names, " "), segSuffix) {
		t.Fatalf("want segments and a snapshot to check, got %v", names)
	}
}

// wantPrivate checks dir is 0700 and every entry a 0600 regular file.
func wantPrivate(t *testing.T, dir string) {
	t.Helper()
	st, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != os.ModeDir|DirPerm {
		t.Errorf("%s: mode %v, want %v", dir, st.Mode(), os.ModeDir|DirPerm)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != FilePerm {
			t.Errorf("%s: mode %v, want %v", e.Name(), info.Mode(), FilePerm)
		}
	}
}

// A directory left open by an older version (0755, files 0644) is
// tightened when opened, with one warning naming what changed.
func TestWidePermissionsTightenedOnOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-0")
	writtenLog(t, dir)
	other := filepath.Join(dir, "NOTES")
	if err := os.WriteFile(other, []byte("operator's notes"), 0o666); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o755, segPath(dir, 1): 0o644, other: 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	before := dirContents(t, dir)
	buf := &actortest.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: buf})
	for i := 0; i < 2; i++ { // the second Open finds nothing to change
		l, err := Open(Options{Dir: dir, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	wantPrivate(t, dir)
	out := buf.String()
	if c := strings.Count(out, "permissions tightened"); c != 1 || strings.Count(out, "\n") != 1 {
		t.Fatalf("want one warning about tightened permissions, got:\n%s", out)
	}
	for _, want := range []string{"[WARN]", dir, ". (-rwxr-xr-x)", segName(1) + " (-rw-r--r--)", "NOTES (-rw-rw-rw-)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("warning does not say %q:\n%s", want, out)
		}
	}
	if after := dirContents(t, dir); len(after) != len(before) || after["NOTES"] != before["NOTES"] || after[segName(1)] != before[segName(1)] {
		t.Fatalf("tightening changed contents: %v -> %v", keys(before), keys(after))
	}
}

// A refused directory is left as found, permissions included: the check of
// every entry comes before any change.
func TestRefusedDirectoryKeepsItsPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-0")
	writtenLog(t, dir)
	if err := os.Chmod(segPath(dir, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	link := segPath(dir, 2)
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, dir, link, "a symbolic link (to /dev/null)")
	if st, err := os.Stat(segPath(dir, 1)); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("segment 1 after a refused Open: %v %v, want it left at 0644", st, err)
	}
	if _, err := ReadFile(link); err == nil || !strings.Contains(err.Error(), link+" is a symbolic link") {
		t.Fatalf("ReadFile through a link: %v", err)
	}
}
