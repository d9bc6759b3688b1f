package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"sync"
	"time"

	"twopc/bridge"
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

// The Client service's arguments and replies travel in the wire's encoding
// (bridge.WireValue): every count is checked against bridge.Limits before
// anything is allocated for it.

func (a *SubmitArgs) EncodeWire(e *bridge.Encoder) { e.Ops(a.Ops) }
func (a *SubmitArgs) DecodeWire(d *bridge.Decoder) { a.Ops = d.Ops() }
func (a *ReadArgs) EncodeWire(e *bridge.Encoder)   { e.Strings(a.Keys) }
func (a *ReadArgs) DecodeWire(d *bridge.Decoder)   { a.Keys = d.Keys() }

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

// clientService is the net/rpc face a node shows to clients.
type clientService struct{ n *Node }

func (s *clientService) Submit(args *SubmitArgs, out *messages.Outcome) error {
	o, err := s.n.Submit(args.Ops...)
	if err != nil {
		return err
	}
	*out = *o
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

// Client talks to one node of a cluster; that node coordinates the
// transactions submitted through it and fetches reads from the owners.
// A Client is safe for concurrent use.
type Client struct {
	addr    string
	opts    dialOptions
	timeout time.Duration

	mu     sync.Mutex
	rpc    *rpc.Client
	closed bool // Close was called
}

// DefaultClientTimeout bounds a Client's wait for one answer: a node answers
// a Submit within 3 × VoteTimeout + 2 s (8 s by default) and a Read sooner,
// unless it hangs or the network between them is cut.
const DefaultClientTimeout = 15 * time.Second

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	tls     *tls.Config
	timeout time.Duration
}

// WithTLS makes Dial speak mutual TLS with cfg: typically a client's or
// admin's identity.Identity.ClientConfig(), which presents that
// certificate and accepts only a node of the same cluster. The server
// name, if cfg has none, is the host of the address dialled.
func WithTLS(cfg *tls.Config) DialOption { return func(o *dialOptions) { o.tls = cfg } }

// WithConnectTimeout bounds connecting, TLS handshake included
// (default 10 s).
func WithConnectTimeout(d time.Duration) DialOption { return func(o *dialOptions) { o.timeout = d } }

// Dial connects to the node at addr. Without WithTLS it speaks plain TCP,
// which only a node started without TLS (insecure) accepts.
func Dial(addr string, opts ...DialOption) (*Client, error) {
	o := dialOptions{timeout: 10 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	c := &Client{addr: addr, opts: o, timeout: DefaultClientTimeout}
	var err error
	if c.rpc, err = c.connect(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) connect() (*rpc.Client, error) {
	d := &net.Dialer{Timeout: c.opts.timeout}
	var (
		conn net.Conn
		err  error
	)
	if c.opts.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: c.opts.tls}).Dial("tcp", c.addr)
	} else {
		conn, err = d.Dial("tcp", c.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to node at %s: %w", c.addr, err)
	}
	return rpc.NewClientWithCodec(bridge.NewClientCodec(conn, bridge.Limits{})), nil
}

// conn is the open connection, dialled again if the node closed the last
// one (it closes connections idle longer than its IdleTimeout).
func (c *Client) conn(stale *rpc.Client) (*rpc.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, rpc.ErrShutdown
	}
	if c.rpc != stale {
		return c.rpc, nil // another call dialled already
	}
	fresh, err := c.connect()
	if err != nil {
		return nil, err
	}
	c.rpc = fresh
	stale.Close()
	return fresh, nil
}

// SetTimeout changes how long a call waits for its answer (DefaultClientTimeout).
// A call that times out has no known outcome.
func (c *Client) SetTimeout(d time.Duration) { c.timeout = d }

// call is rpc.Call with the client's timeout.
func (c *Client) call(method string, args, reply any) error {
	c.mu.Lock()
	cl := c.rpc
	c.mu.Unlock()
	call := cl.Go(method, args, reply, make(chan *rpc.Call, 1))
	select {
	case done := <-call.Done:
		// Done at once: net/rpc refuses a call on a connection that has
		// ended (an idle one the node closed) without sending it. Calls in
		// flight when a connection breaks end with another error, so only
		// this one is safe to send again on a new connection, even a Submit.
		if !errors.Is(done.Error, rpc.ErrShutdown) {
			return done.Error
		}
		var err error
		if cl, err = c.conn(cl); err != nil {
			return err
		}
		call = cl.Go(method, args, reply, make(chan *rpc.Call, 1))
	default:
	}
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case <-call.Done:
		return call.Error
	case <-t.C:
		return fmt.Errorf("no answer within %v", c.timeout)
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

// Submit runs one transaction and returns its outcome: Committed, or not
// with the reason. An error means no outcome is known (e.g. the node went
// away mid-call).
func (c *Client) Submit(ops ...messages.Op) (*messages.Outcome, error) {
	var out messages.Outcome
	if err := c.call("Client.Submit", &SubmitArgs{Ops: ops}, &out); err != nil {
		return nil, fmt.Errorf("submit via %s: %w", c.addr, err)
	}
	return &out, nil
}

// Read returns the committed values of keys (a missing key reads 0).
func (c *Client) Read(keys ...string) ([]NodeValue, error) {
	var out ReadResult
	if err := c.call("Client.Read", &ReadArgs{Keys: keys}, &out); err != nil {
		return nil, fmt.Errorf("read via %s: %w", c.addr, err)
	}
	return out.Values, nil
}

// Close ends the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.rpc.Close()
}
