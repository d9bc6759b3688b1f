package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"twopc/bridge"
	"twopc/identity"
	"twopc/messages"
)

// SubmitArgs and ReadArgs are the Client service's requests.
type SubmitArgs struct {
	Ops []messages.Op
}

type ReadArgs struct {
	Keys []string
}

// ReadResult answers a read: one entry per key per owning node.
type ReadResult struct {
	Values []NodeValue
}

// RunArgs is Client.Run's request: a transaction, and the ticket under
// which Client.Named, sent right behind it on the same connection, learns
// its id.
type RunArgs struct {
	Ops    []messages.Op
	Ticket uint64
}

// RunReply answers Client.Run: the outcome, or — NoOutcome not empty —
// why none is known, with the transaction's id if it was named.
type RunReply struct {
	Node      int32 // the node that ran it
	Outcome   messages.Outcome
	NoOutcome string
	Tx        messages.TxID // with NoOutcome: the id, zero if never named
}

// TicketArgs is Client.Named's request.
type TicketArgs struct {
	Ticket uint64
}

// NamedReply answers Client.Named: the id of the transaction run under the
// ticket, zero if it ended without one (or never came).
type NamedReply struct {
	Node int32
	Tx   messages.TxID
}

// The Client service's arguments and replies travel in the wire's encoding
// (bridge.WireValue): every count is checked against bridge.Limits before
// anything is allocated for it.

func (a *SubmitArgs) EncodeWire(e *bridge.Encoder) { e.Ops(a.Ops) }
func (a *SubmitArgs) DecodeWire(d *bridge.Decoder) { a.Ops = d.Ops() }
func (a *ReadArgs) EncodeWire(e *bridge.Encoder)   { e.Strings(a.Keys) }
func (a *ReadArgs) DecodeWire(d *bridge.Decoder)   { a.Keys = d.Keys() }

func (a *RunArgs) EncodeWire(e *bridge.Encoder) {
	e.Ops(a.Ops)
	e.Uvarint(a.Ticket)
}

func (a *RunArgs) DecodeWire(d *bridge.Decoder) {
	a.Ops = d.Ops()
	a.Ticket = d.Uvarint()
}

func (r *RunReply) EncodeWire(e *bridge.Encoder) {
	e.Varint(int64(r.Node))
	e.TxID(r.Outcome.Tx)
	e.Bool(r.Outcome.Committed)
	e.Bool(r.Outcome.Unknown)
	e.String(r.Outcome.Reason)
	e.String(r.NoOutcome)
	e.TxID(r.Tx)
}

func (r *RunReply) DecodeWire(d *bridge.Decoder) {
	r.Node = d.Int32()
	r.Outcome = messages.Outcome{Tx: d.TxID(), Committed: d.Bool(), Unknown: d.Bool(), Reason: d.String()}
	r.NoOutcome = d.String()
	r.Tx = d.TxID()
}

func (a *TicketArgs) EncodeWire(e *bridge.Encoder) { e.Uvarint(a.Ticket) }
func (a *TicketArgs) DecodeWire(d *bridge.Decoder) { a.Ticket = d.Uvarint() }

func (r *NamedReply) EncodeWire(e *bridge.Encoder) {
	e.Varint(int64(r.Node))
	e.TxID(r.Tx)
}

func (r *NamedReply) DecodeWire(d *bridge.Decoder) {
	r.Node = d.Int32()
	r.Tx = d.TxID()
}

func (r *ReadResult) EncodeWire(e *bridge.Encoder) {
	e.Count(len(r.Values))
	for _, v := range r.Values {
		e.String(v.Key)
		e.Varint(int64(v.Node))
		e.Varint(v.Value)
	}
}

// DecodeWire reads a read's answer: one value per key per owner, so up to
// MaxKeysPerRead × MaxParticipants of them.
func (r *ReadResult) DecodeWire(d *bridge.Decoder) {
	lim := d.Limits()
	n := d.Count("values per read (MaxKeysPerRead × MaxParticipants)", lim.MaxKeysPerRead*lim.MaxParticipants, 3)
	if n == 0 {
		return
	}
	r.Values = make([]NodeValue, n)
	for i := range r.Values {
		r.Values[i] = NodeValue{Key: d.String(), Node: d.Int32(), Value: d.Varint()}
	}
}

