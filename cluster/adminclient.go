package cluster

// The operator's side of the Admin service: an AdminClient per node, and
// a Remote that sees a cluster of running nodes through them, as a Local
// sees its own (in doubt, known outcome, resolve, trace).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"slices"
	"sync"
	"time"

	"twopc/actors"
	"twopc/bridge"
	"twopc/messages"
	"twopc/trace"
)

// Defaults of an AdminClient's waits.
const (
	DefaultAdminTimeout        = 15 * time.Second // one call's answer (a heuristic decision takes up to 5 s)
	DefaultAdminConnectTimeout = 3 * time.Second  // connecting, TLS handshake included
)

// UnreachableError is an AdminClient's error when the node could not be
// reached at all: nothing was sent, and the node is most likely down.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("node at %s is unreachable: %v", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// AdminClient calls one node's Admin service. It connects on its first
// call, and again on the next call after its connection broke (the node
// was restarted, say). A call whose connection broke while it was in
// flight is not sent again: it returns the error. Safe for concurrent use.
type AdminClient struct {
	addr           string
	tls            *tls.Config
	timeout        time.Duration
	connectTimeout time.Duration

	mu     sync.Mutex
	rpc    *rpc.Client
	closed bool
}

// NewAdminClient returns a client of the node at addr, which connects
// with cfg — typically the admin identity's identity.Identity.ClientConfig()
// — or, with cfg nil, in plain TCP (only a node started without TLS
// accepts that).
func NewAdminClient(addr string, cfg *tls.Config) *AdminClient {
	return &AdminClient{addr: addr, tls: cfg, timeout: DefaultAdminTimeout, connectTimeout: DefaultAdminConnectTimeout}
}

// Addr is the node's address.
func (a *AdminClient) Addr() string { return a.addr }

// SetTimeouts changes how long a call waits for its answer and how long
// connecting may take (zero: leave it).
func (a *AdminClient) SetTimeouts(call, connect time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if call > 0 {
		a.timeout = call
	}
	if connect > 0 {
		a.connectTimeout = connect
	}
}

// dial connects. Only a failure to connect at all is an UnreachableError:
// a node that accepts the connection and does not finish the handshake is
// up (or starting: it listens before it has replayed its log).
func (a *AdminClient) dial() (*rpc.Client, error) {
	conn, err := (&net.Dialer{Timeout: a.connectTimeout}).Dial("tcp", a.addr)
	if err != nil {
		return nil, &UnreachableError{Addr: a.addr, Err: err}
	}
	if a.tls != nil {
		cfg := a.tls
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(a.addr)
		}
		tc := tls.Client(conn, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), a.connectTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("node at %s: connected, but the TLS handshake did not finish: %w", a.addr, err)
		}
		conn = tc
	}
	return rpc.NewClientWithCodec(bridge.NewClientCodec(conn, bridge.Limits{})), nil
}

// conn is the open connection, dialled if there is none.
func (a *AdminClient) conn() (*rpc.Client, time.Duration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, 0, errors.New("admin client closed")
	}
	if a.rpc == nil {
		c, err := a.dial()
		if err != nil {
			return nil, 0, err
		}
		a.rpc = c
	}
	return a.rpc, a.timeout, nil
}

// drop forgets c, a connection that broke, so the next call dials again.
func (a *AdminClient) drop(c *rpc.Client) {
	a.mu.Lock()
	if a.rpc == c {
		a.rpc = nil
	}
	a.mu.Unlock()
	c.Close()
}

// call calls Admin.<method>. A connection that had already ended when the
// call was made (the node closed it, or was restarted) is dialled again
// and the call made once more: net/rpc refuses a call on an ended
// connection without sending it. Every call but Force changes nothing or
// sets a state (a level, a cut, the faults, the skew), so it is made once
// more also when its connection broke while it was in flight; Force is not
// (a second one would be refused as no longer in doubt).
func (a *AdminClient) call(method string, args, reply any) error {
	again := method != "Force"
	for attempt := 0; ; attempt++ {
		c, timeout, err := a.conn()
		if err != nil {
			return err
		}
		call := c.Go("Admin."+method, args, reply, make(chan *rpc.Call, 1))
		t := time.NewTimer(timeout)
		select {
		case <-call.Done:
			t.Stop()
		case <-t.C:
			// A node that does not answer may be hung or cut off: the
			// next call starts on a new connection.
			a.drop(c)
			return fmt.Errorf("node at %s: no answer to %s within %v", a.addr, method, timeout)
		}
		err = call.Error
		var server rpc.ServerError
		if err == nil {
			return nil
		}
		if errors.As(err, &server) {
			return errors.New(string(server))
		}
		a.drop(c)
		lost := errors.Is(err, rpc.ErrShutdown) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
		if attempt == 0 && (errors.Is(err, rpc.ErrShutdown) || (lost && again)) {
			continue
		}
		if lost {
			return fmt.Errorf("node at %s: connection lost during %s: %w", a.addr, method, err)
		}
		return fmt.Errorf("node at %s: %s: %w", a.addr, method, err)
	}
}

