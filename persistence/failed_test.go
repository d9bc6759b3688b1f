package persistence

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"twopc/messages"
)

// Options.Failed tells the log's owner, once, that the log failed, so that
// a node can stop instead of serving without a log; a power cut or a
// failure while closing is not reported.

// failures collects what Options.Failed is told.
type failures struct {
	mu   sync.Mutex
	errs []error
}

func (f *failures) record(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *failures) got() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

func openWithFailed(t *testing.T, dir string) (*Log, *failures) {
	t.Helper()
	f := &failures{}
	l, err := Open(Options{Dir: dir, SnapshotEvery: -1, Failed: f.record})
	if err != nil {
		t.Fatal(err)
	}
	return l, f
}

func TestFailedCalledOnceOnWriteFailure(t *testing.T) {
	dir := t.TempDir()
	l, f := openWithFailed(t, dir)
	n := spawnNode(t, newSystem(t), l)
	n.mustAppend(true, prepared(1, messages.Set("a", 1)))
	disk := errors.New("injected: disk failed")
	l.FailWritesForTest(disk)
	err := n.appendRecs(true, committed(1))
	if !errors.Is(err, disk) || !strings.Contains(err.Error(), "write at offset") {
		t.Fatalf("append on a failing disk: %v, want the write error", err)
	}
	if err2 := n.appendRecs(false, committed(2)); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("append after the failure: %v, want %v", err2, err)
	}
	// Answered after the failure was reported (same goroutine, before the
	// reply), so the count is final here.
	if got := f.got(); len(got) != 1 || got[0].Error() != err.Error() {
		t.Fatalf("Failed was told %v, want once: %v", got, err)
	}
	n.stop()
	if got := f.got(); len(got) != 1 {
		t.Fatalf("Failed told again while stopping: %v", got)
	}
	// The failed write never reached the file: replay has the first record.
	r := openLog(t, dir, -1)
	defer r.Close()
	if _, ok := r.State().InDoubt[tx(1)]; !ok || len(r.State().KV) != 0 {
		t.Fatalf("replay after the failure: in doubt %v, kv %v", r.State().InDoubt, r.State().KV)
	}
}

func TestFailedCalledOnFsyncFailure(t *testing.T) {
	l, f := openWithFailed(t, t.TempDir())
	n := spawnNode(t, newSystem(t), l)
	n.mustAppend(false, prepared(1, messages.Set("a", 1))) // written, not synced
	disk := errors.New("injected: fsync failed")
	l.FailWritesForTest(disk)
	err := n.appendRecs(true) // nothing new: only forces what is there
	if !errors.Is(err, disk) || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("forced append on a failing disk: %v, want the fsync error", err)
	}
	if got := f.got(); len(got) != 1 || !errors.Is(got[0], disk) {
		t.Fatalf("Failed was told %v, want the fsync failure once", got)
	}
}

// A power cut makes appends fail too, but it is no news to whoever cut the
// power (a crash test, a node crashing): Failed stays silent.
func TestFailedNotCalledForPowerCut(t *testing.T) {
	l, f := openWithFailed(t, t.TempDir())
	n := spawnNode(t, newSystem(t), l)
	n.mustAppend(true, prepared(1, messages.Set("a", 1)))
	l.PowerCut()
	if err := n.appendRecs(true, committed(1)); !errors.Is(err, errCrashed) {
		t.Fatalf("append after a power cut: %v, want %v", err, errCrashed)
	}
	request[*CrashSimulated](t, n, &SimulateCrash{})
	if err := n.appendRecs(false, committed(2)); err == nil {
		t.Fatal("append after a simulated crash succeeded")
	}
	n.stop()
	if got := f.got(); len(got) != 0 {
		t.Fatalf("Failed was told %v after a power cut", got)
	}
}

// A failure while the log is closed (an orderly stop's last fsync) is
// returned by Close, not reported as a log failure: the owner is already
// stopping.
func TestFailedNotCalledWhileClosing(t *testing.T) {
	l, f := openWithFailed(t, t.TempDir())
	n := spawnNode(t, newSystem(t), l)
	n.mustAppend(false, prepared(1, messages.Set("a", 1))) // left for Close to sync
	l.FailWritesForTest(errors.New("injected: fsync failed at close"))
	n.stop()
	if err := l.Close(); err != nil { // closed already by the actor: nothing more
		t.Fatalf("second Close: %v", err)
	}
	if l.failed == nil || !strings.Contains(l.failed.Error(), "fsync failed at close") {
		t.Fatalf("the close's failure was not kept: %v", l.failed)
	}
	if got := f.got(); len(got) != 0 {
		t.Fatalf("Failed was told %v for a failure while closing", got)
	}
}
