// Package persistence keeps a node's write-ahead log: records are appended
// in CRC-checked frames to numbered segment files, folded into a State, and
// periodically captured in a snapshot that lets the segments before it go.
//
// One persistence actor (Props) owns a Log once spawned and is its only
// writer; it batches appends from every requester into one write and one
// fsync (group commit).
//
// Files in a node's directory:
//
//	wal-%016d.log   segments, appended in index order
//	snap-%016d.snap snapshot N: the fold of every record in segments < N
//
// Replay is the newest snapshot N followed by segments N, N+1, ... in order.
//
// The directory is 0700 and its files 0600; it holds regular files only, and
// none is ever opened through a symbolic link (see PrepareDir and OpenFile).
package persistence

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// Options configures a node's log. Open fills the unset fields with
// WithDefaults and refuses the result if Validate does; each field's comment
// says what its zero value means.
type Options struct {
	// Dir is this node's own directory (e.g. ./logs/node-0), created if
	// missing. Required: there is no default, as two nodes must never share
	// one.
	Dir string

	// SnapshotEvery is the number of records between automatic snapshots.
	// 0 (unset) means DefaultSnapshotEvery; any negative value disables
	// automatic snapshots (Snapshot may still be called).
	SnapshotEvery int

	// Logger receives the log's own messages. Nil means hclog.NewNullLogger().
	Logger hclog.Logger

	// Written, if set, is called by the persistence actor, on its own
	// goroutine, once per append whose records were written successfully
	// (forced: that append asked for fsync, and got it), before its
	// requester is answered. It lets a node's tracing show log writes in a
	// transaction's history; a write that fails — e.g. after a power cut —
	// is never reported, as it never happened. It must be quick and must
	// not keep or change recs. Nil: nothing is called, and it has no
	// default.
	Written func(recs []messages.Record, forced bool)

	// Failed, if set, is called once, when a write or fsync fails and the
	// log starts refusing appends for good (see Log.fail): a node cannot go
	// on without its log, and this is how it learns to stop. It runs on the
	// goroutine that hit the failure — the persistence actor's — so it
	// must not block, and above all must not wait for that actor. It is not
	// called for a simulated power cut (PowerCut, CrashForTest), nor for a
	// failure while the log is being closed: those are not news to whoever
	// cut the power or is closing it. When it is called, logging the
	// failure is left to it. Nil: nothing is called, and the log logs the
	// failure itself.
	Failed func(err error)

	// Synced, if set, is called by the persistence actor after each
	// successful fsync of the active segment, with how long the fsync took
	// and how many records it made durable (written since the previous
	// fsync): what a node's metrics measure the disk by. It must be quick.
	// Nil: nothing is called, and the fsync is not timed.
	Synced func(took time.Duration, records int)

	// SyncLatency, if set, is waited before each fsync of the active
	// segment: a slow disk for the simulation, whose clock is virtual (a
	// power cut during the wait loses what the fsync would have made
	// durable). Nil: no wait.
	SyncLatency func() time.Duration
}

// DefaultSnapshotEvery is the automatic snapshot interval used when
// Options.SnapshotEvery is 0.
const DefaultSnapshotEvery = 10000

// WithDefaults returns a copy of o with every unset field that has a default
// filled in (see each field). Set fields are kept as given: nothing is
// raised or lowered behind the caller's back.
func (o Options) WithDefaults() Options {
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o
}

// Validate reports the first setting Open cannot work with, naming the field
// and the rule it breaks. It accepts both o as given and o.WithDefaults().
// Only Dir has a rule today: every SnapshotEvery has a meaning, and no two
// fields can contradict each other.
func (o Options) Validate() error {
	if o.Dir == "" {
		return errors.New("persistence: Options.Dir is empty: it must name this node's own directory")
	}
	return nil
}

const (
	segPrefix  = "wal-"
	segSuffix  = ".log"
	snapPrefix = "snap-"
	snapSuffix = ".snap"
	tmpSuffix  = ".tmp"
)

