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
// The network behaves as a reliable, unbuffered one: a write completes when
// the other end has read it, and a dial to a name nobody listens on is
// refused at once (as a closed TCP port answers with a reset). Losing,
// delaying and reordering messages is the bridge's fault injection's job,
// not this package's.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
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
}

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
	client, server := net.Pipe()
	c := &conn{Conn: client, local: Addr(fmt.Sprintf("%s>%s", "client", addr)), remote: l.addr}
	s := &conn{Conn: server, local: l.addr, remote: c.local}
	select {
	case <-l.done:
		return nil, refused
	default:
	}
	select {
	case l.queue <- s:
		// Close drains the queue only after closing done: a connection
		// queued after that drain would never be accepted nor closed.
		select {
		case <-l.done:
			s.Close()
			return nil, refused
		default:
		}
		return c, nil
	case <-l.done:
		return nil, refused
	case <-ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: "memnet", Addr: Addr(addr), Err: ctx.Err()}
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

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }
