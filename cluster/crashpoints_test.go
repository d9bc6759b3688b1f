package cluster

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
	"twopc/persistence"
)

// The crash-point table: one transaction at a time, the power of one node
// cut at one protocol step, the node restarted from its log, and then every
// node must agree — the transaction applied on all its participants or on
// none, as the step dictates, no lock held, nothing in doubt, and the
// coordinator's log holding no undecided commit.

// crashTiming keeps each case short: votes time out after a second, a
// participant in doubt asks after 100 ms and then every 400 ms at most.
var crashTiming = actors.Timing{
	VoteTimeout:       time.Second,
	ClockSkew:         50 * time.Millisecond, // one process, one clock
	ResendInterval:    50 * time.Millisecond,
	MaxResendInterval: 200 * time.Millisecond,
	InDoubtAfter:      100 * time.Millisecond,
	MaxQueryInterval:  400 * time.Millisecond,
}

// crashPointTiming is crashTiming for the crash-point rig, with one
// difference: a participant asks for the decision only once the vote
// timeout has passed. A participant that asks while the coordinator still
// counts votes makes it abort ("asked for the decision before all votes
// arrived"), so with the 100 ms of crashTiming a loaded machine, where
// voting takes longer, aborted transactions that had to commit: a race
// between a timer and the votes, which this timing rules out.
var crashPointTiming = actors.Timing{
	VoteTimeout:       time.Second,
	ClockSkew:         50 * time.Millisecond,
	ResendInterval:    50 * time.Millisecond,
	MaxResendInterval: 200 * time.Millisecond,
	InDoubtAfter:      1200 * time.Millisecond,
	MaxQueryInterval:  1200 * time.Millisecond,
}

// crashAt says when to cut a node's power: at the first step of kind at on
// node, with peer if peer >= 0; after waiting, if after is set, until a step
// matching after has happened for the same transaction (so that a message
// sent just before the crash has arrived), the node that reported the step
// held at it meanwhile. The node whose power is cut is victim, or node
// itself if victim is nil. It is Local.CrashAt, in the words of the table.
type crashAt struct {
	node   int32
	at     actors.StepKind
	peer   int32
	after  func(actors.Step) bool
	victim *int32 // nil: the node of the step

	armed *ArmedCrash
}

// crashRig is a cluster whose power cuts are armed with Local.CrashAt.
type crashRig struct {
	t     *testing.T
	l     *Local
	proto actors.Protocol
}

func newCrashRig(t *testing.T) *crashRig {
	return newCrashRigSnapshotting(t, 0, actors.DefaultProtocol)
}