// clientService is the net/rpc face a node shows to clients. One serves
// every connection of a kind (clients', admins'), so its tickets are
// shared by them; a ticket is a random number a Client draws, so two
// clients never meet on one by accident (and meeting by design only
// shows an id).
type clientService struct {
	n       *Node
	tickets ticketTable
}

// Submit runs a transaction and answers its outcome: the first form of
// the service, kept for callers that need no id ahead of the outcome.
func (s *clientService) Submit(args *SubmitArgs, out *messages.Outcome) error {
	o, err := s.n.Submit(args.Ops...)
	if err != nil {
		return err
	}
	*out = *o
	return nil
}

// Run runs a transaction like Submit, and names it under args.Ticket as
// soon as the coordinator has (Named). No outcome (a *NoOutcomeError) is
// an answer here, not an error, so that the id it carries reaches the
// client.
func (s *clientService) Run(args *RunArgs, out *RunReply) error {
	t, err := s.tickets.run(args.Ticket)
	if err != nil {
		return err
	}
	defer s.tickets.ran(args.Ticket, t)
	out.Node = s.n.cfg.ID
	o, err := s.n.submit(args.Ops, t.name)
	var no *NoOutcomeError
	switch {
	case errors.As(err, &no):
		out.NoOutcome, out.Tx = no.Err.Error(), no.Tx
		if out.Tx.IsZero() {
			out.Tx = t.id()
		}
	case err != nil:
		return err
	default:
		out.Outcome = *o
	}
	return nil
}

// Named answers the id of the transaction Run runs under args.Ticket, once
// the coordinator has named it, or zero once Run ended without one; it
// waits no longer than a client would for the outcome.
func (s *clientService) Named(args *TicketArgs, out *NamedReply) error {
	t := s.tickets.await(args.Ticket)
	defer s.tickets.awaited(args.Ticket, t)
	out.Node = s.n.cfg.ID
	wait := time.NewTimer(s.n.clientTimeout())
	defer wait.Stop()
	select {
	case <-t.named:
	case <-wait.C:
	case <-s.n.cutCh:
	case <-s.n.stopCh:
	}
	out.Tx = t.id()
	return nil
}

func (s *clientService) Read(args *ReadArgs, out *ReadResult) error {
	vals, err := s.n.Read(args.Keys...)
	if err != nil {
		return err
	}
	out.Values = vals
	return nil
}

// ticketTable pairs a Run with the Named sent behind it. net/rpc serves
// each call on a goroutine of its own, so either may arrive first; the
// entry lives until both have been (or, for a Run whose Named never
// comes, among the last maxUnclaimedTickets finished ones).
type ticketTable struct {
	mu        sync.Mutex
	m         map[uint64]*ticket
	unclaimed []uint64 // finished Runs no Named has come for, oldest first
}

// maxUnclaimedTickets bounds what Runs whose Named never came (a client
// that died, or one of the first form) leave behind.
const maxUnclaimedTickets = 1024

type ticket struct {
	named   chan struct{} // closed once the id is known or the Run ended
	mu      sync.Mutex
	tx      messages.TxID
	closed  bool
	running bool // a Run is on it
	ended   bool // its Run ended
	waiters int  // Named calls waiting on it
}

func (t *ticket) name(tx messages.TxID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tx.IsZero() {
		t.tx = tx
	}
	t.close()
}

// close ends every wait; call with mu held.
func (t *ticket) close() {
	if !t.closed {
		t.closed = true
		close(t.named)
	}
}

func (t *ticket) id() messages.TxID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tx
}

func (tt *ticketTable) entry(k uint64) *ticket {
	if tt.m == nil {
		tt.m = make(map[uint64]*ticket)
	}
	t := tt.m[k]
	if t == nil {
		t = &ticket{named: make(chan struct{})}
		tt.m[k] = t
	}
	return t
}

func (tt *ticketTable) run(k uint64) (*ticket, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.entry(k)
	if t.running || t.ended {
		return nil, fmt.Errorf("ticket %d is taken: every Run needs a fresh one", k)
	}
	t.running = true
	return t, nil
}

func (tt *ticketTable) ran(k uint64, t *ticket) {
	t.mu.Lock()
	t.close()
	t.mu.Unlock()
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t.running, t.ended = false, true
	if t.waiters > 0 {
		return // the last Named to leave removes it
	}
	// Its Named may still be on the way: kept, within a bound.
	tt.unclaimed = append(tt.unclaimed, k)
	if len(tt.unclaimed) > maxUnclaimedTickets {
		old := tt.unclaimed[0]
		tt.unclaimed = tt.unclaimed[1:]
		if o := tt.m[old]; o != nil && o.ended && o.waiters == 0 {
			delete(tt.m, old)
		}
	}
}

func (tt *ticketTable) await(k uint64) *ticket {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.entry(k)
	t.waiters++
	return t
}

func (tt *ticketTable) awaited(k uint64, t *ticket) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t.waiters--
	if t.waiters == 0 && !t.running && tt.m[k] == t {
		// Claimed (its entry in unclaimed is dropped when it comes up),
		// or a Named whose Run never came: nothing to keep.
		delete(tt.m, k)
	}
}

// Client talks to a cluster through one node, its own, which coordinates
// the transactions submitted through it and fetches reads from the owners;
// given the other members too (DialCluster), it turns to them while its
// own is down. A Client is safe for concurrent use.
//
// It lives through restarts: a connection that broke is dialled again on
// the next call, and a node that cannot be reached is dialled again with
// back-off (WithRedialBackoff) while calls wait for it, up to their
// timeout, or go to another member. A Read is sent again to another member
// if its node died before answering (reads change nothing). A Submit goes
// to another member only if it was never sent; one that was sent and got
// no answer is never sent again — the transaction may have committed —
// and its error is a *NoOutcomeError carrying the transaction's id when
// the node named it before it went away.
type Client struct {
	opts       dialOptions
	timeout    atomic.Int64 // time.Duration: SetTimeout
	ticketBase uint64       // random: tickets differ from every other client's
	tickets    atomic.Uint64

	ctx    context.Context // cancelled by Close: ends dials in flight
	cancel context.CancelFunc
	dials  sync.WaitGroup

	mu      sync.Mutex
	slots   []*slot                  // one per address, the preferred first
	open    map[*conn]struct{}       // every connection not closed yet, retired ones included
	pending map[uint64]messages.TxID // Submits waiting for their outcome, by ticket (Pending)
	changed chan struct{}            // closed (and replaced) when a slot connects or a dial fails
	closed  bool                     // Close was called
}

// slot is one node's address and the connection to it. Guarded by
// Client.mu.
type slot struct {
	addr     string
	conn     *conn // nil while not connected
	node     int32 // the node's id once known (its certificate, or an answer); -1 before
	dialing  bool
	nextDial time.Time     // no dial before: back-off after a failed one
	gap      time.Duration // the last back-off; 0 after a success
	lastErr  error         // why the last dial failed
}

// conn is one connection to a node. Guarded by Client.mu.
//
// The Client closes a connection only once no call it sent is waiting on
// it (or in Close): net/rpc fails a call made on a connection that has
// ended with rpc.ErrShutdown without sending it, but also the calls
// pending on a connection closed under them. Since this Client never closes
// one under its own calls, ErrShutdown at once means "not sent", and a
// Submit may go elsewhere.
type conn struct {
	rpc      *rpc.Client
	ended    <-chan struct{} // closed once reading from it failed: the node closed it, or died
	inflight int             // calls sent on it whose answer is still awaited
	retired  bool            // broken or hung: no new calls; closed when inflight is 0
}

// watchedConn closes ended when a read fails: the connection is over, and
// the Client stops choosing it before net/rpc's next call would find out.
type watchedConn struct {
	net.Conn
	once  sync.Once
	ended chan struct{}
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.once.Do(func() { close(w.ended) })
	}
	return n, err
}

// DefaultClientTimeout bounds a Client's wait for one answer: a node answers
// a Submit within 3 × VoteTimeout + 2 s (8 s by default) and a Read sooner,
// unless it hangs or the network between them is cut. It also bounds the
// wait for a node to connect to, before anything is sent.
const DefaultClientTimeout = 15 * time.Second

// Redial back-off defaults: a connection that broke is dialled again at
// once; each failed dial doubles the pause before the next, from the
// minimum up to the maximum.
const (
	DefaultRedialMin = 50 * time.Millisecond
	DefaultRedialMax = 2 * time.Second
)

// ErrNotSent wraps a Client's error when the request reached no node (none
// could be connected to in time): nothing was begun, so sending it again
// is safe, even a Submit.
var ErrNotSent = errors.New("not sent: no node reachable")

// DialOption configures Dial and DialCluster.
type DialOption func(*dialOptions)

type dialOptions struct {
	tls                  *tls.Config
	timeout              time.Duration
	redialMin, redialMax time.Duration
	codec                func(net.Conn) rpc.ClientCodec // nil: the wire's (tests give their own)
}

// WithTLS makes Dial speak mutual TLS with cfg: typically a client's or
// admin's identity.Identity.ClientConfig(), which presents that
// certificate and accepts only a node of the same cluster. The server
// name, if cfg has none, is the host of the address dialled.
func WithTLS(cfg *tls.Config) DialOption { return func(o *dialOptions) { o.tls = cfg } }

// WithConnectTimeout bounds connecting, TLS handshake included
// (default 10 s).
func WithConnectTimeout(d time.Duration) DialOption { return func(o *dialOptions) { o.timeout = d } }

// WithRedialBackoff sets the pauses between failed dials of a node: the
// first, doubled after each failure up to max (defaults DefaultRedialMin,
// DefaultRedialMax).
func WithRedialBackoff(first, max time.Duration) DialOption {
	return func(o *dialOptions) { o.redialMin, o.redialMax = first, max }
}

// Dial connects to the node at addr, and fails if it cannot. Without
// WithTLS it speaks plain TCP, which only a node started without TLS
// (insecure) accepts. The Client redials that node whenever its connection
// broke (a restart, an idle connection the node closed).
func Dial(addr string, opts ...DialOption) (*Client, error) {
	return DialCluster([]string{addr}, opts...)
}

// DialCluster connects to the nodes at addrs: addrs[0] is the Client's own
// node, which coordinates its transactions while it can be reached; the
// others take over while it cannot (see Client). It dials them all at
// once and returns when its own node is connected, or, if that failed,
// when any other is; it fails only if none can be connected to.
func DialCluster(addrs []string, opts ...DialOption) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("dial: no node address given")
	}
	o := dialOptions{timeout: 10 * time.Second, redialMin: DefaultRedialMin, redialMax: DefaultRedialMax}
	for _, f := range opts {
		f(&o)
	}
	if o.redialMin <= 0 || o.redialMax < o.redialMin {
		return nil, fmt.Errorf("dial: redial back-off %v..%v: want 0 < first <= max", o.redialMin, o.redialMax)
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("dial: ticket base: %w", err)
	}
	c := &Client{opts: o, ticketBase: binary.LittleEndian.Uint64(nonce[:]), changed: make(chan struct{}), open: map[*conn]struct{}{}, pending: map[uint64]messages.TxID{}}
	c.timeout.Store(int64(DefaultClientTimeout))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	seen := map[string]bool{}
	for i, a := range addrs {
		if a = strings.TrimSpace(a); a == "" || seen[a] {
			c.Close()
			return nil, fmt.Errorf("dial: address %d %q is empty or given twice", i, addrs[i])
		}
		seen[a] = true
		c.slots = append(c.slots, &slot{addr: a, node: -1})
	}
	// Every node at once. The Client's own node will do, or, once it has
	// failed, any other: the first calls then go where they should.
	c.mu.Lock()
	for _, s := range c.slots {
		c.startDial(s)
	}
	for {
		up, failed := 0, 0
		var errs []error
		for _, s := range c.slots {
			switch {
			case s.conn != nil:
				up++
			case !s.dialing:
				failed++
				errs = append(errs, s.lastErr)
			}
		}
		own := c.slots[0]
		if own.conn != nil || (up > 0 && !own.dialing) {
			c.mu.Unlock()
			return c, nil
		}
		if failed == len(c.slots) {
			c.mu.Unlock()
			c.Close()
			return nil, errors.Join(errs...)
		}
		ch := c.changed
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
}

// DialTimeout is Dial retried until it succeeds or d has passed.
func DialTimeout(addr string, d time.Duration, opts ...DialOption) (*Client, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := Dial(addr, opts...)
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connect dials addr and returns the connection and, with TLS, the node
// id its certificate names (-1 without).
func (c *Client) connect(addr string) (*conn, int32, error) {
	d := &net.Dialer{Timeout: c.opts.timeout}
	node := int32(-1)
	var (
		nc  net.Conn
		err error
	)
	if c.opts.tls != nil {
		nc, err = (&tls.Dialer{NetDialer: d, Config: c.opts.tls}).DialContext(c.ctx, "tcp", addr)
		if err == nil {
			if p, perr := identity.PeerOfConn(nc.(*tls.Conn).ConnectionState()); perr == nil && p.IsNode() {
				node = p.Node
			}
		}
	} else {
		nc, err = d.DialContext(c.ctx, "tcp", addr)
	}
	if err != nil {
		return nil, -1, fmt.Errorf("connect to node at %s: %w", addr, err)
	}
	w := &watchedConn{Conn: nc, ended: make(chan struct{})}
	var codec rpc.ClientCodec
	if c.opts.codec != nil {
		codec = c.opts.codec(w)
	} else {
		codec = bridge.NewClientCodec(w, bridge.Limits{})
	}
	return &conn{rpc: rpc.NewClientWithCodec(codec), ended: w.ended}, node, nil
}

// startDial dials s in the background; its result wakes the waiting
// calls (changed). Called with mu held.
func (c *Client) startDial(s *slot) {
	if s.dialing || s.conn != nil || c.closed {
		return
	}
	s.dialing = true
	c.dials.Add(1)
	go func() {
		defer c.dials.Done()
		cn, node, err := c.connect(s.addr)
		c.mu.Lock()
		defer c.mu.Unlock()
		s.dialing = false
		switch {
		case c.closed:
			if cn != nil {
				cn.rpc.Close()
			}
		case err != nil:
			s.gap = min(max(2*s.gap, c.opts.redialMin), c.opts.redialMax)
			s.nextDial = time.Now().Add(s.gap)
			s.lastErr = err
		default:
			s.conn, s.gap, s.lastErr = cn, 0, nil
			c.open[s.conn] = struct{}{}
			if node >= 0 {
				s.node = node
			}
		}
		c.wake()
	}()
}

// wake tells the calls waiting for a connection to look again. Called with
// mu held.
func (c *Client) wake() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// retire stops choosing cn, s's connection, and closes it unless calls
// wait on it. Called with mu held.
func (c *Client) retire(s *slot, cn *conn) {
	cn.retired = true
	if s.conn == cn {
		s.conn = nil
	}
	if cn.inflight == 0 {
		if _, ok := c.open[cn]; ok {
			delete(c.open, cn)
			cn.rpc.Close() // ErrShutdown if it ended already: nothing to do
		}
	}
}

// done ends a call sent on cn; if broken (it failed, or stopped
// answering) cn is retired, and the next call dials s again at once (a
// node that restarted is back). A retired connection is closed once no
// call waits on it.
func (c *Client) done(s *slot, cn *conn, broken bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cn.inflight--
	if broken || cn.retired {
		c.retire(s, cn)
	}
}

// learnt notes the node id an answer from s gave.
func (c *Client) learnt(s *slot, node int32) {
	c.mu.Lock()
	s.node = node
	c.mu.Unlock()
}

// nodeOf is s's node id, -1 if not known yet.
func (c *Client) nodeOf(s *slot) int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.node
}

// sent is a call handed to a node's connection.
type sent struct {
	s    *slot
	cn   *conn
	call *rpc.Call
}

