package persistence

import (
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
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
		case len(pending) > 0:
			recs = append(recs, messages.Record{Kind: messages.RecEnd, Tx: pick(&pending)})
		}
	}
	return recs
}