func segName(i uint64) string  { return fmt.Sprintf("%s%016d%s", segPrefix, i, segSuffix) }
func snapName(i uint64) string { return fmt.Sprintf("%s%016d%s", snapPrefix, i, snapSuffix) }

// parseIndex reads the index out of a file name of the form
// prefix + 16 digits + suffix.
func parseIndex(name, prefix, suffix string) (uint64, bool) {
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return 0, false
	}
	digits := name[len(prefix) : len(name)-len(suffix)]
	if len(digits) != 16 {
		return 0, false
	}
	i, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return i, true
}

// errCrashed is what a Log answers after CrashForTest.
var errCrashed = errors.New("persistence: log stopped by a simulated crash")

// Log is one node's write-ahead log. Apart from Stats, which any goroutine
// may call, and Dir, its methods are for its owner: the code that opened it
// until Props' actor is spawned, then that actor alone.
type Log struct {
	dir    string
	every  int // records between automatic snapshots; 0: never
	logger hclog.Logger

	written  func([]messages.Record, bool) // Options.Written
	onFailed func(error)                   // Options.Failed; nil once called
	synced   func(time.Duration, int)      // Options.Synced
	latency  func() time.Duration          // Options.SyncLatency
	unsynced int                           // records written since the last fsync, for synced

	state *State

	seg         *os.File // active segment, opened for appending
	segIndex    uint64
	segSize     int64 // bytes written to the active segment
	syncedSize  int64 // segSize at the last successful fsync
	closedBytes int64 // bytes in live segments before the active one
	sinceSnap   int   // records written since the last snapshot attempt

	failed error // set on a write or fsync error; the log then refuses appends
	closed bool

	// powerCut is set by PowerCut, from any goroutine; the owner checks it
	// before every write and fsync.
	powerCut atomic.Bool

	// injected is set by FailWritesForTest, from any goroutine: every
	// later write and fsync fails with it.
	injected atomic.Pointer[error]

	// Counters read by Stats from any goroutine.
	appends, records, fsyncs, batches, snapshots atomic.Uint64
	logBytes                                     atomic.Int64
	lastSnapshot                                 atomic.Pointer[string]
}

// Open replays the log in opts.Dir (the newest snapshot, then every later
// segment), trims a torn tail off the last segment, and opens that segment
// for appending. Damage anywhere else is returned as an error naming the file
// and offset, and then nothing on disk has been changed (but permissions
// wider than 0700/0600, which PrepareDir tightens first). A symbolic link or
// any other non-regular file in the directory is refused the same way.
func Open(opts Options) (*Log, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	l := &Log{dir: opts.Dir, logger: opts.Logger, written: opts.Written, onFailed: opts.Failed, synced: opts.Synced, latency: opts.SyncLatency, state: NewState()}
	if opts.SnapshotEvery > 0 {
		l.every = opts.SnapshotEvery // negative: l.every stays 0, never
	}
	// Private, and only regular files in it: see files.go.
	if err := PrepareDir(l.dir, l.logger); err != nil {
		return nil, err
	}
	segs, snaps, temps, err := l.list()
	if err != nil {
		return nil, err
	}

	// Everything up to the torn-tail trim only reads, so that damage leaves
	// the directory exactly as found for someone to inspect.
	var snapIdx uint64
	if len(snaps) > 0 {
		snapIdx = snaps[len(snaps)-1]
		if err := l.loadSnapshot(snapIdx); err != nil {
			return nil, err
		}
	}
	i, _ := slices.BinarySearch(segs, snapIdx)
	live := segs[i:]
	if err := l.checkSequence(snapIdx, live); err != nil {
		return nil, err
	}
	// The segment a crash can tear is the last one written to: empty
	// segments after it (a crash right after a rotation) do not count.
	tornable := len(live) - 1
	for tornable > 0 {
		st, err := os.Lstat(l.path(segName(live[tornable])))
		if err != nil {
			return nil, fmt.Errorf("persistence: %w", err)
		}
		if st.Size() > 0 {
			break
		}
		tornable--
	}
	var last segmentScan
	for i, idx := range live {
		res, err := scanSegment(l.path(segName(idx)), i == tornable, l.state.Apply)
		if err != nil {
			return nil, err
		}
		l.sinceSnap += res.records
		if i < len(live)-1 {
			l.closedBytes += res.size
		}
		if res.torn != "" {
			if err := l.trim(idx, res); err != nil {
				return nil, err
			}
			if i < len(live)-1 {
				l.closedBytes -= res.size - res.end
			}
		}
		last = res
	}

	if snapIdx > 0 && (len(segs) > len(live) || len(snaps) > 1 || len(temps) > 0) {
		// The snapshot's name must be durable before anything it replaces
		// goes: a crash between its rename and the directory fsync may have
		// left it only in the page cache.
		if err := syncDir(l.dir); err != nil {
			return nil, err
		}
	}
	l.removeStale(snapIdx, segs, snaps, temps)
	if len(live) == 0 {
		l.segIndex = max(snapIdx, 1)
		err = l.createSegment()
	} else {
		l.segIndex = live[len(live)-1]
		l.segSize = last.end
		err = l.openSegment()
	}
	if err != nil {
		return nil, err
	}
	l.logBytes.Store(l.closedBytes + l.segSize)
	if snapIdx > 0 {
		name := snapName(snapIdx)
		l.lastSnapshot.Store(&name)
	}
	l.logger.Info("log replayed", "dir", l.dir, "snapshot", snapIdx, "segments", len(live),
		"records", l.sinceSnap, "incarnation", l.state.Incarnation,
		"in_doubt", len(l.state.InDoubt), "pending", len(l.state.Pending))
	return l, nil
}

