package cluster

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"twopc/actors/actortest"
)

// Every test must leave nothing running: nodes, bridges, connections and timers are stopped by their owners.
func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	actortest.Eventually(tb, 20*time.Second, func() string {
		if cond() {
			return ""
		}
		return what
	})
}

func listenLoopback(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on a free loopback port: %v", err)
	}
	return ln
}

// mutePeer is a peer that accepts connections and reads everything sent
// to it, but never answers. accepts counts the connections it took, read
// the bytes it got.
type mutePeer struct {
	addr    string
	accepts atomic.Int64
	read    atomic.Int64
}

func startMutePeer(t *testing.T) *mutePeer {
	t.Helper()
	ln := listenLoopback(t)
	p := &mutePeer{addr: ln.Addr().String()}
	srv := serveConns(ln, func(c net.Conn) {
		p.accepts.Add(1)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			p.read.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { srv.stop(); srv.wait() })
	return p
}
