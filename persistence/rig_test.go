package persistence

// The persistence tests' rig, in one place: an actor system, a log and the
// actor that owns it (node), records and histories to write, and what the
// tests read back from a log's directory.

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

const replyTimeout = 10 * time.Second

func newSystem(tb testing.TB) *actor.ActorSystem {
	tb.Helper()
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
}

// node is a log and the persistence actor that owns it.
type node struct {
	tb  testing.TB
	sys *actor.ActorSystem
	log *Log
	pid *actor.PID
	ids uint64
}

func openLog(tb testing.TB, dir string, every int) *Log {
	tb.Helper()
	l, err := Open(Options{Dir: dir, SnapshotEvery: every})
	if err != nil {
		tb.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

func startNode(tb testing.TB, sys *actor.ActorSystem, dir string, every int) *node {
	tb.Helper()
	l := openLog(tb, dir, every)
	return spawnNode(tb, sys, l)
}

func spawnNode(tb testing.TB, sys *actor.ActorSystem, l *Log) *node {
	tb.Helper()
	n := &node{tb: tb, sys: sys, log: l, pid: sys.Root.Spawn(Props(l))}
	tb.Cleanup(func() { sys.Root.Stop(n.pid) })
	return n
}

// appendRecs appends recs as one request and waits for its reply.
func (n *node) appendRecs(force bool, recs ...messages.Record) error {
	n.tb.Helper()
	n.ids++
	id := n.ids
	res, err := n.sys.Root.RequestFuture(n.pid, &messages.Append{ID: id, Records: recs, Force: force}, replyTimeout).Result()
	if err != nil {
		n.tb.Fatalf("append %d: no reply: %v", id, err)
	}
	rep, ok := res.(*messages.Appended)
	if !ok {
		n.tb.Fatalf("append %d: reply is %T, want *messages.Appended", id, res)
	}
	if rep.ID != id {
		n.tb.Fatalf("append %d: reply carries ID %d", id, rep.ID)
	}
	return rep.Err
}

func (n *node) mustAppend(force bool, recs ...messages.Record) {
	n.tb.Helper()
	if err := n.appendRecs(force, recs...); err != nil {
		n.tb.Fatalf("append: %v", err)
	}
}

func request[T any](tb testing.TB, n *node, msg any) T {
	tb.Helper()
	res, err := n.sys.Root.RequestFuture(n.pid, msg, replyTimeout).Result()
	if err != nil {
		tb.Fatalf("%T: no reply: %v", msg, err)
	}
	rep, ok := res.(T)
	if !ok {
		tb.Fatalf("%T: reply is %T", msg, res)
	}
	return rep
}

// stop poisons the actor and waits until it has closed the log.
func (n *node) stop() {
	n.tb.Helper()
	if err := n.sys.Root.PoisonFuture(n.pid).Wait(); err != nil {
		n.tb.Fatalf("poison: %v", err)
	}
}

func tx(seq uint64) messages.TxID { return messages.TxID{Node: 1, Incarnation: 1, Seq: seq} }

func prepared(seq uint64, ops ...messages.Op) messages.Record {
	return messages.Record{Kind: messages.RecPrepared, Tx: tx(seq), Participants: []int32{0, 1}, Ops: ops}
}

func committed(seq uint64) messages.Record {
	return messages.Record{Kind: messages.RecCommitted, Tx: tx(seq)}
}

// foldOf is the state the records should add up to, computed without a log.
func foldOf(recs []messages.Record) *State {
	s := NewState()
	for _, r := range recs {
		s.Apply(r)
	}
	return s
}

// frameOffsets returns the offset of every frame in a segment file,
// trusting the lengths (the file is a good one).
func frameOffsets(tb testing.TB, path string) []int64 {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var offs []int64
	for off := 0; off < len(data); {
		offs = append(offs, int64(off))
		off += frameHeaderSize + int(binary.LittleEndian.Uint32(data[off:]))
	}
	return offs
}

func segPath(dir string, i uint64) string { return filepath.Join(dir, segName(i)) }

// randomHistory produces n records that look like a node's life: boots,
// transactions prepared and then committed or aborted (some duplicated,
// some by an operator's heuristic decision), commit decisions and their ends.
func randomHistory(rng *rand.Rand, n int) []messages.Record {
	var recs []messages.Record
	var inDoubt, pending []messages.TxID
	var seq uint64
	inc := uint32(0)
	keys := []string{"value", "a", "b", "c", "n1/x", "n2/y"}
	pick := func(list *[]messages.TxID) messages.TxID {
		i := rng.IntN(len(*list))
		t := (*list)[i]
		*list = append((*list)[:i], (*list)[i+1:]...)
		return t
	}
	for len(recs) < n {
		switch k := rng.IntN(100); {
		case k < 3:
			inc++
			recs = append(recs, messages.Record{Kind: messages.RecBoot, Incarnation: inc})
		case k < 35:
			seq++
			t := messages.TxID{Node: rng.Int32N(4), Incarnation: inc + 1, Seq: seq}
			var ops []messages.Op
			for range 1 + rng.IntN(4) {
				key := keys[rng.IntN(len(keys))]
				switch rng.IntN(4) {
				case 0:
					ops = append(ops, messages.Set(key, rng.Int64N(1000)-500))
				case 1:
					ops = append(ops, messages.Delete(key))
				case 2:
					ops = append(ops, messages.AddFloor(key, rng.Int64N(100)-50, 0))
				default:
					ops = append(ops, messages.Add(key, rng.Int64N(100)-50))
				}
			}
			recs = append(recs, messages.Record{Kind: messages.RecPrepared, Tx: t, Participants: []int32{0, 2, 3}, Ops: ops})
			inDoubt = append(inDoubt, t)
		case k < 60 && len(inDoubt) > 0:
			t := pick(&inDoubt)
			if t.Seq%7 == 0 { // an operator's heuristic commit
				recs = append(recs, messages.Record{Kind: messages.RecHeuristic, Tx: t, Decision: messages.DecisionCommit})
			}
			recs = append(recs, messages.Record{Kind: messages.RecCommitted, Tx: t})
			if rng.IntN(10) == 0 { // a redelivered Commit
				recs = append(recs, messages.Record{Kind: messages.RecCommitted, Tx: t})
			}
		case k < 70 && len(inDoubt) > 0:
			t := pick(&inDoubt)
			if t.Seq%5 == 0 { // an operator's heuristic abort
				recs = append(recs, messages.Record{Kind: messages.RecHeuristic, Tx: t, Decision: messages.DecisionAbort})
			}
			recs = append(recs, messages.Record{Kind: messages.RecAborted, Tx: t})
		case k < 85:
			seq++
			t := messages.TxID{Node: 0, Incarnation: inc + 1, Seq: seq}
			recs = append(recs, messages.Record{Kind: messages.RecCommitDecision, Tx: t, Participants: []int32{0, 1, 2}[:1+rng.IntN(3)]})
			pending = append(pending, t)
		case k < 92:
			// An acceptor's promise or acceptance (non-blocking commit),
			// for one of the transactions named so far.
			t := messages.TxID{Node: rng.Int32N(4), Incarnation: inc + 1, Seq: 1 + rng.Uint64N(seq+1)}
			b := messages.Ballot(rng.IntN(20))
			if rng.IntN(2) == 0 {
				recs = append(recs, messages.Record{Kind: messages.RecPromised, Tx: t, Ballot: b + 1})
			} else {
				recs = append(recs, messages.Record{Kind: messages.RecAccepted, Tx: t, Ballot: b, Decision: messages.Decision(1 + rng.IntN(2))})
			}
		case len(pending) > 0:
			recs = append(recs, messages.Record{Kind: messages.RecEnd, Tx: pick(&pending)})
		}
	}
	return recs
}

// writeHistory appends recs one forced append at a time through the actor
// and closes the log, leaving one frame per record in segment 1.
func writeHistory(t *testing.T, dir string, recs []messages.Record) {
	t.Helper()
	n := startNode(t, newSystem(t), dir, -1)
	for _, r := range recs {
		n.mustAppend(true, r)
	}
	n.stop()
}

func fiveRecords() []messages.Record {
	return []messages.Record{
		{Kind: messages.RecBoot, Incarnation: 1},
		prepared(1, messages.Set("a", 10)),
		committed(1),
		prepared(2, messages.Add("a", 5), messages.Set("b", 2)),
		committed(2),
	}
}

func dirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(data)
	}
	return m
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// framesOf frames recs as one batch would.
func framesOf(t *testing.T, recs ...messages.Record) []byte {
	t.Helper()
	var out []byte
	for i := range recs {
		var err error
		if out, err = appendRecordFrame(out, &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// crashThenReplay cuts the power under n's log (unsynced bytes are lost),
// then replays dir and checks it adds up to want.
func crashThenReplay(t *testing.T, n *node, dir string, want []messages.Record) {
	t.Helper()
	request[*CrashSimulated](t, n, &SimulateCrash{})
	n.stop()
	l := openLog(t, dir, -1)
	defer l.Close()
	if got, want := l.State(), foldOf(want); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after crash:\n got %+v\nwant %+v", got, want)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// bigState appends batches × perBatch committed keys, forced, and
// returns the records.
func bigState(n *node, batches, perBatch int) []messages.Record {
	var all []messages.Record
	for b := range batches {
		ops := make([]messages.Op, 0, perBatch)
		for k := range perBatch {
			ops = append(ops, messages.Set(fmt.Sprintf("key-%04d-%05d", b, k), int64(k)))
		}
		recs := []messages.Record{prepared(uint64(b+1), ops...), committed(uint64(b + 1))}
		n.mustAppend(true, recs...)
		all = append(all, recs...)
	}
	return all
}

// requester is a closed-loop client actor: it sends its next forced append
// when the reply to the previous one arrives, and checks every reply is its own.
type requester struct {
	wal   *actor.PID
	base  uint64 // IDs base+1 .. base+count
	count uint64
	sent  uint64
	errs  []string
	done  chan<- []string
}

type startRequests struct{}

func (r *requester) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *startRequests:
		r.next(ctx)
	case *messages.Appended:
		want := r.base + r.sent
		if m.ID != want {
			r.errs = append(r.errs, fmt.Sprintf("got reply %d, want %d", m.ID, want))
		}
		if m.Err != nil {
			r.errs = append(r.errs, fmt.Sprintf("append %d: %v", m.ID, m.Err))
		}
		if r.sent == r.count {
			r.done <- r.errs
			return
		}
		r.next(ctx)
	}
}

func (r *requester) next(ctx actor.Context) {
	r.sent++
	id := r.base + r.sent
	ctx.Request(r.wal, &messages.Append{
		ID:      id,
		Force:   true,
		Records: []messages.Record{{Kind: messages.RecCommitDecision, Tx: messages.TxID{Node: 1, Incarnation: 1, Seq: id}, Participants: []int32{0, 1}}},
	})
}

// requesterCount matches the design's group-commit measurement.
const requesterCount = 64

// heuristicHistory: tx(1) heuristically committed, tx(2) heuristically
// aborted, tx(3) committed normally, tx(4) heuristically aborted with its
// lazy ABORTED lost (still in doubt in the fold).
func heuristicHistory() []messages.Record {
	return []messages.Record{
		{Kind: messages.RecBoot, Incarnation: 1},
		prepared(1, messages.Set("a", 10)),
		prepared(2, messages.Set("b", 20)),
		prepared(3, messages.Set("c", 30)),
		prepared(4, messages.Set("d", 40)),
		{Kind: messages.RecHeuristic, Tx: tx(1), Decision: messages.DecisionCommit},
		committed(1),
		{Kind: messages.RecHeuristic, Tx: tx(2), Decision: messages.DecisionAbort},
		{Kind: messages.RecAborted, Tx: tx(2)},
		committed(3),
		{Kind: messages.RecHeuristic, Tx: tx(4), Decision: messages.DecisionAbort},
	}
}

// v1State encodes s as the version 1 snapshot payload, as written before
// heuristic decisions existed: the version 5 encoding without its last
// five sections. s must hold no heuristic decision.
func v1State(t *testing.T, covers uint64, s *State) []byte {
	t.Helper()
	if len(s.Heuristic) != 0 || len(s.Outcomes) != 0 || len(s.Marks) != 0 || len(s.Acceptor) != 0 || len(s.Reconciled) != 0 {
		t.Fatal("a version 1 snapshot cannot hold heuristic decisions, outcomes, marks, acceptor entries or reconciled ones")
	}
	b := appendState(nil, covers, s)
	if n := len(b); b[0] != 5 || b[n-5] != 0 || b[n-4] != 0 || b[n-3] != 0 || b[n-2] != 0 || b[n-1] != 0 {
		t.Fatalf("version 5 encoding does not start with 5 and end with empty heuristic, outcome, mark, acceptor and reconciled sections: %x", b)
	}
	b = b[:len(b)-5]
	b[0] = 1
	return b
}

// preOutcomes is the fold of recs as a snapshot older than version 3
// holds it: without the participant's outcomes and marks.
func preOutcomes(recs []messages.Record) *State {
	s := foldOf(recs)
	s.Outcomes = map[messages.TxID]messages.RecordKind{}
	s.Marks = map[int32]messages.TxID{}
	return s
}

func sampleRecords() []messages.Record {
	return []messages.Record{
		{Kind: messages.RecBoot, Incarnation: 7},
		{Kind: messages.RecPrepared, Tx: messages.TxID{Node: 2, Incarnation: 5, Seq: 17}, Participants: []int32{0, 2},
			Ops: []messages.Op{messages.Set("a", -3), messages.AddFloor("value", 1, 0), messages.Delete("n2/x"), messages.Add("b", math.MinInt64)}},
		{Kind: messages.RecCommitted, Tx: messages.TxID{Node: 2, Incarnation: 5, Seq: 17}},
		{Kind: messages.RecAborted, Tx: messages.TxID{Node: math.MaxInt32, Incarnation: math.MaxUint32, Seq: math.MaxUint64}},
		{Kind: messages.RecCommitDecision, Tx: messages.TxID{Node: -1, Incarnation: 1, Seq: 1}, Participants: []int32{math.MinInt32, 0, math.MaxInt32}},
		{Kind: messages.RecEnd, Tx: messages.TxID{Node: 0, Incarnation: 1, Seq: 1}},
		{Kind: messages.RecHeuristic, Tx: messages.TxID{Node: 3, Incarnation: 2, Seq: 9}, Decision: messages.DecisionAbort},
		{Kind: messages.RecHeuristic, Tx: messages.TxID{Node: 0, Incarnation: 4, Seq: 1}, Decision: messages.DecisionCommit},
		{Kind: messages.RecRefused, Tx: messages.TxID{Node: 1, Incarnation: 3, Seq: 4}},
		{Kind: messages.RecPromised, Tx: messages.TxID{Node: 1, Incarnation: 3, Seq: 5}, Ballot: 7},
		{Kind: messages.RecAccepted, Tx: messages.TxID{Node: 1, Incarnation: 3, Seq: 5}, Ballot: math.MaxUint32, Decision: messages.DecisionAbort},
		{Kind: messages.RecAccepted, Tx: messages.TxID{Node: 2, Incarnation: 1, Seq: 6}, Decision: messages.DecisionCommit},
		{Kind: messages.RecReadOnly, Tx: messages.TxID{Node: 1, Incarnation: 3, Seq: 5}},
		{Kind: messages.RecMark, Tx: messages.TxID{Node: 1, Incarnation: 3, Seq: 5}},
	}
}

// recordFrom builds a valid record from fuzz input, so the fuzzer explores
// the encoder as well as the decoder.
func recordFrom(data []byte) messages.Record {
	rng := rand.New(rand.NewPCG(uint64(len(data)), 0))
	next := func() uint64 {
		if len(data) >= 8 {
			v := binary.LittleEndian.Uint64(data)
			data = data[8:]
			return v
		}
		return rng.Uint64()
	}
	r := messages.Record{
		Kind:        messages.RecordKind(1 + next()%uint64(messages.LastRecordKind)),
		Tx:          messages.TxID{Node: int32(next()), Incarnation: uint32(next()), Seq: next()},
		Incarnation: uint32(next()),
	}
	if r.Kind == messages.RecHeuristic || r.Kind == messages.RecAccepted {
		r.Decision = messages.DecisionCommit + messages.Decision(next()%2)
	}
	if r.Kind == messages.RecPromised || r.Kind == messages.RecAccepted {
		r.Ballot = messages.Ballot(next())
	}
	for range next() % 4 {
		r.Participants = append(r.Participants, int32(next()))
	}
	for range next() % 4 {
		key := make([]byte, next()%12)
		for i := range key {
			key[i] = byte(next())
		}
		r.Ops = append(r.Ops, messages.Op{Key: string(key), Kind: messages.OpKind(1 + next()%3),
			Value: int64(next()), Floor: int64(next()), HasFloor: next()%2 == 0})
	}
	return r
}
