package cluster

// What an operator (the REPL) needs beyond Submit and Read (requests.go):
// the roles' state at a glance, the transactions stuck in doubt, what is
// known of an outcome, and — as a last resort — a heuristic decision on a
// transaction nobody can settle.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors"
	"twopc/messages"
)

// askOutcome sends an OutcomeQuery to one of this node's roles.
func (n *Node) askOutcome(role *actor.PID, tx messages.TxID) (*actors.OutcomeAnswer, error) {
	// The coordinator may look the transaction up in its log, which it
	// gives VoteTimeout.
	res, err := n.ask(role, &actors.OutcomeQuery{Tx: tx}, n.cfg.Timing.WithDefaults().VoteTimeout+time.Second)
	if err != nil {
		return nil, err
	}
	a, ok := res.(*actors.OutcomeAnswer)
	if !ok || a.Tx != tx || a.From != n.cfg.ID {
		return nil, fmt.Errorf("node %d: unexpected answer %T %+v", n.cfg.ID, res, res)
	}
	return a, nil
}

// InDoubt is one transaction a running node's participant is in doubt
// about: it voted yes and has heard no decision.
type InDoubt struct {
	Node          int32 // the participant in doubt
	Tx            messages.TxID
	Since         time.Time // prepared at, or restarted at for one in doubt since before a restart
	Participants  []int32   // every participant of the transaction
	Asked         int       // query rounds it has sent (to the coordinator and its peers)
	CoordinatorUp bool      // the transaction's coordinator node is running (and not power-cut)
}

// InDoubt lists the transactions in doubt on every running node, sorted by
// transaction, then node. Down nodes are skipped: what they were in doubt
// about they find in their logs when they restart. If a running node does
// not answer, the list holds the others and the error says which.
func (l *Local) InDoubt() ([]InDoubt, error) {
	var out []InDoubt
	var errs []error
	for i := range l.cfg.Nodes {
		n := l.Up(i)
		if n == nil {
			continue
		}
		st, err := n.ParticipantStatus()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range st.Doubts {
			out = append(out, InDoubt{
				Node: st.Node, Tx: d.Tx, Since: d.Since, Participants: d.Participants, Asked: d.Asked,
				CoordinatorUp: l.Up(int(d.Tx.Node)) != nil,
			})
		}
	}
	slices.SortFunc(out, func(a, b InDoubt) int {
		if c := a.Tx.Compare(b.Tx); c != 0 {
			return c
		}
		return int(a.Node - b.Node)
	})
	return out, errors.Join(errs...)
}

// checkTx refuses an id no transaction of this cluster can have.
func (l *Local) checkTx(tx messages.TxID) error { return checkTxOf(tx, l.cfg.Nodes) }

// operatorView is a cluster as KnownOutcome and Resolve see it: a Local's
// nodes, asked directly, or node processes asked through their Admin
// services (Remote). The rules of a heuristic decision are the same.
type operatorView interface {
	size() int
	// inDoubt lists the transactions in doubt on every running node.
	inDoubt() ([]InDoubt, error)
	// askOutcome asks node's coordinator (or participant) what it knows
	// of tx. asked is false for a node that is down: it was not asked.
	askOutcome(node int32, coordinator bool, tx messages.TxID) (a *actors.OutcomeAnswer, asked bool, err error)
	// mayDecide: node's coordinator runs, or may be about to (it is
	// starting); why, if not "", says why it may.
	mayDecide(node int32) (may bool, why string)
	// force tells node's participant to take a heuristic decision and
	// returns how to await its answer (applied, or why not): every
	// participant is told before any answer is awaited.
	force(node int32, tx messages.TxID, commit bool) (await func(deadline time.Time) (applied bool, refusal string))
	// protocol is the commit protocol the nodes run; reaches says whether
	// node to is up and its link from node from is not cut.
	protocol() actors.Protocol
	reaches(from, to int32) bool
}

func (l *Local) size() int { return l.cfg.Nodes }

func (l *Local) protocol() actors.Protocol { return l.Protocol() }

func (l *Local) reaches(from, to int32) bool {
	return l.Up(int(to)) != nil && (from == to || !l.cut(int(from), int(to)))
}

func (l *Local) inDoubt() ([]InDoubt, error) { return l.InDoubt() }

func (l *Local) askOutcome(node int32, coordinator bool, tx messages.TxID) (*actors.OutcomeAnswer, bool, error) {
	n := l.Up(int(node))
	if n == nil {
		return nil, false, nil
	}
	role := n.participant
	if coordinator {
		role = n.coordinator
	}
	a, err := n.askOutcome(role, tx)
	return a, true, err
}

func (l *Local) mayDecide(node int32) (bool, string) {
	l.mu.Lock()
	starting := l.starting[node]
	l.mu.Unlock()
	switch {
	case l.Up(int(node)) != nil:
		return true, ""
	case starting:
		return true, "it is starting: its log is being replayed"
	}
	return false, ""
}