func (l *Log) path(name string) string { return filepath.Join(l.dir, name) }

// list returns the segment and snapshot indexes in ascending order, and the
// names of snapshot temp files a crash left behind.
func (l *Log) list() (segs, snaps []uint64, temps []string, err error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("persistence: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if i, ok := parseIndex(name, segPrefix, segSuffix); ok {
			segs = append(segs, i)
		} else if i, ok := parseIndex(name, snapPrefix, snapSuffix); ok {
			snaps = append(snaps, i)
		} else if strings.HasPrefix(name, snapPrefix) && strings.HasSuffix(name, tmpSuffix) {
			temps = append(temps, name)
		}
	}
	slices.Sort(segs)
	slices.Sort(snaps)
	return segs, snaps, temps, nil
}

// checkSequence refuses a gap in the segments replay needs: a missing
// segment would drop acknowledged records without a trace.
func (l *Log) checkSequence(snapIdx uint64, live []uint64) error {
	first := max(snapIdx, 1)
	if len(live) == 0 {
		if snapIdx > 0 {
			return fmt.Errorf("persistence: %s: segment %s is missing (snapshot %s covers only the segments before it)",
				l.dir, segName(snapIdx), snapName(snapIdx))
		}
		return nil
	}
	if live[0] != first {
		if snapIdx > 0 {
			return fmt.Errorf("persistence: %s: segment %s is missing (snapshot %s is followed by %s)",
				l.dir, segName(first), snapName(snapIdx), segName(live[0]))
		}
		return fmt.Errorf("persistence: %s: segment %s is missing and no snapshot covers it (first segment is %s)",
			l.dir, segName(first), segName(live[0]))
	}
	for i := 1; i < len(live); i++ {
		if live[i] != live[i-1]+1 {
			return fmt.Errorf("persistence: %s: segment %s is missing (between %s and %s)",
				l.dir, segName(live[i-1]+1), segName(live[i-1]), segName(live[i]))
		}
	}
	return nil
}

func (l *Log) loadSnapshot(idx uint64) error {
	p := l.path(snapName(idx))
	data, err := ReadFile(p)
	if err != nil {
		return err
	}
	payload, err := readSnapshotFrame(data)
	if err != nil {
		return fmt.Errorf("persistence: %s: damaged snapshot: %w", p, err)
	}
	covers, s, err := decodeState(payload)
	if err != nil {
		return fmt.Errorf("persistence: %s: damaged snapshot: %w", p, err)
	}
	if covers != idx {
		return fmt.Errorf("persistence: %s: damaged snapshot: it says it covers segments before %d, its name says %d", p, covers, idx)
	}
	l.state = s
	return nil
}

// trim cuts the torn tail off the last segment and makes the cut durable, so
// that the next append does not land behind garbage.
func (l *Log) trim(idx uint64, res segmentScan) error {
	p := l.path(segName(idx))
	l.logger.Warn("trimming torn tail of log", "file", p, "offset", res.end,
		"dropped_bytes", res.size-res.end, "reason", res.torn)
	// Never through a link: the cut must land on this directory's file.
	f, err := OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("persistence: trim torn tail: %w", err)
	}
	err = f.Truncate(res.end)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("persistence: %s: trim torn tail at offset %d: %w", p, res.end, err)
	}
	return nil
}

// removeStale deletes what an interrupted snapshot left behind: files the
// newest snapshot made obsolete, and temp files. Failure only costs space.
func (l *Log) removeStale(snapIdx uint64, segs, snaps []uint64, temps []string) {
	var names []string
	for _, i := range segs {
		if i < snapIdx {
			names = append(names, segName(i))
		}
	}
	for _, i := range snaps {
		if i < snapIdx {
			names = append(names, snapName(i))
		}
	}
	names = append(names, temps...)
	for _, name := range names {
		if err := os.Remove(l.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.logger.Warn("cannot remove obsolete log file", "file", l.path(name), "error", err)
		} else {
			l.logger.Debug("removed obsolete log file", "file", l.path(name))
		}
	}
}

// openSegment opens the existing segment l.segIndex for appending. It is
// fsynced once so that syncedSize (the crash model of CrashForTest) is true
// even for bytes an earlier process wrote without forcing.
func (l *Log) openSegment() error {
	p := l.path(segName(l.segIndex))
	f, err := OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("persistence: %s: fsync: %w", p, err)
	}
	l.seg, l.syncedSize = f, l.segSize
	return nil
}

// createSegment creates the empty segment l.segIndex and makes its name
// durable before anything is written to it.
func (l *Log) createSegment() error {
	f, err := l.newSegmentFile(l.segIndex)
	if err != nil {
		return err
	}
	l.seg, l.segSize, l.syncedSize = f, 0, 0
	return nil
}

func (l *Log) newSegmentFile(idx uint64) (*os.File, error) {
	p := l.path(segName(idx))
	f, err := OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, FilePerm)
	if err != nil {
		return nil, err
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		os.Remove(p)
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("persistence: %s: fsync directory: %w", dir, err)
	}
	return nil
}

// usable says why the log cannot take appends, or nil.
func (l *Log) usable() error {
	if l.powerCut.Load() {
		return errCrashed
	}
	if l.failed != nil {
		return l.failed
	}
	if l.closed {
		return fmt.Errorf("persistence: %s: log is closed", l.dir)
	}
	return nil
}

// fail makes the log refuse every later append. After a failed write or
// fsync nobody knows what reached the disk (a retried fsync may report
// success for pages the kernel already dropped), so the only safe course is
// to stop and let recovery read what is really there.
func (l *Log) fail(err error) error {
	l.failed = fmt.Errorf("%w (the log refuses appends until the node restarts)", err)
	if l.onFailed != nil && !l.closed && !l.powerCut.Load() {
		f := l.onFailed
		l.onFailed = nil // once: later appends are refused, not failed again
		f(l.failed)      // the owner logs it, with what it does about it
		return l.failed
	}
	l.logger.Error("log failed", "dir", l.dir, "error", err)
	return l.failed
}

// FailWritesForTest makes every later write and fsync of the log fail with
// err, as a disk that went bad would: the next append fails, the log stops
// (fail) and Options.Failed is called. Safe from any goroutine; for tests
// of what a node does when its log fails.
func (l *Log) FailWritesForTest(err error) { l.injected.Store(&err) }

// injectedErr is the error FailWritesForTest asked for, or nil.
func (l *Log) injectedErr() error {
	if p := l.injected.Load(); p != nil {
		return *p
	}
	return nil
}

// writeBatch writes frames (records records from appends requests) to the
// active segment in one write and, if force, fsyncs it. A force with nothing
// new still syncs earlier unforced bytes.
func (l *Log) writeBatch(frames []byte, records, appends int, force bool) error {
	if err := l.usable(); err != nil {
		return err
	}
	if len(frames) > 0 {
		n, err := 0, l.injectedErr()
		if err == nil {
			n, err = l.seg.Write(frames)
		}
		l.segSize += int64(n)
		if err != nil {
			return l.fail(fmt.Errorf("persistence: %s: write at offset %d: %w",
				l.path(segName(l.segIndex)), l.segSize-int64(n), err))
		}
		l.batches.Add(1)
		l.unsynced += records
	}
	if force && l.segSize > l.syncedSize {
		if err := l.sync(); err != nil {
			return err
		}
	}
	l.records.Add(uint64(records))
	l.appends.Add(uint64(appends))
	l.sinceSnap += records
	l.logBytes.Store(l.closedBytes + l.segSize)
	return nil
}

func (l *Log) sync() error {
	if l.latency != nil {
		time.Sleep(l.latency())
	}
	if l.powerCut.Load() {
		// Written but never synced: lost, as after a power cut.
		return errCrashed
	}
	var start time.Time
	if l.synced != nil {
		start = time.Now()
	}
	err := l.injectedErr()
	if err == nil {
		err = l.seg.Sync()
	}
	if err != nil {
		return l.fail(fmt.Errorf("persistence: %s: fsync: %w", l.path(segName(l.segIndex)), err))
	}
	if l.synced != nil {
		l.synced(time.Since(start), l.unsynced)
	}
	l.unsynced = 0
	l.fsyncs.Add(1)
	l.syncedSize = l.segSize
	return nil
}

func (l *Log) snapshotDue() bool { return l.every > 0 && l.sinceSnap >= l.every }

// snapshot starts a new segment and writes a snapshot of the fold that
// covers every segment before it, then deletes what the snapshot covers.
func (l *Log) snapshot() error {
	if err := l.usable(); err != nil {
		return err
	}
	// Retry only after another interval, so a persistent failure (a full
	// disk) is not retried, with a new segment each time, on every flush.
	l.sinceSnap = 0
	// The old segment must be durable before the next one exists on disk:
	// otherwise a crash could leave a torn tail in a segment that is no
	// longer the last, which replay rightly calls damage.
	if l.segSize > l.syncedSize {
		if err := l.sync(); err != nil {
			return err
		}
	}
	next := l.segIndex + 1
	if l.powerCut.Load() {
		return errCrashed
	}
	f, err := l.newSegmentFile(next)
	if err != nil {
		return l.snapshotFailed(err)
	}
	if err := l.seg.Close(); err != nil {
		l.logger.Warn("closing log segment", "file", l.path(segName(l.segIndex)), "error", err)
	}
	l.closedBytes += l.segSize
	l.seg, l.segIndex, l.segSize, l.syncedSize = f, next, 0, 0
	l.logBytes.Store(l.closedBytes)

	name := snapName(next)
	if err := l.writeSnapshot(next, name); err != nil {
		if errors.Is(err, errCrashed) {
			return err
		}
		return l.snapshotFailed(err)
	}
	l.snapshots.Add(1)
	l.lastSnapshot.Store(&name)
	if l.powerCut.Load() {
		return errCrashed // the snapshot is whole; the covered files stay
	}
	segs, snaps, _, err := l.list()
	if err != nil {
		l.logger.Warn("cannot list log directory to remove covered files", "error", err)
	} else {
		l.removeStale(next, segs, snaps, nil)
	}
	l.closedBytes = 0
	l.logBytes.Store(l.segSize)
	l.logger.Debug("snapshot written", "file", l.path(name), "keys", len(l.state.KV))
	return nil
}