// newCrashRigSnapshotting snapshots every snapEvery records (0: the
// default), so recovery must find what it needs in snapshots as well, and
// runs protocol proto.
func newCrashRigSnapshotting(t *testing.T, snapEvery int, proto actors.Protocol) *crashRig {
	r := &crashRig{t: t, proto: proto.OrDefault()}
	l, err := StartLocal(LocalConfig{
		Nodes: 4, DataDir: t.TempDir(), Timing: crashPointTiming, SnapshotEvery: snapEvery, CrashAtSteps: true, Protocol: proto,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	r.l = l
	return r
}

// arm arms c, replacing any crash armed on its victim. With cutOnly the
// node is left, power cut, for the test to take down (Local.Crash);
// otherwise it is taken down at once, and RestartNode waits for that.
func (r *crashRig) arm(c *crashAt, cutOnly bool) *crashAt {
	r.t.Helper()
	victim := c.node
	if c.victim != nil {
		victim = *c.victim
	}
	opts := []CrashOption{Watching(int(c.node))}
	if c.peer >= 0 {
		opts = append(opts, WithPeer(int(c.peer)))
	}
	if after := c.after; after != nil {
		opts = append(opts, Holding(), Until(func(at, s actors.Step) bool { return s.Tx == at.Tx && after(s) }))
	}
	if cutOnly {
		opts = append(opts, PowerCutOnly())
	}
	a, err := r.l.CrashAt(int(victim), c.at, opts...)
	if err != nil {
		r.t.Fatal(err)
	}
	c.armed = a
	return c
}

// crashed waits until c's power cut and returns the step it came at.
func (r *crashRig) crashed(c *crashAt) actors.Step {
	r.t.Helper()
	select {
	case <-c.armed.Fired():
		return c.armed.At()
	case <-time.After(10 * time.Second):
		r.l.Disarm(c.armed.Node())
		r.t.Fatalf("never reached %v on node %d", c.at, c.node)
		return actors.Step{}
	}
}

// outcome is what a transaction did, as the participants' state shows it.
type outcome string

const (
	committed outcome = "committed"
	aborted   outcome = "aborted"
	either    outcome = "committed or aborted"
)

type crashPoint struct {
	name  string
	role  string // whose power is cut: "participant" or "coordinator"
	at    actors.StepKind
	after func(victim int32) func(actors.Step) bool
	first bool // coordinator steps with a peer: the first participant only
	// on: where the step is watched, if not on the crashing node itself:
	// "coordinator" (with the crashing participant as peer), or
	// "participant" (one apart from the coordinator).
	on   string
	want outcome
	// wantOnCoordinatorNode, if set, is the outcome when the participant
	// whose power is cut shares its node with the coordinator.
	wantOnCoordinatorNode outcome
	// only: the point exists in this protocol only ("": in both).
	only actors.Protocol
	// wantNonBlocking, if set, is the outcome under the non-blocking commit.
	wantNonBlocking outcome
}

// Every crash point the protocol has, and the outcome it must lead to.
var crashPoints = []crashPoint{
	{name: "participant before logging PREPARED", role: "participant", at: actors.StepPrepareReceived, want: aborted},
	{name: "participant after logging PREPARED", role: "participant", at: actors.StepPreparedLogged, want: aborted},
	// On the coordinator's node the crash also stops the txn actor, which
	// may or may not have logged COMMIT by then (the last vote may be this
	// one): either outcome is right, as long as every node agrees.
	//
	// Under the non-blocking commit the crashed participant may also be the
	// acceptor the coordinator's ballot 0 went to: restarted, it recovers
	// the transaction itself if its coordinator has not answered yet, and
	// a recovery that finds no acceptance chooses abort — either outcome,
	// the same everywhere.
	{name: "participant after voting yes", role: "participant", at: actors.StepVoted, want: committed, wantOnCoordinatorNode: either, wantNonBlocking: either,
		after: func(victim int32) func(actors.Step) bool {
			return func(s actors.Step) bool { return s.Kind == actors.StepVoteReceived && s.Peer == victim }
		}},
	{name: "coordinator before logging COMMIT", role: "coordinator", at: actors.StepCommitDecided, want: aborted},
	{name: "coordinator after logging COMMIT", role: "coordinator", at: actors.StepCommitLogged, want: committed},
	{name: "coordinator after Commit reached some participants", role: "coordinator", at: actors.StepCommitSent, first: true, want: committed,
		after: func(int32) func(actors.Step) bool {
			return func(s actors.Step) bool { return s.Kind == actors.StepCommittedLogged }
		}},
	{name: "coordinator before logging END", role: "coordinator", at: actors.StepAllAcked, want: committed},
	{name: "participant before logging COMMITTED", role: "participant", at: actors.StepCommitReceived, want: committed},
	{name: "participant after logging COMMITTED", role: "participant", at: actors.StepCommittedLogged, want: committed},
	// Crashes watched from the other side: a message is out, so whatever
	// the crashing node logged before sending it must be durable.
	{name: "participant once its ack reached the coordinator", role: "participant", at: actors.StepAckReceived, on: "coordinator", want: committed},
	{name: "coordinator once a participant received Commit", role: "coordinator", at: actors.StepCommitReceived, on: "participant", want: committed},
	// The non-blocking commit's own steps. The acceptors of a transaction
	// coordinated by node 0 are nodes 0, 1 and 2.
	{name: "coordinator once its first accept was sent", role: "coordinator", at: actors.StepAcceptSent, first: true, want: either, only: actors.NonBlocking},
	{name: "coordinator once one acceptor logged ACCEPTED", role: "coordinator", at: actors.StepAcceptedLogged, on: "participant", want: either, only: actors.NonBlocking},
	{name: "participant-acceptor after logging ACCEPTED", role: "participant", at: actors.StepAcceptedLogged, want: committed, wantOnCoordinatorNode: either, only: actors.NonBlocking},
}

// A transaction's shape: who coordinates, who takes part.
type txShape struct {
	name         string
	coordinator  int32
	participants []int32
	victim       int32 // the participant whose power is cut at participant steps
}

var txShapes = []txShape{
	{name: "coordinator apart", coordinator: 0, participants: []int32{1, 2}, victim: 1},
	{name: "coordinator also participant", coordinator: 0, participants: []int32{0, 1, 2}, victim: 0},
}

func TestCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("crash points take a few seconds")
	}
	runCrashPoints(t, newCrashRig(t))
}

