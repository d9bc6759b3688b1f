// Package memnet is a network inside one process: listeners bound to
// names ("host:port" strings) and connections made of net.Pipe.
//
// It exists for the whole-cluster simulation (cluster's TestSimulation),
// which runs every node inside a testing/synctest bubble. There a goroutine
// blocked reading a real TCP socket is not "durably blocked" (the kernel
// could wake it), so virtual time would never advance and synctest.Wait
// would never return; a goroutine blocked on a net.Pipe waits on channels
// of the bubble, which is what synctest needs. Deadlines on these
// connections run on the bubble's clock too.
//
// The network is reliable and keeps order. Without latency (the default) a
// write completes when the other end has read it; with latency (SetLatency)
// a write completes at once and its bytes arrive that much later, as with a
// socket's send buffer. A dial to a name nobody listens on is refused at
// once (as a closed TCP port answers with a reset). Losing, delaying and
// reordering messages is the bridge's fault injection's job, not this
// package's.
//
// Latency is carried by relay goroutines, never by sleeping in Write: a
// writer may hold a lock (net/rpc's client holds one while it writes a
// request), and a goroutine waiting for a lock is not durably blocked, so
// synctest's clock would stop with the sleeper holding it.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Backlog is how many dialled connections a listener holds before they are
// accepted; a dial beyond it waits (or gives up with its context), as a
// full accept queue makes a TCP connect wait.
const Backlog = 64

// Network is a set of listeners by address. The zero value is not usable;
// call New. Its methods are safe for concurrent use.
type Network struct {
	mu        sync.Mutex
	listeners map[string]*listener
	latency   atomic.Int64 // nanoseconds each write waits before it is delivered
}

// SetLatency makes what is written on connections dialled from now on
// arrive d later: a one-way delay, on the bubble's clock inside synctest.
// 0 (the default) delivers at once.
func (n *Network) SetLatency(d time.Duration) { n.latency.Store(int64(d)) }

// New returns an empty network.
func New() *Network { return &Network{listeners: make(map[string]*listener)} }

// Addr is an address on a Network.
type Addr string

func (a Addr) Network() string { return "memnet" }
func (a Addr) String() string  { return string(a) }

// Listen binds addr. It fails while another listener holds addr, as a TCP
// port in use does; once that one is closed addr is free again.
func (n *Network) Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, errors.New("memnet: listen: empty address")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, taken := n.listeners[addr]; taken {
		return nil, &net.OpError{Op: "listen", Net: "memnet", Addr: Addr(addr), Err: syscall.EADDRINUSE}
	}
	l := &listener{net: n, addr: Addr(addr), queue: make(chan net.Conn, Backlog), done: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// Dial connects to the listener bound to addr. It fails at once if nobody
// listens there (syscall.ECONNREFUSED), and waits while the listener's
// backlog is full, until ctx ends or the listener closes.
func (n *Network) Dial(ctx context.Context, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listeners[addr]
	n.mu.Unlock()
	refused := &net.OpError{Op: "dial", Net: "memnet", Addr: Addr(addr), Err: syscall.ECONNREFUSED}
	if l == nil {
		return nil, refused
	}
	client, server := link(time.Duration(n.latency.Load()))
	c := &conn{Conn: client, local: Addr(fmt.Sprintf("%s>%s", "client", addr)), remote: l.addr}
	s := &conn{Conn: server, local: l.addr, remote: c.local}
	// A connection not handed over is closed, both ends: with latency its
	// relays would otherwise wait for ever.
	fail := func(err error) (net.Conn, error) {
		c.Close()
		s.Close()
		return nil, err
	}
	select {
	case <-l.done:
		return fail(refused)
	default:
	}
	select {
	case l.queue <- s:
		// Close drains the queue only after closing done: a connection
		// queued after that drain would never be accepted nor closed.
		select {
		case <-l.done:
			return fail(refused)
		default:
		}
		return c, nil
	case <-l.done:
		return fail(refused)
	case <-ctx.Done():
		return fail(&net.OpError{Op: "dial", Net: "memnet", Addr: Addr(addr), Err: ctx.Err()})
	}
}

// Listening reports whether someone listens on addr.
func (n *Network) Listening(addr string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.listeners[addr]
	return ok
}

type listener struct {
	net   *Network
	addr  Addr
	queue chan net.Conn
	once  sync.Once
	done  chan struct{}
}

// Accept waits for the next connection; after Close it fails with an error
// that errors.Is(net.ErrClosed).
func (l *listener) Accept() (net.Conn, error) {
	// A closed listener refuses even connections already queued: their
	// dialers see them closed, as a socket's backlog is reset on close.
	select {
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "memnet", Addr: l.addr, Err: net.ErrClosed}
	default:
	}
	select {
	case c := <-l.queue:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "memnet", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close unbinds the address and closes the connections not yet accepted.
func (l *listener) Close() error {
	l.once.Do(func() {
		l.net.mu.Lock()
		if l.net.listeners[string(l.addr)] == l {
			delete(l.net.listeners, string(l.addr))
		}
		l.net.mu.Unlock()
		close(l.done)
		for {
			select {
			case c := <-l.queue:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }

// conn is one end of a pipe with the addresses of its ends (net.Pipe's
// are both "pipe").
type conn struct {
	net.Conn
	local, remote Addr
}

// link makes a connection's two ends: one pipe without latency; with it,
// two pipes and a relay each way between them.
func link(latency time.Duration) (client, server net.Conn) {
	if latency <= 0 {
		return net.Pipe()
	}
	client, toServer := net.Pipe()
	toClient, server := net.Pipe()
	relay(toServer, toClient, latency)
	relay(toClient, toServer, latency)
	return client, server
}

// relayChunk is what one read from the sending pipe got, and when it may be
// delivered.
type relayChunk struct {
	b  []byte
	at time.Time
}

// relay carries what arrives on from to to, each chunk latency after it
// arrived, in order. When from ends (its writer closed) to is closed once
// everything before has been delivered; when to fails (its reader closed)
// from is closed, so the writer learns the connection is gone, and what
// is still on its way is dropped.
func relay(from, to net.Conn, latency time.Duration) {
	queue := make(chan relayChunk, 64)
	go func() {
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			k, err := from.Read(buf)
			if k > 0 {
				queue <- relayChunk{b: buf[:k], at: time.Now().Add(latency)}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer to.Close()
		for c := range queue {
			time.Sleep(time.Until(c.at))
			if _, err := to.Write(c.b); err != nil {
				from.Close()
				for range queue { // until the reader above sees the close
				}
				return
			}
		}
	}()
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }
