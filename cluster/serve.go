package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/bridge"
	"twopc/identity"
)

// ConnLimits bound what connections may cost a node. Zero fields take
// the defaults below (WithDefaults).
type ConnLimits struct {
	// MaxConns caps the authenticated client and admin connections open at
	// once; one more is closed right after its handshake (and the refusal
	// logged at a bounded rate). Members' connections do not count here.
	MaxConns int
	// MaxPeerConns caps the connections from one member node. A member
	// that dials again (say after a restart, its old connection not yet
	// noticed dead) gets the new one: the oldest of its connections is closed.
	MaxPeerConns int
	// MaxHandshakes caps the connections accepted but not yet
	// authenticated. Beyond it the oldest such connection is closed, so
	// strangers holding handshakes open cannot keep a member out: each new
	// arrival pushes the stalest out.
	MaxHandshakes int
	// HandshakeTimeout bounds a TLS handshake.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection on which nothing arrived for this
	// long (a truncated request waits no longer either). Long enough that a
	// member's idle link rarely expires; when it does, the bridge dials
	// again on its next batch.
	IdleTimeout time.Duration
}

// Defaults of ConnLimits, as the README's "Security" section gives them.
const (
	DefaultMaxConns         = 1024
	DefaultMaxPeerConns     = 4
	DefaultMaxHandshakes    = 64
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
)

// WithDefaults fills the zero fields of l.
func (l ConnLimits) WithDefaults() ConnLimits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxPeerConns <= 0 {
		l.MaxPeerConns = DefaultMaxPeerConns
	}
	if l.MaxHandshakes <= 0 {
		l.MaxHandshakes = DefaultMaxHandshakes
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	return l
}

// connOptions says how a connServer admits connections.
type connOptions struct {
	TLS     *tls.Config // nil: plaintext, every connection anonymous (insecure mode)
	Limits  ConnLimits
	Members int // a node certificate's id must be below it
	Self    int32
	Log     hclog.Logger // nil: none
}

// connServer accepts connections and serves each on its own goroutine,
// keeping track of them: a node that stops must close the connections it
// accepted, not only its listener (rpc.Server.Accept keeps none), and wait
// for the goroutines serving them. With TLS, each connection is served as
// the identity its peer's certificate proves, within the limits.
type connServer struct {
	ln     net.Listener
	opts   connOptions
	handle func(identity.Peer, net.Conn)
	log    hclog.Logger

	mu       sync.Mutex
	conns    map[net.Conn]struct{}  // every open connection
	pending  map[net.Conn]time.Time // accepted, not yet authenticated (TLS) → when
	clients  int                    // authenticated client/admin (or, in plaintext, all) connections
	peers    map[int32][]net.Conn   // member connections by node, oldest first
	closed   bool
	wg       sync.WaitGroup // the accept loop and one handler per connection
	refusals bridge.LogEvery
	accepts  bridge.LogEvery
}

// serveConns serves plaintext connections with the default limits.
func serveConns(ln net.Listener, handle func(net.Conn)) *connServer {
	return serveConnsWith(ln, connOptions{}, func(_ identity.Peer, c net.Conn) { handle(c) })
}

// serveConnsWith starts accepting on ln, calling handle for each admitted
// connection with its peer's identity (the zero Peer without TLS).
func serveConnsWith(ln net.Listener, opts connOptions, handle func(identity.Peer, net.Conn)) *connServer {
	opts.Limits = opts.Limits.WithDefaults()
	log := opts.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &connServer{
		ln: ln, opts: opts, handle: handle, log: log,
		conns: make(map[net.Conn]struct{}), pending: make(map[net.Conn]time.Time), peers: make(map[int32][]net.Conn),
	}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Accept backoff after an error such as running out of file descriptors.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func (s *connServer) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			// Out of descriptors (EMFILE, ENFILE) or another failure that
			// may pass: the loop must outlive it, or the node would stay up
			// accepting nothing. Back off, so as not to spin, and say so
			// once per interval.
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			if ok, missed := s.accepts.Allow(); ok {
				s.log.Error("accept failed; retrying with backoff", "error", err, "out_of_descriptors", errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE), "failures_not_logged", missed, "next_in", delay)
			}
			t := time.NewTimer(delay)
			<-t.C
			continue
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		if s.opts.TLS != nil {
			s.pending[c] = time.Now()
			if len(s.pending) > s.opts.Limits.MaxHandshakes {
				s.evictOldestPending()
			}
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			delete(s.pending, c)
			s.mu.Unlock()
		}()
	}
}

