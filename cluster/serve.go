package cluster

import (
	"net"
	"sync"
)

// connServer accepts connections and serves each on its own goroutine,
// keeping track of them: a node that stops must close the connections it
// accepted, not only its listener (rpc.Server.Accept keeps none), and wait
// for the goroutines serving them.
type connServer struct {
	ln     net.Listener
	handle func(net.Conn)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and one handler per connection
}

// serveConns starts accepting on ln, calling handle for each connection.
func serveConns(ln net.Listener, handle func(net.Conn)) *connServer {
	s := &connServer{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *connServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // the listener was closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
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