// Close ends the connection; later calls fail.
func (a *AdminClient) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.rpc != nil {
		err := a.rpc.Close()
		a.rpc = nil
		return err
	}
	return nil
}

// Status is the node at a glance.
func (a *AdminClient) Status() (*NodeStatus, error) {
	var out NodeStatus
	if err := a.call("Status", &AdminNone{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// InDoubt lists the transactions the node is in doubt about.
func (a *AdminClient) InDoubt() (*NodeDoubts, error) {
	var out NodeDoubts
	if err := a.call("InDoubt", &AdminNone{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Outcome asks the node's coordinator (or participant) what it knows of tx.
func (a *AdminClient) Outcome(tx messages.TxID, coordinator bool) (*actors.OutcomeAnswer, error) {
	var out OutcomeReply
	if err := a.call("Outcome", &OutcomeArgs{Tx: tx, Coordinator: coordinator}, &out); err != nil {
		return nil, err
	}
	return &out.OutcomeAnswer, nil
}

// Force is a heuristic decision on the node's participant alone, with none
// of Remote.Resolve's checks: applied, or why not.
func (a *AdminClient) Force(tx messages.TxID, commit bool) (*ForceReply, error) {
	var out ForceReply
	if err := a.call("Force", &ForceArgs{Tx: tx, Commit: commit}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Trace is the node's part of tx's trace.
func (a *AdminClient) Trace(tx messages.TxID) (*TraceReply, error) {
	var out TraceReply
	if err := a.call("Trace", &TraceArgs{Tx: tx}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LogLevel sets the node's log level (trace, debug, info, warn, error),
// or with "" only asks it; it returns the level in force.
func (a *AdminClient) LogLevel(level string) (string, error) {
	var out LevelReply
	if err := a.call("LogLevel", &LevelArgs{Level: level}, &out); err != nil {
		return "", err
	}
	return out.Level, nil
}

// Partition cuts the node's links to peers (this end only); it returns
// the peers cut after it.
func (a *AdminClient) Partition(peers ...int32) ([]int32, error) {
	var out LinkReply
	if err := a.call("Partition", &LinkArgs{Peers: peers}, &out); err != nil {
		return nil, err
	}
	return out.Cut, nil
}

// Heal restores the node's links to peers, or with none every link; it
// returns the peers still cut.
func (a *AdminClient) Heal(peers ...int32) ([]int32, error) {
	var out LinkReply
	if err := a.call("Heal", &LinkArgs{Peers: peers}, &out); err != nil {
		return nil, err
	}
	return out.Cut, nil
}

// SetFaults sets the faults on the node's outbound messages
// (bridge.Faults{}: none); Faults only asks. Both return what is in force
// and what the faults did so far.
func (a *AdminClient) SetFaults(f bridge.Faults) (*FaultReply, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return a.faults(&FaultArgs{Set: true, Faults: f})
}

func (a *AdminClient) Faults() (*FaultReply, error) { return a.faults(&FaultArgs{}) }

func (a *AdminClient) faults(args *FaultArgs) (*FaultReply, error) {
	var out FaultReply
	if err := a.call("Faults", args, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetSkew sets the node's clock skew (0 clears it); Skew only asks.
func (a *AdminClient) SetSkew(d time.Duration) (time.Duration, error) {
	return a.skew(&SkewArgs{Set: true, Skew: d})
}

func (a *AdminClient) Skew() (time.Duration, error) { return a.skew(&SkewArgs{}) }

func (a *AdminClient) skew(args *SkewArgs) (time.Duration, error) {
	var out SkewReply
	if err := a.call("Skew", args, &out); err != nil {
		return 0, err
	}
	return out.Skew, nil
}

// ReadLocal reads keys as the node's own participant holds them; each
// must be owned by the node.
func (a *AdminClient) ReadLocal(keys ...string) ([]NodeValue, error) {
	var out ReadResult
	if err := a.call("ReadLocal", &ReadArgs{Keys: keys}, &out); err != nil {
		return nil, err
	}
	return out.Values, nil
}

// SyncLog returns once everything the node's roles have logged is durable.
func (a *AdminClient) SyncLog() error { return a.call("SyncLog", &AdminNone{}, &AdminNone{}) }

// Remote is a cluster of running nodes seen through their Admin services,
// one AdminClient per member in node-id order: what the prompt uses with
// --connect. A node that cannot be reached counts as down.
type Remote struct {
	admins    []*AdminClient
	resolveMu sync.Mutex // one heuristic decision at a time from this Remote
}

// NewRemote sees the nodes at addrs (every member, in node-id order) with
// cfg (the admin certificate's settings; nil: plain TCP). Nothing is
// dialled until used.
func NewRemote(addrs []string, cfg *tls.Config) *Remote {
	r := &Remote{}
	for _, addr := range addrs {
		r.admins = append(r.admins, NewAdminClient(addr, cfg))
	}
	return r
}

// Admin is node i's AdminClient.
func (r *Remote) Admin(i int) *AdminClient { return r.admins[i] }

// Members are the nodes' addresses.
func (r *Remote) Members() []string {
	out := make([]string, len(r.admins))
	for i, a := range r.admins {
		out[i] = a.addr
	}
	return out
}

// Close closes every AdminClient.
func (r *Remote) Close() {
	for _, a := range r.admins {
		a.Close()
	}
}

// Statuses asks every node for its status at once; a node that did not
// answer has a nil status and its error.
func (r *Remote) Statuses() ([]*NodeStatus, []error) {
	sts := make([]*NodeStatus, len(r.admins))
	errs := make([]error, len(r.admins))
	r.each(func(i int, a *AdminClient) { sts[i], errs[i] = a.Status() })
	return sts, errs
}

// each runs f for every node at once and returns when all are done.
func (r *Remote) each(f func(i int, a *AdminClient)) {
	var wg sync.WaitGroup
	for i, a := range r.admins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i, a)
		}()
	}
	wg.Wait()
}

// Unreachable: err says the node could not be reached at all.
func Unreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// InDoubt lists the transactions in doubt on every node that answers,
// sorted by transaction, then node; CoordinatorUp says whether the
// coordinator's node answered. Since is now less each one's age. Nodes
// that cannot be reached are skipped (down); if one that was reached does
// not answer, the list holds the others and the error says which.
func (r *Remote) InDoubt() ([]InDoubt, error) {
	lists := make([]*NodeDoubts, len(r.admins))
	errs := make([]error, len(r.admins))
	r.each(func(i int, a *AdminClient) { lists[i], errs[i] = a.InDoubt() })
	now := time.Now()
	var out []InDoubt
	var bad []error
	for i, l := range lists {
		if errs[i] != nil {
			if !Unreachable(errs[i]) {
				bad = append(bad, fmt.Errorf("node %d: %w", i, errs[i]))
			}
			continue
		}
		for _, d := range l.Doubts {
			c := int(d.Tx.Node)
			out = append(out, InDoubt{Node: int32(i), Tx: d.Tx, Since: now.Add(-d.Age), Participants: d.Participants, Asked: d.Asked,
				CoordinatorUp: c >= 0 && c < len(lists) && errs[c] == nil})
		}
		if l.Total > len(l.Doubts) {
			bad = append(bad, fmt.Errorf("node %d: %d more in doubt, not listed", i, l.Total-len(l.Doubts)))
		}
	}
	slices.SortFunc(out, func(a, b InDoubt) int {
		if c := a.Tx.Compare(b.Tx); c != 0 {
			return c
		}
		return int(a.Node - b.Node)
	})
	return out, errors.Join(bad...)
}

// KnownOutcome is Local.KnownOutcome over the wire: what any node that
// answers knows of tx, and who knows it.
func (r *Remote) KnownOutcome(tx messages.TxID) (messages.Decision, string, error) {
	if err := checkTxOf(tx, len(r.admins)); err != nil {
		return messages.DecisionUnknown, "", err
	}
	d, source, _ := knownOutcome(r, tx)
	return d, source, nil
}

// Resolve is Local.Resolve over the wire: the same checks, then a
// heuristic decision on every participant in doubt about tx. A coordinator
// that cannot be reached counts as down; one that is reached and does not
// answer may be starting, and the decision is refused.
func (r *Remote) Resolve(tx messages.TxID, commit bool) (*Resolution, error) {
	if err := checkTxOf(tx, len(r.admins)); err != nil {
		return nil, err
	}
	r.resolveMu.Lock()
	defer r.resolveMu.Unlock()
	return resolve(r, tx, commit)
}

func (r *Remote) size() int { return len(r.admins) }

// protocol is what the first node that answers runs (every node should
// run the same; status says when they do not).
func (r *Remote) protocol() actors.Protocol {
	sts, _ := r.Statuses()
	for _, st := range sts {
		if st != nil && st.Protocol != "" {
			return actors.Protocol(st.Protocol)
		}
	}
	return actors.DefaultProtocol
}

// reaches: node to answers its admin, and from's bridge has not cut it.
func (r *Remote) reaches(from, to int32) bool {
	sts, _ := r.Statuses()
	if int(to) >= len(sts) || sts[to] == nil {
		return false
	}
	if from == to {
		return true
	}
	if int(from) < len(sts) && sts[from] != nil {
		for _, c := range sts[from].Cut {
			if c == to {
				return false
			}
		}
	}
	return true
}

func (r *Remote) inDoubt() ([]InDoubt, error) { return r.InDoubt() }

func (r *Remote) askOutcome(node int32, coordinator bool, tx messages.TxID) (*actors.OutcomeAnswer, bool, error) {
	a, err := r.admins[node].Outcome(tx, coordinator)
	if Unreachable(err) {
		return nil, false, nil
	}
	return a, true, err
}

func (r *Remote) mayDecide(node int32) (bool, string) {
	_, err := r.admins[node].Status()
	switch {
	case err == nil:
		return true, ""
	case Unreachable(err):
		return false, ""
	}
	return true, "it did not answer, and may be starting: " + err.Error()
}

func (r *Remote) force(node int32, tx messages.TxID, commit bool) func(time.Time) (bool, string) {
	type answer struct {
		applied bool
		refusal string
	}
	ch := make(chan answer, 1)
	go func() {
		res, err := r.admins[node].Force(tx, commit)
		if err != nil {
			ch <- answer{false, fmt.Sprintf("node %d: %v", node, err)}
			return
		}
		ch <- answer{res.Applied, res.Refusal}
	}()
	// The call is bounded by the client's own timeout; the deadline is
	// the participant's, on the node.
	return func(time.Time) (bool, string) {
		a := <-ch
		return a.applied, a.refusal
	}
}

// Trace gathers every node's part of tx's trace and merges them in time
// order (each event stamped by its own node's clock) into a Recorder
// holding tx alone, for Render. missing names the nodes whose part could
// not be had, and why. An error if no node has anything of tx.
func (r *Remote) Trace(tx messages.TxID) (rec *trace.Recorder, missing []error, err error) {
	if err := checkTxOf(tx, len(r.admins)); err != nil {
		return nil, nil, err
	}
	parts := make([]*TraceReply, len(r.admins))
	errs := make([]error, len(r.admins))
	r.each(func(i int, a *AdminClient) { parts[i], errs[i] = a.Trace(tx) })
	rec = trace.NewRecorder(1)
	found := false
	for i, p := range parts {
		if errs[i] != nil {
			missing = append(missing, fmt.Errorf("node %d's part is missing: %w", i, errs[i]))
			continue
		}
		for _, ev := range p.Events {
			found = found || !ev.Tx.IsZero()
			rec.Record(ev)
		}
		if p.Cut > 0 {
			missing = append(missing, fmt.Errorf("node %d's part is cut short: %d events left out", i, p.Cut))
		}
	}
	if !found {
		return nil, missing, fmt.Errorf("no trace of %v on any node that answered (never seen, or evicted: each node keeps its last %d transactions, and a node process keeps nothing of before its restart)", tx, NodeTraceTransactions)
	}
	return rec, missing, nil
}

// NodeTraceTransactions is how many transactions' traces a node process
// (cmd/node) keeps.
const NodeTraceTransactions = 10000