func (l *Local) force(node int32, tx messages.TxID, commit bool) func(time.Time) (bool, string) {
	n := l.Up(int(node))
	if n == nil {
		return func(time.Time) (bool, string) { return false, fmt.Sprintf("node %d: went down", node) }
	}
	r, err := n.sendForce(tx, commit)
	if err != nil {
		return func(time.Time) (bool, string) { return false, err.Error() }
	}
	return func(deadline time.Time) (bool, string) { return n.awaitForce(tx, r, deadline) }
}

// KnownOutcome says whether tx committed or aborted, as far as any running
// node knows, without changing anything (OutcomeQuery has no side effect),
// and who knows it: "node 0's coordinator: COMMIT logged, not all acked",
// "node 2 committed it". It asks the transaction's coordinator (if up),
// then every running participant. DecisionUnknown with "" means nobody
// running knows: the coordinator is down or still deciding, and every
// participant is in doubt or has no trace of it. Nodes that do not answer
// count as not knowing. The error is only for an id no transaction can have.
//
// A coordinator's "presumed abort" (no COMMIT in its log) is exact for a
// transaction still in doubt somewhere, but for one every participant acked
// it is a commit the log has forgotten; so it is returned only if no
// participant remembers a commit or an abort.
func (l *Local) KnownOutcome(tx messages.TxID) (messages.Decision, string, error) {
	if err := l.checkTx(tx); err != nil {
		return messages.DecisionUnknown, "", err
	}
	d, source, _ := knownOutcome(l, tx)
	return d, source, nil
}

// knownOutcome is KnownOutcome over any view, with what the coordinator
// itself said (its Why, or why it said nothing; "" if it is down) for
// Resolve.
func knownOutcome(v operatorView, tx messages.TxID) (d messages.Decision, source, coordinator string) {
	var presumed string
	if a, asked, err := v.askOutcome(tx.Node, true, tx); asked {
		switch {
		case err != nil:
			coordinator = "it did not answer: " + err.Error()
		case a.Decision == messages.DecisionUnknown:
			coordinator = a.Why
		case !a.Presumed:
			return a.Decision, fmt.Sprintf("node %d's coordinator: %s", a.From, a.Why), a.Why
		default:
			presumed, coordinator = fmt.Sprintf("node %d's coordinator: %s", a.From, a.Why), a.Why
		}
	}
	for i := range v.size() {
		if a, asked, err := v.askOutcome(int32(i), false, tx); asked && err == nil && a.Decision != messages.DecisionUnknown {
			return a.Decision, fmt.Sprintf("node %d %s", a.From, a.Why), coordinator
		}
	}
	if presumed != "" {
		return messages.DecisionAbort, presumed, coordinator
	}
	return messages.DecisionUnknown, "", coordinator
}

// Resolution is what Resolve did.
type Resolution struct {
	Tx      messages.TxID
	Commit  bool
	Nodes   []int32  // where the heuristic decision was applied
	Refused []string // in doubt when looked at, but refused when told (e.g. it learned the outcome meanwhile), with why
}

// OutcomeKnownError is Resolve's refusal: some node knows the outcome, so
// no heuristic decision is needed — the protocol will finish the job.
type OutcomeKnownError struct {
	Tx        messages.TxID
	Committed bool
	Source    string // who knows, as KnownOutcome says it
}

// CoordinatorRunningError is Resolve's refusal when the transaction's
// coordinator is running (or starting): it has decided, or will within its
// vote timeout, and its participants will hear. A heuristic decision is only
// for a coordinator that is down.
type CoordinatorRunningError struct {
	Tx   messages.TxID
	Node int32
	Why  string // what the coordinator said, or why it could not say
}

func (e *CoordinatorRunningError) Error() string {
	return fmt.Sprintf("refused: %v's coordinator, node %d, is running and decides it (%s); wait for it — a heuristic decision is only for a transaction whose coordinator is down", e.Tx, e.Node, e.Why)
}

// RecoveryCanDecideError: under the non-blocking commit, a majority of the
// transaction's acceptors is reachable from a node in doubt, so that
// node's recovery rounds will find the outcome — commit if it may have
// been chosen — with no risk; a heuristic guess could only do worse.
type RecoveryCanDecideError struct {
	Tx        messages.TxID
	Acceptors []int32 // the transaction's acceptors
	Reachable []int32 // those up and reachable from a node in doubt
}

func (e *RecoveryCanDecideError) Error() string {
	return fmt.Sprintf("refused: %v's acceptors %v are reachable by a majority (%v): its participants' recovery decides it without risk; a heuristic decision is the last resort for when they are not", e.Tx, e.Acceptors, e.Reachable)
}

