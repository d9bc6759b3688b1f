package cluster

// Snapshot reads: keys on several nodes read as of one point in the serial
// order of committed transactions (see actors/reads.go for the owners' side
// and why it is one point).

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors"
	"twopc/messages"
)

// snapshotSeq numbers snapshot read attempts in this process; with the
// node's id and incarnation it makes every attempt's ReadID unique.
var snapshotSeq atomic.Uint64

// SnapshotAttempts bounds the attempts of one SnapshotRead. An attempt is
// retried when an owner refuses it (a key held by a transaction begun after
// the read, which could otherwise wait for the read: a cycle) or gave up
// its lock before the release; each retry begins afresh, younger.
const SnapshotAttempts = 8

// errSnapshotRetry marks an attempt that may succeed if tried again.
var errSnapshotRetry = errors.New("retry")

// SnapshotRead returns the committed values of keys as of one point in the
// serial order of committed transactions: never part of a transaction,
// and including every transaction committed before the call. One entry per
// key per owner, in the order asked, like Read.
//
// It costs, per owning node, two round trips (lock and answer, release and
// its acknowledgement), four messages, and no disk write; keys held by
// transactions are waited for as a Read waits. Keys of one node are read
// as one message each way. Read uses it for keys on more than one node.
func (n *Node) SnapshotRead(keys ...string) ([]NodeValue, error) {
	if n.cut.Load() {
		return nil, fmt.Errorf("node %d: %w", n.cfg.ID, errNodeCrashed)
	}
	if len(keys) == 0 {
		return nil, errors.New("read: no keys given")
	}
	owners, perNode, err := keysByOwner(keys, len(n.cfg.Members))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(n.readTimeout())
	var errs []string
	for attempt := 1; ; attempt++ {
		got, err := n.snapshotOnce(perNode, deadline)
		if err == nil {
			return assembleValues(keys, owners, got), nil
		}
		errs = append(errs, err.Error())
		if !errors.Is(err, errSnapshotRetry) || attempt == SnapshotAttempts || !time.Now().Before(deadline) {
			return nil, fmt.Errorf("snapshot read of %s: %d attempt(s): %s", strings.Join(keys, " "), attempt, lastDistinct(errs))
		}
		// A short random pause, growing: readers that refused each other's
		// writers, or writers that keep taking the keys, fall out of step.
		pause := time.Duration(rand.Int64N(int64(attempt) * int64(5*time.Millisecond)))
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-n.stopCh:
			t.Stop()
			return nil, errNodeStopping
		case <-n.cutCh:
			t.Stop()
			return nil, fmt.Errorf("node %d: %w", n.cfg.ID, errNodeCrashed)
		}
	}
}

// lastDistinct is the last error, with how many attempts ended so.
func lastDistinct(errs []string) string {
	last, same := errs[len(errs)-1], 0
	for _, e := range errs {
		if e == last {
			same++
		}
	}
	if same == len(errs) {
		return last
	}
	return fmt.Sprintf("%s (the last of %d; earlier: %s)", last, len(errs), errs[0])
}

// snapshotOnce is one attempt: lock and read at every owner, then release
// everywhere and make sure every owner held its lock throughout.
func (n *Node) snapshotOnce(perNode [][]string, deadline time.Time) ([][]messages.KeyValue, error) {
	id := messages.ReadID{Node: n.cfg.ID, Incarnation: n.incarnation, Seq: snapshotSeq.Add(1)}
	begun := time.Now()
	// An owner gives up waiting after the vote timeout and says so; half a
	// second more for the answer to travel.
	attemptEnd := begun.Add(n.cfg.Timing.WithDefaults().VoteTimeout + 500*time.Millisecond)
	if attemptEnd.After(deadline) {
		attemptEnd = deadline
	}
	members := len(perNode)
	pid := func(o int) *actor.PID { return actor.NewPID(n.cfg.Members[o], actors.ParticipantName) }
	pending := make([]*pendingReply, members)
	defer func() {
		for _, r := range pending {
			if r != nil {
				n.sys.ProcessRegistry.Remove(r.pid)
			}
		}
	}()
	for o, ks := range perNode {
		if len(ks) > 0 {
			r, err := n.request(pid(o), &messages.ReadLock{Reader: id, Begun: begun.UnixNano(), Keys: ks})
			if err != nil {
				return nil, err
			}
			pending[o] = r
		}
	}
	got := make([][]messages.KeyValue, members)
	var failed error
	for o, r := range pending {
		if r == nil {
			continue
		}
		res, err := r.await(attemptEnd)
		pending[o] = nil
		if got[o], err = lockedValues(int32(o), id, perNode[o], res, err); err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		// Release every lock that may have been taken; nobody waits for
		// the acknowledgements.
		for o, ks := range perNode {
			if len(ks) > 0 {
				n.sys.Root.Send(pid(o), &messages.ReadRelease{Reader: id})
			}
		}
		if errors.Is(failed, errNodeStopping) || errors.Is(failed, errNodeCrashed) {
			return nil, failed
		}
		return nil, fmt.Errorf("%w: %w", errSnapshotRetry, failed)
	}
	// Every owner answered and still holds its lock: this is the moment
	// the answers describe. Release, and learn whether each held it until
	// now.
	for o, ks := range perNode {
		if len(ks) > 0 {
			r, err := n.request(pid(o), &messages.ReadRelease{Reader: id})
			if err != nil {
				return nil, err
			}
			pending[o] = r
		}
	}
	releaseEnd := time.Now().Add(time.Second)
	if releaseEnd.Before(attemptEnd) {
		releaseEnd = attemptEnd
	}
	for o, r := range pending {
		if r == nil {
			continue
		}
		res, err := r.await(releaseEnd)
		pending[o] = nil
		if failed == nil {
			failed = heldThroughout(int32(o), id, res, err)
		}
	}
	if failed != nil {
		if errors.Is(failed, errNodeStopping) || errors.Is(failed, errNodeCrashed) {
			return nil, failed
		}
		return nil, fmt.Errorf("%w: %w", errSnapshotRetry, failed)
	}
	return got, nil
}