func (s *connServer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// evictOldestPending closes the connection that has been handshaking
// longest. Called with mu held.
func (s *connServer) evictOldestPending() {
	var (
		oldest net.Conn
		at     time.Time
	)
	for c, t := range s.pending {
		if oldest == nil || t.Before(at) {
			oldest, at = c, t
		}
	}
	delete(s.pending, oldest)
	oldest.Close()
	s.refuse("too many connections handshaking; closed the oldest", "limit", s.opts.Limits.MaxHandshakes)
}

// refuse logs a refusal at a bounded rate, with only numbers and the
// server's own words: nothing a stranger chose.
func (s *connServer) refuse(msg string, args ...interface{}) {
	if ok, missed := s.refusals.Allow(); ok {
		s.log.Warn(msg, append(args, "refusals_not_logged", missed)...)
	}
}

// serve authenticates c (with TLS), admits it within the limits and hands
// it to the handler.
func (s *connServer) serve(raw net.Conn) {
	var peer identity.Peer
	c := raw
	if s.opts.TLS != nil {
		tc := tls.Server(c, s.opts.TLS)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Limits.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err == nil {
			peer, err = identity.PeerOfConn(tc.ConnectionState())
		}
		if err != nil {
			// Plain TCP, another cluster's certificate, a timeout: the
			// reason is the TLS library's, not the stranger's text.
			s.refuse("refused a connection: TLS handshake failed", "error", tlsReason(err))
			tc.Close()
			return
		}
		c = tc
	}
	release, ok := s.admit(raw, peer) // counted by the accepted conn, which closing closes c too
	if !ok {
		c.Close()
		return
	}
	defer release()
	s.handle(peer, &idleConn{Conn: c, idle: s.opts.Limits.IdleTimeout})
}

// admit counts c against its identity's limit; ok is false if it is refused.
func (s *connServer) admit(c net.Conn, peer identity.Peer) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, waiting := s.pending[c]; !waiting && s.opts.TLS != nil {
		return nil, false // evicted while handshaking
	}
	delete(s.pending, c)
	if peer.IsNode() {
		id := peer.Node
		if int(id) >= s.opts.Members || id == s.opts.Self {
			s.refuse("refused a node certificate that is not another member's", "node", id, "members", s.opts.Members)
			return nil, false
		}
		if open := s.peers[id]; len(open) >= s.opts.Limits.MaxPeerConns {
			open[0].Close() // its serving goroutine removes it
			s.peers[id] = open[1:]
			s.refuse("a member opened more connections than allowed; closed its oldest", "node", id, "limit", s.opts.Limits.MaxPeerConns)
		}
		s.peers[id] = append(s.peers[id], c)
		return func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			open := s.peers[id]
			for i, o := range open {
				if o == c {
					s.peers[id] = append(open[:i:i], open[i+1:]...)
					break
				}
			}
		}, true
	}
	if s.clients >= s.opts.Limits.MaxConns {
		s.refuse("refused a connection: too many client connections", "role", peer.Role.String(), "limit", s.opts.Limits.MaxConns)
		return nil, false
	}
	s.clients++
	return func() {
		s.mu.Lock()
		s.clients--
		s.mu.Unlock()
	}, true
}

// tlsReason keeps the kind of a handshake failure, not its full text.
func tlsReason(err error) string {
	var (
		alert tls.AlertError
		rec   tls.RecordHeaderError
		cert  *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.As(err, &rec):
		return "not TLS"
	case errors.As(err, &cert):
		return "certificate not signed by this cluster's CA"
	case errors.As(err, &alert):
		return "alert: " + alert.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "connection error"
	}
	if len(err.Error()) > 120 {
		return err.Error()[:120]
	}
	return err.Error()
}

// stop closes the listener and every open connection; idempotent.
func (s *connServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// wait returns once the accept loop and every handler have returned.
func (s *connServer) wait() { s.wg.Wait() }

// idleConn closes a connection on which nothing arrives for idle: every
// read pushes the deadline out, so a link in use never expires.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write has the same bound: a peer that stops reading cannot hold the
// goroutine answering it for longer.
func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
