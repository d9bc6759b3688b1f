package memnet

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDialWithoutListenerIsRefused(t *testing.T) {
	n := New()
	_, err := n.Dial(context.Background(), "node-1:7001")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to an address nobody listens on: %v, want ECONNREFUSED", err)
	}
}

func TestListenOnAnAddressInUseFailsUntilClosed(t *testing.T) {
	n := New()
	l, err := n.Listen("node-0:7000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Listen("node-0:7000"); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listen on the same address: %v, want EADDRINUSE", err)
	}
	if !n.Listening("node-0:7000") {
		t.Fatal("Listening says nobody listens on a bound address")
	}
	l.Close()
	if n.Listening("node-0:7000") {
		t.Fatal("Listening says someone listens after Close")
	}
	l2, err := n.Listen("node-0:7000")
	if err != nil {
		t.Fatalf("listen again after Close: %v", err)
	}
	l2.Close()
	if _, err := n.Listen(""); err == nil {
		t.Fatal("listen on an empty address succeeded")
	}
}

func TestConnectionCarriesBytesBothWaysWithAddresses(t *testing.T) {
	n := New()
	l, err := n.Listen("node-0:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Addr().String(); got != "node-0:7000" || l.Addr().Network() != "memnet" {
		t.Fatalf("listener address %s/%s", l.Addr().Network(), got)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := n.Dial(context.Background(), "node-0:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	if c.RemoteAddr().String() != "node-0:7000" || s.LocalAddr().String() != "node-0:7000" || s.RemoteAddr() != c.LocalAddr() {
		t.Fatalf("addresses: client %v→%v, server %v→%v", c.LocalAddr(), c.RemoteAddr(), s.LocalAddr(), s.RemoteAddr())
	}
	go func() { c.Write([]byte("prepare")) }()
	buf := make([]byte, 7)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "prepare" {
		t.Fatalf("server read %q %v", buf, err)
	}
	go func() { s.Write([]byte("yes")) }()
	buf = buf[:3]
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "yes" {
		t.Fatalf("client read %q %v", buf, err)
	}
}

// A closed listener: Accept fails with net.ErrClosed (what a server's
// accept loop stops on), later dials are refused, and a connection dialled
// but never accepted is closed, as a reset backlog would be.
func TestCloseRefusesDialsAndClosesTheBacklog(t *testing.T) {
	n := New()
	l, err := n.Listen("node-0:7000")
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := n.Dial(context.Background(), "node-0:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := waiting.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on a connection never accepted, after Close: %v, want EOF", err)
	}
	if _, err := n.Dial(context.Background(), "node-0:7000"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Close: %v, want ECONNREFUSED", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Inside a synctest bubble a goroutine reading a memnet connection is
// durably blocked — the reason this package exists: synctest.Wait returns,
// and a read deadline fires on the bubble's clock. A dial into a full
// backlog waits for its context on that clock too.
func TestBlocksDurablyInsideSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		l, err := n.Listen("node-0:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c, err := n.Dial(context.Background(), "node-0:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()

		read := make(chan error, 1)
		go func() {
			_, err := s.Read(make([]byte, 1))
			read <- err
		}()
		synctest.Wait() // returns only if the reader is durably blocked
		select {
		case err := <-read:
			t.Fatalf("read returned before anything was written: %v", err)
		default:
		}
		start := time.Now()
		s.SetReadDeadline(start.Add(time.Hour))
		// The deadline set while the read waits applies to it.
		if err := <-read; !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
			t.Fatalf("read past its deadline: %v, want a timeout", err)
		}
		if waited := time.Since(start); waited != time.Hour {
			t.Fatalf("deadline fired after %v of bubble time, want 1h", waited)
		}

		for range Backlog {
			extra, err := n.Dial(context.Background(), "node-0:7000")
			if err != nil {
				t.Fatal(err)
			}
			defer extra.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := n.Dial(ctx, "node-0:7000"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial into a full backlog: %v, want the context's deadline", err)
		}
		if waited := time.Since(start); waited != time.Hour+time.Minute {
			t.Fatalf("full-backlog dial gave up after %v in all, want 1h1m", waited)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// With latency a write returns at once and arrives that much later, on
// the bubble's clock; bytes keep their order; closing one end reaches the
// other after what was written before it.
func TestLatencyDelaysDeliveryNotTheWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		n.SetLatency(3 * time.Millisecond)
		l, err := n.Listen("node-0:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c, err := n.Dial(context.Background(), "node-0:7000")
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		start := time.Now()
		if _, err := c.Write([]byte("ab")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		if _, err := c.Write([]byte("c")); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != time.Millisecond {
			t.Fatalf("writes took %v of bubble time, want only the 1ms slept between them", waited)
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ab" {
			t.Fatalf("first read %q %v", buf, err)
		}
		if got := time.Since(start); got != 3*time.Millisecond {
			t.Fatalf("first write arrived after %v, want the latency, 3ms", got)
		}
		c.Close()
		buf = buf[:1]
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "c" {
			t.Fatalf("second read %q %v", buf, err)
		}
		if got := time.Since(start); got != 4*time.Millisecond {
			t.Fatalf("second write arrived after %v, want 1ms + 3ms", got)
		}
		if _, err := s.Read(buf); !errors.Is(err, io.EOF) {
			t.Fatalf("read after the other end closed: %v, want EOF", err)
		}
		// The server's writes now fail: the connection is gone.
		synctest.Wait()
		if _, err := s.Write([]byte("late")); err == nil {
			t.Fatal("write to a closed connection succeeded")
		}
	})
}

// A dial that gives up (its context ends while the backlog is full) leaves
// nothing running, even with latency, whose relays would otherwise wait
// for ever: the bubble would end in a deadlock panic.
func TestDialThatGivesUpLeavesNothingRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		n.SetLatency(time.Millisecond)
		l, err := n.Listen("node-0:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // closes the queued connections' server ends
		for range Backlog {
			c, err := n.Dial(context.Background(), "node-0:7000")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := n.Dial(ctx, "node-0:7000"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial into a full backlog: %v, want the context's deadline", err)
		}
	})
}