// recoveryCanDecide refuses a heuristic decision on tx while recovery can
// decide it (non-blocking commit only): a majority of tx's acceptors up,
// each reachable (not partitioned off) from one of the nodes in doubt.
func recoveryCanDecide(v operatorView, tx messages.TxID, inDoubt []int32) error {
	if v.protocol() != actors.NonBlocking {
		return nil
	}
	acc := messages.Acceptors(tx, v.size())
	var reachable []int32
	for _, a := range acc {
		for _, n := range inDoubt {
			if v.reaches(n, a) {
				reachable = append(reachable, a)
				break
			}
		}
	}
	if len(reachable) >= messages.Majority(len(acc)) {
		return &RecoveryCanDecideError{Tx: tx, Acceptors: acc, Reachable: reachable}
	}
	return nil
}

func (e *OutcomeKnownError) Error() string {
	what := "aborted"
	if e.Committed {
		what = "committed"
	}
	return fmt.Sprintf("refused: %v is known to have %s (%s); its in-doubt participants will learn that when they next ask", e.Tx, what, e.Source)
}

// Resolve is the operator's heuristic decision on a transaction stuck in
// doubt: it tells every running participant in doubt about tx to commit
// (or abort) it without the coordinator. It refuses when tx is in doubt
// nowhere, and when any running node knows the outcome (*OutcomeKnownError,
// even if that is the decision asked for: the in-doubt participants learn it
// by themselves, and a heuristic decision is logged as one).
//
// What it cannot know: a coordinator that is down may have logged COMMIT (or
// may be about to abort); a participant that is down may have committed. If
// the real decision differs, the nodes disagree for good — Resolve trades
// atomicity for availability, on the operator's word. Each participant logs
// its heuristic decision at ERROR level. See TestOperatorHeuristicAbortThenCoordinatorRestarts
// for what the protocol does when the coordinator comes back.
func (l *Local) Resolve(tx messages.TxID, commit bool) (*Resolution, error) {
	if err := l.checkTx(tx); err != nil {
		return nil, err
	}
	// One at a time: two operators' opposite decisions must not each reach
	// a different participant first.
	l.resolveMu.Lock()
	defer l.resolveMu.Unlock()
	return resolve(l, tx, commit)
}

// resolve is Resolve over any view of a cluster; the caller has checked tx
// and holds the view's resolve lock.
func resolve(v operatorView, tx messages.TxID, commit bool) (*Resolution, error) {
	doubts, err := v.inDoubt()
	if err != nil {
		// A node that did not answer may be in doubt too: deciding for
		// only some would be worse.
		return nil, fmt.Errorf("resolve %v: %w", tx, err)
	}
	var nodes []int32
	for _, d := range doubts {
		if d.Tx == tx {
			nodes = append(nodes, d.Node)
		}
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%v is not in doubt on any running node", tx)
	}
	d, source, coordinator := knownOutcome(v, tx)
	if d != messages.DecisionUnknown {
		return nil, &OutcomeKnownError{Tx: tx, Committed: d == messages.DecisionCommit, Source: source}
	}
	// Nobody knows yet — but a coordinator that runs is still collecting
	// votes or logging its decision (or its log is slow to answer), and
	// will decide: forcing a decision now would race it.
	if may, why := v.mayDecide(tx.Node); may {
		switch {
		case why != "":
		case coordinator != "":
			why = coordinator
		default:
			why = "it has not decided yet"
		}
		return nil, &CoordinatorRunningError{Tx: tx, Node: tx.Node, Why: why}
	}
	if err := recoveryCanDecide(v, tx, nodes); err != nil {
		return nil, err
	}
	res := &Resolution{Tx: tx, Commit: commit}
	// Told all at once: a participant told later could otherwise learn the
	// decision from one told earlier (it asks its peers while in doubt) and
	// refuse, as no longer in doubt; that still happens, rarely.
	awaits := make([]func(time.Time) (bool, string), len(nodes))
	for i, id := range nodes {
		awaits[i] = v.force(id, tx, commit)
	}
	deadline := time.Now().Add(forceTimeout)
	for i, await := range awaits {
		if applied, refusal := await(deadline); applied {
			res.Nodes = append(res.Nodes, nodes[i])
		} else {
			res.Refused = append(res.Refused, refusal)
		}
	}
	if len(res.Nodes) == 0 {
		return nil, fmt.Errorf("resolve %v: applied nowhere: %s", tx, strings.Join(res.Refused, "; "))
	}
	return res, nil
}

// ParticipantStatus asks this node's participant for its state at a glance.
func (n *Node) ParticipantStatus() (*actors.ParticipantStatus, error) {
	res, err := n.sys.Root.RequestFuture(n.participant, &actors.ParticipantStatusRequest{}, 5*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("node %d: participant status: %w", n.cfg.ID, err)
	}
	return res.(*actors.ParticipantStatus), nil
}

// CoordinatorStatus asks this node's coordinator for its state at a glance.
func (n *Node) CoordinatorStatus() (*actors.CoordinatorStatus, error) {
	res, err := n.sys.Root.RequestFuture(n.coordinator, &actors.CoordinatorStatusRequest{}, 5*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("node %d: coordinator status: %w", n.cfg.ID, err)
	}
	return res.(*actors.CoordinatorStatus), nil
}