// send hands method to the first node in preference order that is
// connected (only the Client's own node unless failover), skipping the
// slots in tried; it dials those preferred over it that may be dialled
// again, and waits, up to the timeout, while none is connected. An error
// means nothing was sent (it wraps ErrNotSent, or rpc.ErrShutdown once
// Close was called).
func (c *Client) send(method string, args, reply any, failover bool, tried map[*slot]bool) (*sent, error) {
	deadline := time.Now().Add(c.Timeout())
	candidates := c.slots[:1]
	if failover {
		candidates = c.slots
	}
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return nil, rpc.ErrShutdown
		}
		now := time.Now()
		var pick *slot
		wake := deadline
		for _, s := range candidates {
			if tried[s] {
				continue
			}
			if cn := s.conn; cn != nil {
				select {
				case <-cn.ended:
					// Over (the node restarted, or closed it idle): not to
					// be chosen, and s may be dialled again at once.
					c.retire(s, cn)
				default:
					pick = s
				}
				if pick != nil {
					break
				}
			}
			if !now.Before(s.nextDial) {
				c.startDial(s)
			}
			if !s.dialing && s.nextDial.Before(wake) {
				wake = s.nextDial
			}
		}
		if pick != nil {
			cn := pick.conn
			cn.inflight++
			c.mu.Unlock()
			call := cn.rpc.Go(method, args, reply, make(chan *rpc.Call, 1))
			select {
			case done := <-call.Done:
				// Done at once with ErrShutdown: net/rpc refused the call
				// on a connection that has ended (the node died, or closed
				// it idle) without sending it (see conn). A request too
				// large for the wire was not sent either, and would be
				// refused anywhere. Any other error may have come after
				// the request left: it is the answer's to judge.
				var big *bridge.FrameTooLargeError
				switch {
				case errors.Is(done.Error, rpc.ErrShutdown):
					c.done(pick, cn, true)
					c.mu.Lock()
					continue
				case errors.As(done.Error, &big):
					c.done(pick, cn, false)
					return nil, done.Error
				}
				// Answered already (or failed after sending): put it back
				// for the wait (the channel holds one, now free).
				call.Done <- done
			default:
			}
			return &sent{s: pick, cn: cn, call: call}, nil
		}
		if !now.Before(deadline) {
			var errs []error
			for _, s := range candidates {
				if !tried[s] && s.lastErr != nil {
					errs = append(errs, s.lastErr)
				}
			}
			c.mu.Unlock()
			if len(errs) == 0 {
				return nil, fmt.Errorf("%w within %v", ErrNotSent, c.Timeout())
			}
			return nil, fmt.Errorf("%w within %v: %w", ErrNotSent, c.Timeout(), errors.Join(errs...))
		}
		ch := c.changed
		c.mu.Unlock()
		t := time.NewTimer(max(time.Until(wake), time.Millisecond))
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
	}
}

// await waits for a sent call's answer, up to the timeout. A connection
// that failed, or that gave no answer in time (a hung node, a cut link),
// is dropped, to be dialled again.
func (c *Client) await(x *sent) error {
	t := time.NewTimer(c.Timeout())
	defer t.Stop()
	select {
	case <-x.call.Done:
		var se rpc.ServerError
		err := x.call.Error
		// Any error but the node's own answer is the connection's: net/rpc
		// has shut it down.
		c.done(x.s, x.cn, err != nil && !errors.As(err, &se))
		return err
	case <-t.C:
		c.done(x.s, x.cn, true)
		return fmt.Errorf("%w within %v", errNoAnswer, c.Timeout())
	}
}

// errNoAnswer: a call's answer did not come within the Client's timeout.
var errNoAnswer = errors.New("no answer")

// SetTimeout changes how long a call waits for its answer, and for a node
// to send it to (DefaultClientTimeout). A Submit that times out has no
// known outcome.
func (c *Client) SetTimeout(d time.Duration) { c.timeout.Store(int64(d)) }

// Timeout is the wait SetTimeout set.
func (c *Client) Timeout() time.Duration { return time.Duration(c.timeout.Load()) }