// The table under classic 2PC (the default runs the non-blocking commit).
func TestCrashPointsTwoPC(t *testing.T) {
	if testing.Short() {
		t.Skip("crash points take a few seconds")
	}
	runCrashPoints(t, newCrashRigSnapshotting(t, 0, actors.TwoPC))
}

// The same table with a snapshot every other record: the records a
// recovery needs (PREPARED, COMMIT) are often only in a snapshot, their
// segments deleted — a committed transaction must still never be answered
// "abort".
func TestCrashPointsOverSnapshots(t *testing.T) {
	if testing.Short() {
		t.Skip("crash points take a few seconds")
	}
	r := newCrashRigSnapshotting(t, 2, actors.DefaultProtocol)
	runCrashPoints(t, r)
	// Restarted nodes count from zero: every node of the transactions (3 is
	// idle) must have snapshotted since its last start, or this proved
	// nothing about snapshots.
	for i := 0; i < 3; i++ {
		if st := r.l.Node(i).LogStats(); st.Snapshots == 0 || st.LastSnapshot == "" {
			t.Errorf("node %d took no snapshot: %+v", i, st)
		}
	}
}

func runCrashPoints(t *testing.T, r *crashRig) {
	for _, shape := range txShapes {
		for i, cp := range crashPoints {
			if cp.only != "" && cp.only != r.proto {
				continue
			}
			name := fmt.Sprintf("%s/%s", shape.name, cp.name)
			ok := t.Run(name, func(t *testing.T) {
				r.t = t
				r.runCrashPoint(shape, cp, fmt.Sprintf("s%d", i))
			})
			if !ok {
				// The cases share a cluster, which a failed case may have
				// left unsettled: the rest would only wait and fail alike.
				t.Fatalf("stopping at the first failed crash point (%s)", name)
			}
		}
	}
}

func (r *crashRig) runCrashPoint(shape txShape, cp crashPoint, tag string) {
	t := r.t
	// One key per participant, a transfer through all of them: "move 10
	// from the first to each of the others", floors 0.
	keys := make([]string, len(shape.participants))
	for i, p := range shape.participants {
		keys[i] = fmt.Sprintf("n%d/%s-%s", p, strings.ReplaceAll(shape.name, " ", "-"), tag)
	}
	setup := make([]messages.Op, len(keys))
	for i, k := range keys {
		setup[i] = messages.Set(k, 100)
	}
	coord := r.l.Node(int(shape.coordinator))
	if o, err := coord.Submit(setup...); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	// The setup's acks and END come after its client is answered: let them
	// pass before arming, or the crash would hit the setup.
	r.waitSettled()
	ops := []messages.Op{messages.AddFloor(keys[0], -10*int64(len(keys)-1), 0)}
	for _, k := range keys[1:] {
		ops = append(ops, messages.Add(k, 10))
	}

	victim, peer := shape.victim, int32(-1)
	if cp.role == "coordinator" {
		victim = shape.coordinator
		if cp.first {
			peer = shape.participants[0]
		}
	}
	c := &crashAt{node: victim, at: cp.at, peer: peer}
	switch cp.on {
	case "coordinator":
		c.node, c.peer, c.victim = shape.coordinator, victim, &victim
	case "participant":
		for _, p := range shape.participants {
			if p != shape.coordinator {
				c.node, c.victim = p, &victim
				break
			}
		}
	}
	if cp.after != nil {
		c.after = cp.after(victim)
	}
	r.arm(c, false)
	defer r.l.Disarm(int(victim))

	type result struct {
		o   *messages.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := coord.Submit(ops...)
		done <- result{o, err}
	}()
	at := r.crashed(c)
	t.Logf("power cut at %v", at)
	if r.proto == actors.NonBlocking {
		// Non-blocking: the others finish without the crashed node.
		r.othersSettle(victim, at.Tx)
	}
	// The node is taken down after the cut, and the restart waits for it.
	if err := r.l.RestartNode(int(victim)); err != nil {
		t.Fatalf("restart after the crash: %v", err)
	}
	res := <-done // bounded by the client timeout
	r.waitSettled()

	// The participants' state: every transfer leg applied, or none.
	initial, final := map[string]int64{}, map[string]int64{}
	for i, k := range keys {
		initial[k], final[k] = 100, 100+10
		if i == 0 {
			final[k] = 100 - 10*int64(len(keys)-1)
		}
	}
	got := map[string]int64{}
	for _, k := range keys {
		vals, err := r.l.Node(int(shape.coordinator)).Read(k)
		if err != nil {
			t.Fatal(err)
		}
		got[k] = vals[0].Value
	}
	var happened outcome
	switch {
	case maps.Equal(got, final):
		happened = committed
	case maps.Equal(got, initial):
		happened = aborted
	default:
		t.Fatalf("not atomic: %v; committed would be %v, aborted %v (client saw %v %v)", got, final, initial, res.o, res.err)
	}
	want := cp.want
	if cp.wantOnCoordinatorNode != "" && cp.role == "participant" && victim == shape.coordinator {
		want = cp.wantOnCoordinatorNode
	}
	if cp.wantNonBlocking != "" && r.proto == actors.NonBlocking {
		want = cp.wantNonBlocking
	}
	if want != either && happened != want {
		t.Errorf("the transaction %s, want %s (client saw %v %v)", happened, want, res.o, res.err)
	}
	// The client's answer, if it got one, agrees.
	if res.err == nil && !res.o.Unknown && res.o.Committed != (happened == committed) {
		t.Errorf("client was told %v, but the transaction %s", res.o, happened)
	}
}

// maxRoundsInDoubt bounds the rounds of asking a node other than the
// crashed one may spend in doubt under the non-blocking commit: the first
// round's recovery should settle it; more allow for a round overtaken by
// another participant's.
const maxRoundsInDoubt = 4

// othersSettle waits, with victim down and not restarted, until no other
// node is in doubt about tx, and fails if one was asked about more than
// maxRoundsInDoubt rounds: a single crash must block no one.
func (r *crashRig) othersSettle(victim int32, tx messages.TxID) {
	r.t.Helper()
	waitFor(r.t, "victim down", func() bool { return r.l.Up(int(victim)) == nil })
	actortest.Eventually(r.t, 20*time.Second, func() string {
		for i := range r.l.Members() {
			n := r.l.Up(i)
			if n == nil || int32(i) == victim {
				continue
			}
			ps, err := n.ParticipantStatus()
			if err != nil {
				return err.Error()
			}
			for _, d := range ps.Doubts {
				if d.Tx != tx {
					continue
				}
				if d.Asked > maxRoundsInDoubt {
					r.t.Fatalf("node %d still in doubt about %v after %d rounds with only node %d down", i, tx, d.Asked, victim)
				}
				return fmt.Sprintf("node %d in doubt about %v (round %d) with only node %d down", i, tx, d.Asked, victim)
			}
		}
		return ""
	})
}

// waitSettled waits until no node holds a lock, is in doubt, runs a txn
// actor, or has a commit decision without END in its log.
func (r *crashRig) waitSettled() {
	r.t.Helper()
	settled(r.t, r.l, 20*time.Second)
}

// nodeBusy says what node still has to finish, or "".
func nodeBusy(n *Node) string {
	ps, err := n.ParticipantStatus()
	if err != nil {
		return err.Error()
	}
	if ps.LocksHeld > 0 || len(ps.InDoubt) > 0 || ps.Preparing > 0 || ps.Committing > 0 || ps.Waiting > 0 {
		return fmt.Sprintf("participant %+v", ps)
	}
	cs, err := n.CoordinatorStatus()
	if err != nil {
		return err.Error()
	}
	if cs.InFlight > 0 {
		return fmt.Sprintf("coordinator %+v", cs)
	}
	res, err := n.System().Root.RequestFuture(n.Persistence(), &persistence.CurrentState{}, 5*time.Second).Result()
	if err != nil {
		return err.Error()
	}
	if st := res.(*persistence.StateReply); st.Err != nil || len(st.State.Pending) > 0 || len(st.State.InDoubt) > 0 {
		return fmt.Sprintf("log: err %v, commits without END %v, in doubt %v", st.Err, st.State.Pending, st.State.InDoubt)
	}
	return ""
}

// Cooperative termination: with the coordinator down, a participant in
// doubt learns the outcome from the other participants — "abort" from one
// that never got its Prepare (it votes no on the spot), "commit" from one
// that committed — and settles without waiting for the coordinator.
func TestInDoubtSettledByPeersWhileCoordinatorIsDown(t *testing.T) {
	cases := []struct {
		name  string
		at    actors.StepKind
		after actors.StepKind // at node 1, before the coordinator's power is cut
		want  outcome
	}{
		{"Prepare reached one participant", actors.StepPrepareSent, actors.StepPreparedLogged, aborted},
		{"Commit reached one participant", actors.StepCommitSent, actors.StepCommittedLogged, committed},
	}
	r := newCrashRig(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r.t = t
			a, b := fmt.Sprintf("n1/coop-%d", i), fmt.Sprintf("n2/coop-%d", i)
			coord := r.l.Node(0)
			if o, err := coord.Submit(messages.Set(a, 100), messages.Set(b, 100)); err != nil || !o.Committed {
				t.Fatalf("setup: %v %v", o, err)
			}
			r.waitSettled()
			c := r.arm(&crashAt{node: 0, at: tc.at, peer: 1,
				after: func(s actors.Step) bool { return s.Node == 1 && s.Kind == tc.after }}, false)
			defer r.l.Disarm(0)
			go coord.Submit(messages.Add(a, -10), messages.Add(b, 10)) // its client dies with node 0
			r.crashed(c)
			<-c.armed.Down()
			// Node 0 stays down: nodes 1 and 2 must settle between them.
			settled(t, r.l, 10*time.Second, 1, 2)
			want := map[string]int64{a: 100, b: 100}
			if tc.want == committed {
				want = map[string]int64{a: 90, b: 110}
			}
			for k, v := range want {
				got, err := r.l.Node(1).Read(k)
				if err != nil {
					t.Fatal(err)
				}
				if got[0].Value != v {
					t.Errorf("%s = %d with the coordinator down, want %d (%s)", k, got[0].Value, v, tc.want)
				}
			}
			if err := r.l.RestartNode(0); err != nil {
				t.Fatal(err)
			}
			r.waitSettled()
		})
	}
}