// lockedValues checks owner's answer to a ReadLock.
func lockedValues(owner int32, id messages.ReadID, keys []string, res interface{}, err error) ([]messages.KeyValue, error) {
	if err != nil {
		return nil, fmt.Errorf("node %d did not answer: %w", owner, err)
	}
	switch m := res.(type) {
	case *actor.DeadLetterResponse:
		return nil, fmt.Errorf("node %d did not answer: its participant is not running", owner)
	case *messages.ReadReply: // a participant stopping tells its waiting reads so
		if m.Err != "" && m.From == owner {
			return nil, errors.New(m.Err)
		}
	case *messages.ReadLocked:
		switch {
		case m.From != owner || m.Reader != id:
			// A reply address can be guessed; only the owner asked may answer.
			return nil, fmt.Errorf("answer from node %d for %v, not from node %d for %v", m.From, m.Reader, owner, id)
		case m.Err != "":
			return nil, errors.New(m.Err)
		case len(m.Values) == len(keys):
			return m.Values, nil
		}
	}
	return nil, fmt.Errorf("node %d: unexpected answer %T", owner, res)
}

// heldThroughout checks owner's answer to a ReadRelease.
func heldThroughout(owner int32, id messages.ReadID, res interface{}, err error) error {
	if err != nil {
		return fmt.Errorf("node %d did not acknowledge the release: %w", owner, err)
	}
	m, ok := res.(*messages.ReadReleased)
	switch {
	case !ok:
		return fmt.Errorf("node %d: unexpected answer %T to a release", owner, res)
	case m.From != owner || m.Reader != id:
		return fmt.Errorf("release answered by node %d for %v, not by node %d for %v", m.From, m.Reader, owner, id)
	case !m.Held:
		return fmt.Errorf("node %d gave up its read lock before the release (lease ran out, or it restarted)", owner)
	}
	return nil
}

// keysByOwner finds each key's owners, and each owner's keys in the order
// asked.
func keysByOwner(keys []string, members int) (owners [][]int32, perNode [][]string, err error) {
	owners = make([][]int32, len(keys))
	perNode = make([][]string, members)
	for i, k := range keys {
		own, err := messages.Owners(k, members)
		if err != nil {
			return nil, nil, err
		}
		owners[i] = own
		for _, o := range own {
			perNode[o] = append(perNode[o], k)
		}
	}
	return owners, perNode, nil
}

// assembleValues lays the owners' answers out as Read does: one entry per
// key per owner, in the order the keys were asked.
func assembleValues(keys []string, owners [][]int32, got [][]messages.KeyValue) []NodeValue {
	var out []NodeValue
	next := make([]int, len(got))
	for i, k := range keys {
		for _, o := range owners[i] {
			out = append(out, NodeValue{Key: k, Node: o, Value: got[o][next[o]].Value})
			next[o]++
		}
	}
	return out
}

// ownedBySeveral reports whether keys live on more than one node: Read then
// takes a snapshot. (Keys of one node are one snapshot of it anyway.)
func ownedBySeveral(keys []string, members int) bool {
	first := int32(-1)
	for _, k := range keys {
		own, err := messages.Owners(k, members)
		if err != nil {
			return false // Read reports it
		}
		for _, o := range own {
			if first >= 0 && o != first {
				return true
			}
			first = o
		}
	}
	return false
}

// SnapshotRead reads keys as one snapshot (Node.SnapshotRead) through the
// first node that is up and answers: what the prompt's get of several keys
// calls.
func (l *Local) SnapshotRead(keys ...string) ([]NodeValue, error) {
	var errs []error
	for i := range l.members {
		n := l.Node(i)
		if n == nil {
			continue
		}
		vals, err := n.SnapshotRead(keys...)
		if err == nil {
			return vals, nil
		}
		errs = append(errs, fmt.Errorf("via node %d: %w", i, err))
	}
	if len(errs) == 0 {
		return nil, errors.New("every node is down")
	}
	return nil, errors.Join(errs...)
}