func (l *Log) snapshotFailed(err error) error {
	l.logger.Error("snapshot failed; the log keeps every segment", "dir", l.dir, "error", err)
	return err
}

// writeSnapshot writes the fold to name atomically: a reader sees either the
// complete file or none.
func (l *Log) writeSnapshot(covers uint64, name string) error {
	frame, err := frameBytes(appendState(nil, covers, l.state))
	if err != nil {
		return fmt.Errorf("persistence: snapshot %s: %w", l.path(name), err)
	}
	// A power cut stops it at any step, as a real one would; a temporary
	// file left behind is removed by the next Open.
	tmp, err := os.CreateTemp(l.dir, snapPrefix+"*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	_, err = tmp.Write(frame)
	if err == nil && l.powerCut.Load() {
		err = errCrashed
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && l.powerCut.Load() {
		err = errCrashed
	}
	if err == nil {
		err = os.Rename(tmp.Name(), l.path(name))
	}
	if errors.Is(err, errCrashed) {
		return err
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("persistence: snapshot %s: %w", l.path(name), err)
	}
	if l.powerCut.Load() {
		return errCrashed
	}
	return syncDir(l.dir)
}

// State returns a deep copy of the fold: what replay recovered plus every
// record written since. Call it only where the Log's owner runs (before the
// actor is spawned or after it stopped).
func (l *Log) State() *State { return l.state.Clone() }

// Stats returns the log's counters. Safe from any goroutine.
func (l *Log) Stats() messages.LogStats {
	st := messages.LogStats{
		Appends:   l.appends.Load(),
		Records:   l.records.Load(),
		Fsyncs:    l.fsyncs.Load(),
		Batches:   l.batches.Load(),
		Snapshots: l.snapshots.Load(),
		LogBytes:  l.logBytes.Load(),
	}
	if p := l.lastSnapshot.Load(); p != nil {
		st.LastSnapshot = *p
	}
	return st
}

// Dir returns the directory the log lives in.
func (l *Log) Dir() string { return l.dir }

// Close makes every written record durable and closes the active segment.
// Closing again does nothing. A log that failed is closed without another
// fsync, whose success could not be believed, and Close reports the failure.
func (l *Log) Close() error {
	if l.closed {
		return nil
	}
	if l.powerCut.Load() {
		l.CrashForTest()
		return nil
	}
	l.closed = true
	var err error
	if l.failed == nil && l.segSize > l.syncedSize {
		err = l.sync()
	}
	if cerr := l.seg.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("persistence: %s: close: %w", l.path(segName(l.segIndex)), cerr)
	}
	if err == nil && l.failed != nil {
		err = l.failed
	}
	return err
}

// PowerCut makes the log behave, from the moment it returns, as if the
// machine lost power: nothing more is written or synced, and closing the log
// (or CrashForTest) drops every byte written after the last fsync. Unlike
// the log's other methods it may be called from any goroutine — a crash-point
// test calls it from inside another actor, at the exact protocol step.
func (l *Log) PowerCut() { l.powerCut.Store(true) }

// CrashForTest simulates a power cut: the active segment loses every byte
// written after its last fsync and is closed without syncing anything more.
// The log then refuses appends. Like every owner method it must not race the
// actor; send the actor a SimulateCrash to crash a running log.
func (l *Log) CrashForTest() {
	if l.closed {
		return
	}
	l.closed = true
	if err := l.seg.Truncate(l.syncedSize); err != nil {
		l.logger.Warn("simulated crash: cannot cut unsynced tail", "file", l.path(segName(l.segIndex)), "error", err)
	}
	l.seg.Close()
	if l.failed == nil {
		l.failed = errCrashed
	}
	l.logger.Info("simulated crash", "file", l.path(segName(l.segIndex)), "kept_bytes", l.syncedSize,
		"lost_bytes", l.segSize-l.syncedSize)
}