// Submit runs one transaction and returns its outcome: Committed, or not
// with the reason. An error means no outcome is known: it wraps ErrNotSent
// if the transaction reached no node (nothing was begun), and is a
// *NoOutcomeError (errors.As) if it was sent and no answer came — with the
// transaction's id when the node had named it. Such a transaction is not
// sent again: its participants settle it, commit or abort.
func (c *Client) Submit(ops ...messages.Op) (*messages.Outcome, error) {
	ticket := c.ticketBase + c.tickets.Add(1)
	var out RunReply
	x, err := c.send("Client.Run", &RunArgs{Ops: ops, Ticket: ticket}, &out, true, nil)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	c.pend(ticket, messages.TxID{})
	defer c.unpend(ticket)
	// The id, ahead of the outcome, on the same connection: if the node
	// dies before it answers, its answer to this says which transaction
	// to look for.
	var named NamedReply
	nc := x.cn.rpc.Go("Client.Named", &TicketArgs{Ticket: ticket}, &named, make(chan *rpc.Call, 1))
	var tx messages.TxID
	namedIn := nc.Done // nil once received
	gotNamed := func() {
		namedIn = nil
		if nc.Error == nil && !named.Tx.IsZero() {
			tx = named.Tx
			c.learnt(x.s, named.Node)
			c.pend(ticket, tx)
		}
	}
	timeout := time.NewTimer(c.Timeout())
	defer timeout.Stop()
	var runErr error
wait:
	for {
		select {
		case <-namedIn:
			gotNamed()
		case <-x.call.Done:
			runErr = x.call.Error
			break wait
		case <-timeout.C:
			runErr = fmt.Errorf("%w within %v", errNoAnswer, c.Timeout())
			break wait
		}
	}
	var se rpc.ServerError
	refused := errors.As(runErr, &se)
	// Any error but the node's own answer is the connection's (net/rpc
	// has shut it down), or the node stopped answering on it.
	c.done(x.s, x.cn, runErr != nil && !refused)
	switch {
	case runErr == nil:
		c.learnt(x.s, out.Node)
		if out.NoOutcome != "" {
			return nil, &NoOutcomeError{Node: out.Node, Tx: out.Tx, Err: errors.New(out.NoOutcome)}
		}
		return &out.Outcome, nil
	case refused:
		// The node refused the transaction before beginning it (too many
		// operations, say): there is no outcome to wait for.
		return nil, fmt.Errorf("submit via %s: %w", x.s.addr, runErr)
	}
	// Sent, and no answer. If the connection failed, net/rpc ended the
	// Named call with it, at once (the bound is for a connection that
	// failed only for writing); if the node stopped answering, only what
	// came before counts.
	if namedIn != nil && !errors.Is(runErr, errNoAnswer) {
		t := time.NewTimer(c.Timeout())
		select {
		case <-namedIn:
			gotNamed()
		case <-t.C:
		}
		t.Stop()
	}
	if namedIn != nil {
		select {
		case <-namedIn:
			gotNamed()
		default:
		}
	}
	node := c.nodeOf(x.s)
	if !tx.IsZero() {
		node = tx.Node
	}
	return nil, &NoOutcomeError{Node: node, Tx: tx, Err: fmt.Errorf("via %s: %w", x.s.addr, runErr)}
}

// Pending lists the transactions submitted through this Client that are
// waiting for their outcome: by id once their node has named them, the
// zero id before. For an operator's view of what a client has in flight.
func (c *Client) Pending() []messages.TxID {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]messages.TxID, 0, len(c.pending))
	for _, tx := range c.pending {
		out = append(out, tx)
	}
	slices.SortFunc(out, messages.TxID.Compare)
	return out
}

func (c *Client) pend(ticket uint64, tx messages.TxID) {
	c.mu.Lock()
	c.pending[ticket] = tx
	c.mu.Unlock()
}

func (c *Client) unpend(ticket uint64) {
	c.mu.Lock()
	delete(c.pending, ticket)
	c.mu.Unlock()
}

// Read returns the committed values of keys (a missing key reads 0). A
// read whose node died before answering is asked of another member.
func (c *Client) Read(keys ...string) ([]NodeValue, error) {
	tried := map[*slot]bool{}
	for {
		var out ReadResult
		x, err := c.send("Client.Read", &ReadArgs{Keys: keys}, &out, true, tried)
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		err = c.await(x)
		if err == nil {
			return out.Values, nil
		}
		var se rpc.ServerError
		tried[x.s] = true
		if errors.As(err, &se) || len(tried) == len(c.slots) {
			return nil, fmt.Errorf("read via %s: %w", x.s.addr, err)
		}
	}
}

// Close ends the connections and any dial in flight; calls waiting end
// with an error.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var errs []error
	for cn := range c.open {
		if err := cn.rpc.Close(); err != nil && !errors.Is(err, rpc.ErrShutdown) {
			errs = append(errs, err)
		}
	}
	clear(c.open)
	for _, s := range c.slots {
		s.conn = nil
	}
	c.wake()
	c.mu.Unlock()
	c.cancel()
	c.dials.Wait()
	return errors.Join(errs...)
}
