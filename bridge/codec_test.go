package bridge

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// samples holds one value of every type in bodyCodecs, with every field
// set, for the round trip. A new entry in bodyCodecs without a sample here
// fails TestEveryBodyTypeRoundTrips.
func samples() []any {
	tx := messages.TxID{Node: 2, Incarnation: 7, Seq: 1 << 40}
	ops := []messages.Op{messages.Set("n1/a", -5), messages.AddFloor("b", 3, -100), messages.Delete("c")}
	return []any{
		&messages.Prepare{Tx: tx, Ops: ops, Participants: []int32{0, 2, 3}, Begun: -12345},
		&messages.Vote{Tx: tx, From: 3, Kind: messages.VoteNo, Reason: "lock held by 1.1.1"},
		&messages.Commit{Tx: tx, From: 2},
		&messages.Abort{Tx: tx, From: 2, Reason: "vote timeout"},
		&messages.Ack{Tx: tx, From: 1, Heuristic: true},
		&messages.DecisionQuery{Tx: tx, From: 1, Begun: 99},
		&messages.DecisionReply{Tx: tx, From: 0, Decision: messages.DecisionAbort, Presumed: true},
		&messages.Read{Keys: []string{"a", "n2/b"}},
		&messages.ReadReply{From: 1, Values: []messages.KeyValue{{Key: "a", Value: -1}, {Key: "b", Value: 1 << 62}}, Err: "x"},
		&actor.DeadLetterResponse{Target: &actor.PID{Address: "127.0.0.1:1", Id: "future$3", RequestId: 9}},
		&messages.Outcome{Tx: tx, Committed: false, Unknown: true, Reason: "log failed"},
		&messages.Begin{Ops: ops, NotifyBegun: true},
		&messages.Begun{Tx: tx},
		&messages.ReadLock{Reader: messages.ReadID{Node: 3, Incarnation: 2, Seq: 1 << 50}, Begun: -7, Keys: []string{"n1/a", "value"}},
		&messages.ReadLocked{Reader: messages.ReadID{Node: 1, Incarnation: 9, Seq: 4}, From: 2, Values: []messages.KeyValue{{Key: "n1/a", Value: -3}}, Err: "e"},
		&messages.ReadRelease{Reader: messages.ReadID{Node: 0, Incarnation: 1, Seq: 2}},
		&messages.ReadReleased{Reader: messages.ReadID{Node: 2, Incarnation: 3, Seq: 5}, From: 1, Held: true},
		&messages.PromiseRequest{Tx: tx, Ballot: 6, From: 1},
		&messages.PromiseReply{Tx: tx, Ballot: 6, From: 3, OK: true, Promised: 6, AcceptedBallot: 0, Accepted: messages.DecisionCommit},
		&messages.AcceptRequest{Tx: tx, Ballot: 0, From: 2, Decision: messages.DecisionCommit, Settled: 1 << 39},
		&messages.AcceptReply{Tx: tx, Ballot: 1 << 31, From: 0, OK: false, Promised: 1<<31 + 4},
	}
}

// Every message type peers may send has an encoding: a type added to
// wireMessages without an entry in bodyCodecs fails here (and at init).
func TestEveryWireMessageHasACodec(t *testing.T) {
	for _, m := range wireMessages {
		if bodyByType[reflect.TypeOf(m)] == nil {
			t.Errorf("wire message %T has no entry in bodyCodecs (bridge/wire.go)", m)
		}
	}
}

func TestEveryBodyTypeRoundTrips(t *testing.T) {
	covered := map[reflect.Type]bool{}
	batch := &Batch{Cluster: 1 << 63, From: 1, FromAddr: "127.0.0.1:2", To: 0, Session: -7, Seq: 3}
	for _, s := range samples() {
		covered[reflect.TypeOf(s)] = true
		batch.Msgs = append(batch.Msgs, Msg{To: "participant", SenderAddr: "a:1", SenderID: "future$1", Body: s})
	}
	batch.Msgs = append(batch.Msgs, Msg{To: "x"}) // a nil body travels as nil
	for _, c := range bodyCodecs {
		if !covered[c.typ] {
			t.Errorf("bodyCodecs has %v (tag %d) but samples() has no value of it", c.typ, c.tag)
		}
	}
	var e Encoder
	batch.EncodeWire(&e)
	var got Batch
	if err := decodeValue(NewDecoder(e.Bytes(), Limits{}), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, batch) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, *batch)
	}
	// A frame with bytes after the body is refused, as is one cut short.
	for _, bad := range [][]byte{append(e.Bytes(), 0), e.Bytes()[:len(e.Bytes())-1]} {
		if err := decodeValue(NewDecoder(bad, Limits{}), &Batch{}); err == nil {
			t.Errorf("a frame of %d bytes (encoded %d) decoded", len(bad), len(e.Bytes()))
		}
	}
}

// An unknown tag is refused with an error naming the tag, and nothing the
// sender wrote appears in it.
func TestUnknownTypeRefused(t *testing.T) {
	var e Encoder
	(&Batch{}).EncodeWire(&e)
	raw := e.Bytes()
	raw = raw[:len(raw)-1] // drop the zero message count
	raw = binary.AppendUvarint(raw, 1)
	e = Encoder{buf: raw}
	e.String("to\nFAKE LOG LINE")
	e.String("")
	e.String("")
	e.Uvarint(4242)
	err := decodeValue(NewDecoder(e.Bytes(), Limits{}), &Batch{})
	if err == nil || !strings.Contains(err.Error(), "unknown message type tag 4242") || strings.Contains(err.Error(), "FAKE") {
		t.Errorf("unknown tag: %v", err)
	}
	// Encoding a type without a codec names the type.
	if err := encodeBody(&Encoder{}, &struct{ X int }{}); err == nil || !strings.Contains(err.Error(), "struct { X int }") {
		t.Errorf("encoding an unknown type: %v", err)
	}
}

// allocated is how many bytes f allocated (every goroutine's; the tests
// using it run alone).
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// expansion bounds what decoding one frame may allocate, per byte of the
// frame: the worst element is a message whose body is a
// DeadLetterResponse with an empty target (8 bytes on the wire, about 200
// in memory). The README's per-connection bound uses this figure.
const expansion = 32

// A frame packed with the cheapest elements the encoding allows stays
// within expansion × its size, whatever the counts claim.
func TestDecodeMemoryBound(t *testing.T) {
	const frame = 256 << 10
	lim := Limits{MaxMsgsPerBatch: 1 << 20, MaxOpsPerTx: 1 << 20, MaxKeysPerRead: 1 << 20, MaxParticipants: 1 << 20}
	fill := func(per int, mk func() any) []Msg {
		msgs := make([]Msg, frame/per)
		for i := range msgs {
			msgs[i].Body = mk()
		}
		return msgs
	}
	cases := []struct {
		name string
		v    WireValue
		new  func() any
	}{
		{"empty messages", &Batch{Msgs: make([]Msg, frame/minMsgSize)}, func() any { return &Batch{} }},
		{"empty acks", &Batch{Msgs: fill(9, func() any { return &messages.Ack{} })}, func() any { return &Batch{} }},
		{"empty dead letters", &Batch{Msgs: fill(8, func() any { return &actor.DeadLetterResponse{Target: &actor.PID{}} })}, func() any { return &Batch{} }},
		{"empty prepares", &Batch{Msgs: fill(10, func() any { return &messages.Prepare{} })}, func() any { return &Batch{} }},
		{"one prepare of empty ops", &Batch{Msgs: []Msg{{Body: &messages.Prepare{Ops: make([]messages.Op, frame/minOpSize), Participants: make([]int32, 1000)}}}}, func() any { return &Batch{} }},
		{"a read of empty keys", &Batch{Msgs: []Msg{{Body: &messages.Read{Keys: make([]string, frame)}}}}, func() any { return &Batch{} }},
		{"a read reply of empty values", &Batch{Msgs: []Msg{{Body: &messages.ReadReply{Values: make([]messages.KeyValue, frame/2)}}}}, func() any { return &Batch{} }},
	}
	for _, c := range cases {
		var e Encoder
		c.v.EncodeWire(&e)
		buf := e.Bytes()
		var err error
		got := allocated(func() {
			err = decodeValue(NewDecoder(buf, lim), c.new())
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if bound := uint64(expansion*len(buf) + 4096); got > bound {
			t.Errorf("%s: a frame of %d bytes allocated %d, more than %d × its size", c.name, len(buf), got, expansion)
		}
		t.Logf("%s: %d bytes → %d allocated (%.1f×)", c.name, len(buf), got, float64(got)/float64(len(buf)))
	}
}

// A count that claims more than the limit, or more than the frame can
// hold, is refused before anything of that size is allocated.
func TestHugeClaimedCountRefusedBeforeAllocating(t *testing.T) {
	header := func() *Encoder {
		e := &Encoder{}
		e.Uvarint(1)    // cluster
		e.Varint(1)     // from
		e.String("a:1") // from addr
		e.Varint(0)     // to
		e.Varint(1)     // session
		e.Uvarint(1)    // seq
		return e
	}
	cases := []struct {
		name  string
		count uint64
		want  string
	}{
		{"over the limit", 1 << 60, "more than the limit of 8192"},
		{"within the limit, not within the frame", DefaultMaxMsgsPerBatch, "bytes left in the frame"},
	}
	for _, c := range cases {
		e := header()
		e.Uvarint(c.count)
		buf := e.Bytes()
		var err error
		got := allocated(func() { err = decodeValue(NewDecoder(buf, Limits{}), &Batch{}) })
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "MaxMsgsPerBatch") {
			t.Errorf("%s: %v, want an error naming MaxMsgsPerBatch and %q", c.name, err, c.want)
		}
		if got > 16<<10 {
			t.Errorf("%s: refusing a count of %d allocated %d bytes", c.name, c.count, got)
		}
	}
	// The same through a node: the call is refused with the limit named,
	// and the connection stays usable (the frame was read whole).
	nodes := startCluster(t, 2)
	c, err := dialCodec(nodes[1].addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := net.Dial("tcp", nodes[1].addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := rpc.NewClientWithCodec(&rawClientCodec{clientCodec: NewClientCodec(conn, Limits{}).(*clientCodec)})
	defer raw.Close()
	e := header()
	e.Uvarint(1 << 40)
	var ack Ack
	err = raw.Call("Bridge.Deliver", rawBody(e.Bytes()), &ack)
	var se rpc.ServerError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "MaxMsgsPerBatch") {
		t.Errorf("a batch claiming 2^40 messages: %v, want a refusal naming MaxMsgsPerBatch", err)
	}
	err = raw.Call("Bridge.Deliver", &Batch{From: 7}, &ack)
	if err == nil || !strings.Contains(err.Error(), "from node 7") {
		t.Errorf("the next call on the same connection: %v, want the bridge's own refusal", err)
	}
}

// rawBody is a request body written as given, for hostile frames.
type rawBody []byte

// rawClientCodec is a client codec that writes rawBody as it is.
type rawClientCodec struct{ *clientCodec }

func (c *rawClientCodec) WriteRequest(r *rpc.Request, v any) error {
	raw, ok := v.(rawBody)
	if !ok {
		return c.clientCodec.WriteRequest(r, v)
	}
	e := c.out.begin()
	e.Uvarint(r.Seq)
	e.String(r.ServiceMethod)
	e.buf = append(e.buf, raw...)
	return c.out.finish()
}

// pipeServer serves srv over one end of a pipe with the wire's server
// codec; the other end is returned for the test to write to.
func pipeServer(t *testing.T, srv *rpc.Server, lim Limits, log *RefusalLog) (net.Conn, *serverCodec, <-chan struct{}) {
	t.Helper()
	a, b := net.Pipe()
	codec := NewServerCodec(a, lim, log).(*serverCodec)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeCodec(codec)
	}()
	t.Cleanup(func() {
		b.Close()
		<-done
	})
	return b, codec, done
}

func frameHeaderBytes(n uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, n)
}

// A frame announced larger than MaxFrame closes the connection, logs one
// line, and allocates nothing of its size.
func TestOversizedFrameRefusedWithoutAllocation(t *testing.T) {
	logger, logs := newBufferLogger(hclog.Warn)
	refusals := NewRefusalLog(logger, time.Second)
	now := time.Unix(1000, 0)
	refusals.now = func() time.Time { return now } // a stopped clock: however slow the machine, one line
	for _, n := range []uint32{DefaultMaxFrame + 1, 1<<32 - 1} {
		got := allocated(func() {
			conn, _, done := pipeServer(t, rpc.NewServer(), Limits{}, refusals)
			if _, err := conn.Write(frameHeaderBytes(n)); err != nil {
				t.Fatal(err)
			}
			<-done // the server closed the connection
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Error("the connection is still open")
			}
		})
		if got > 256<<10 {
			t.Errorf("refusing a frame of %d bytes allocated %d", n, got)
		}
	}
	if lines := strings.Count(logs.String(), "announced a frame larger than MaxFrame"); lines != 1 {
		t.Errorf("%d log lines for two refusals within a second, want 1:\n%s", lines, logs.String())
	}
}

// A connection that announces a large frame and sends only a little of it
// holds a buffer the size of what arrived, not of what was announced.
func TestAnnouncedFrameThenSilenceHoldsNoLargeBuffer(t *testing.T) {
	const conns = 20
	var ends []net.Conn
	got := allocated(func() {
		for range conns {
			conn, _, _ := pipeServer(t, rpc.NewServer(), Limits{}, nil)
			if _, err := conn.Write(frameHeaderBytes(DefaultMaxFrame)); err != nil {
				t.Fatal(err)
			}
			// net.Pipe's Write returns once the server has read it all.
			if _, err := conn.Write(make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
			ends = append(ends, conn)
		}
	})
	if per := got / conns; per > 64<<10 {
		t.Errorf("each silent connection that announced %d bytes cost %d bytes", DefaultMaxFrame, per)
	}
	t.Logf("%d silent connections: %d bytes in all", conns, got)
}

// backPressure is a service whose calls wait until released.
type backPressure struct {
	mu      sync.Mutex
	now     int
	most    int
	entered int
	release chan struct{}
}

func (s *backPressure) Wait(args *Ack, reply *Ack) error {
	s.mu.Lock()
	s.now++
	s.entered++
	s.most = max(s.most, s.now)
	s.mu.Unlock()
	<-s.release
	s.mu.Lock()
	s.now--
	s.mu.Unlock()
	reply.Accepted = args.Accepted
	return nil
}

// A connection's next frame is not read while MaxCallsPerConn of its calls
// are in flight: net/rpc would otherwise start a goroutine per call.
func TestInFlightCallsBoundedPerConnection(t *testing.T) {
	checkNoLeaks(t)
	svc := &backPressure{release: make(chan struct{})}
	srv := rpc.NewServer()
	if err := srv.RegisterName("BP", svc); err != nil {
		t.Fatal(err)
	}
	lim := Limits{MaxCallsPerConn: 2}
	conn, codec, _ := pipeServer(t, srv, lim, nil)
	client := rpc.NewClientWithCodec(NewClientCodec(conn, lim))
	defer client.Close()
	const calls = 5
	done := make(chan *rpc.Call, calls)
	// Each call from its own goroutine: a call the server does not read
	// blocks its writer (that is the back-pressure).
	for i := range calls {
		go client.Go("BP.Wait", &Ack{Accepted: i}, &Ack{}, done)
	}
	waitFor(t, "two calls to be served and the reader to wait for room", func() bool {
		svc.mu.Lock()
		entered := svc.entered
		svc.mu.Unlock()
		codec.budget.mu.Lock()
		waiting := codec.budget.waiting
		codec.budget.mu.Unlock()
		return entered == 2 && waiting == 1
	})
	close(svc.release)
	for range calls {
		if c := <-done; c.Error != nil {
			t.Fatal(c.Error)
		}
	}
	if svc.most > 2 {
		t.Errorf("%d calls of one connection ran at once, want at most MaxCallsPerConn = 2", svc.most)
	}
}

// bigReply answers with a reply larger than a frame may be.
type bigReply struct{}

func (bigReply) Get(args *Ack, reply *Batch) error {
	reply.FromAddr = strings.Repeat("x", args.Accepted)
	return nil
}

// A reply too large for a frame is answered with an error saying so, and
// the connection stays usable.
func TestReplyLargerThanAFrameBecomesAnError(t *testing.T) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Big", bigReply{}); err != nil {
		t.Fatal(err)
	}
	lim := Limits{MaxOpsPerTx: 1, MaxParticipants: 1, MaxKeysPerRead: 1, MaxFrame: 8 << 10}
	conn, _, _ := pipeServer(t, srv, lim, nil)
	client := rpc.NewClientWithCodec(NewClientCodec(conn, lim))
	defer client.Close()
	var got Batch
	err := client.Call("Big.Get", &Ack{Accepted: 9 << 10}, &got)
	if err == nil || !strings.Contains(err.Error(), "exceeds MaxFrame = 8192") {
		t.Errorf("a reply of 9 KiB under an 8 KiB frame: %v", err)
	}
	if err := client.Call("Big.Get", &Ack{Accepted: 10}, &got); err != nil || len(got.FromAddr) != 10 {
		t.Errorf("the next call: %v, %d bytes", err, len(got.FromAddr))
	}
}

// A flood of refusals logs at most one line per reason per interval, with
// the count of those not logged.
func TestRefusalFloodIsRateLimited(t *testing.T) {
	logger, logs := newBufferLogger(hclog.Warn)
	r := NewRefusalLog(logger, time.Second)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	for range 10_000 {
		r.refuse("late-batch", "refused a late batch")
	}
	r.refuse("other", "another reason")
	if n := strings.Count(logs.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 10,000 refusals of one reason and one of another, want 2:\n%s", n, logs.String())
	}
	now = now.Add(time.Second)
	r.refuse("late-batch", "refused a late batch")
	if !strings.Contains(logs.String(), "suppressed_since_last=9999") {
		t.Errorf("the next line does not count the suppressed refusals:\n%s", logs.String())
	}

	// Through a node: a flood of batches from outside the cluster, each
	// with a long hostile address, logs one short line.
	logger, logs = newBufferLogger(hclog.Warn)
	ln := listenLoopback(t)
	recv := startNode(t, 0, []string{ln.Addr().String(), reserveAddr(t)}, ln, func(c *Config) { c.Logger = logger }, nil)
	recv.bridge.refusals.now = func() time.Time { return now } // a stopped clock: one line, however slow the machine
	c, err := dialCodec(recv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hostile := strings.Repeat("x", 10_000) + "\n[WARN] forged line"
	for range 200 {
		var ack Ack
		if err := c.Call("Bridge.Deliver", &Batch{From: 1, FromAddr: hostile}, &ack); err == nil {
			t.Fatal("a batch from outside the cluster was accepted")
		} else if len(err.Error()) > 1000 {
			t.Fatalf("the refusal echoes %d bytes back", len(err.Error()))
		}
	}
	out := logs.String()
	if n := strings.Count(out, "refused batch from outside this cluster"); n != 1 {
		t.Errorf("%d lines for 200 refusals, want 1:\n%.2000s", n, out)
	}
	if len(out) > 1000 || strings.Contains(out, "\n[WARN] forged") {
		t.Errorf("the log echoes the sender's text (%d bytes):\n%.2000s", len(out), out)
	}
}

// FuzzDecode: no input makes decoding panic or allocate more than the
// bound; whatever decodes re-encodes to something that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, s := range samples() {
		var e Encoder
		(&Batch{Msgs: []Msg{{To: "p", Body: s}}}).EncodeWire(&e)
		f.Add(e.Bytes())
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Batch
		var err error
		got := allocated(func() { err = decodeValue(NewDecoder(data, Limits{}), &b) })
		if bound := uint64(expansion*len(data) + 8192); got > bound {
			t.Fatalf("%d bytes allocated %d (bound %d)", len(data), got, bound)
		}
		if err != nil {
			return
		}
		var e Encoder
		b.EncodeWire(&e)
		var again Batch
		if err := decodeValue(NewDecoder(e.Bytes(), Limits{}), &again); err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(b, again) {
			t.Fatalf("round trip changed the batch:\n%+v\n%+v", b, again)
		}
	})
}

func typicalBatch() *Batch {
	b := &Batch{Cluster: 12345, From: 1, FromAddr: "127.0.0.1:7001", To: 0, Session: time.Now().UnixNano(), Seq: 42}
	for i := range 200 {
		tx := messages.TxID{Node: 1, Incarnation: 3, Seq: uint64(1000 + i)}
		var body any
		switch i % 4 {
		case 0:
			body = &messages.Prepare{Tx: tx, Ops: []messages.Op{messages.Add(fmt.Sprintf("acct%d", i), -5)}, Participants: []int32{0, 1}, Begun: time.Now().UnixNano()}
		case 1:
			body = &messages.Vote{Tx: tx, From: 1, Kind: messages.VoteYes}
		case 2:
			body = &messages.Commit{Tx: tx, From: 1}
		default:
			body = &messages.Ack{Tx: tx, From: 1}
		}
		b.Msgs = append(b.Msgs, Msg{To: "participant", SenderAddr: "127.0.0.1:7001", SenderID: "coordinator/1.3.1000", Body: body})
	}
	return b
}

// BenchmarkWire compares the wire's encoding of a typical batch (200
// protocol messages) with gob's, encode and decode.
func BenchmarkWire(b *testing.B) {
	batch := typicalBatch()
	b.Run("binary/encode", func(b *testing.B) {
		var e Encoder
		for b.Loop() {
			e.buf = e.buf[:0]
			batch.EncodeWire(&e)
		}
		b.SetBytes(int64(len(e.buf)))
	})
	b.Run("binary/decode", func(b *testing.B) {
		var e Encoder
		batch.EncodeWire(&e)
		b.SetBytes(int64(len(e.buf)))
		for b.Loop() {
			var out Batch
			if err := decodeValue(NewDecoder(e.buf, Limits{}), &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	gobRegister()
	b.Run("gob/encode", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := gob.NewEncoder(&buf).Encode(batch); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(buf.Len()))
	})
	b.Run("gob/decode", func(b *testing.B) {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(batch); err != nil {
			b.Fatal(err)
		}
		raw := buf.Bytes()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var out Batch
			if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var gobOnce sync.Once

// gobRegister registers the wire messages with gob, for the comparison only.
func gobRegister() {
	gobOnce.Do(func() {
		for _, m := range wireMessages {
			gob.Register(m)
		}
	})
}

// Limits' defaults are valid; a limit that would refuse legal traffic, or
// a negative one, is refused with its name.
func TestLimitsValidate(t *testing.T) {
	if err := (Limits{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		l    Limits
		want string
	}{
		{Limits{MaxFrame: -1}, "MaxFrame = -1: must be positive"},
		{Limits{MaxFrame: 64 << 10}, "a transaction of MaxOpsPerTx = 1024 operations"},
		{Limits{MaxFrame: 4 << 20, MaxConnBytes: 2 << 20}, "MaxConnBytes = 2097152 is less than MaxFrame"},
		{Limits{MaxCallsPerConn: -3}, "MaxCallsPerConn = -3"},
	}
	for _, c := range cases {
		if err := c.l.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.l, err, c.want)
		}
	}
	_, err := New(actor.NewActorSystem(quietActors), Config{Members: []string{"127.0.0.1:1", "127.0.0.1:2"}, BatchLimit: 100, Limits: Limits{MaxMsgsPerBatch: 10}})
	if err == nil || !strings.Contains(err.Error(), "BatchLimit = 100 is more than Limits.MaxMsgsPerBatch = 10") {
		t.Errorf("a batch limit its peers would refuse: %v", err)
	}
}

// The sender cuts its queue into batches that fit the peer's frame, in
// order; a message too large for any frame is dropped, not sent to make
// the peer close the connection.
func TestBridgeSplitsBatchesToFitFrames(t *testing.T) {
	checkNoLeaks(t)
	small := Limits{MaxFrame: 8 << 10, MaxOpsPerTx: 1, MaxParticipants: 1, MaxKeysPerRead: 1}
	lnA, lnB := listenLoopback(t), listenLoopback(t)
	members := []string{lnA.Addr().String(), lnB.Addr().String()}
	a := startNode(t, 0, members, lnA, func(c *Config) { c.Limits = small }, nil)
	b := startNode(t, 1, members, lnB, func(c *Config) { c.Limits = small }, nil)
	const n = 300
	got := spawnProbe(t, b.sys, "recorder", n+16)
	target := actor.NewPID(b.addr, "recorder")
	reason := strings.Repeat("r", 200) // 300 votes: about 70 KiB, some 9 frames
	type start struct{}
	sender := spawnNamed(t, a.sys, "sender", func(ctx actor.Context) {
		if _, ok := ctx.Message().(*start); ok {
			for i := uint64(1); i <= n; i++ {
				if i == n/2 {
					ctx.Send(target, &messages.Vote{Tx: messages.TxID{Node: 0, Incarnation: 1, Seq: 0}, From: 0, Reason: strings.Repeat("x", 9<<10)})
				}
				ctx.Send(target, &messages.Vote{Tx: messages.TxID{Node: 0, Incarnation: 1, Seq: i}, From: 0, Reason: reason})
			}
		}
	})
	a.sys.Root.Send(sender, &start{})
	for i := uint64(1); i <= n; i++ {
		e := receive(t, got, "a vote")
		if v := e.msg.(*messages.Vote); v.Tx.Seq != i {
			t.Fatalf("vote %d arrived as number %d", v.Tx.Seq, i)
		}
	}
	waitFor(t, "the last batch's answer", func() bool { return a.bridge.Stats().SentMessages == n })
	st := a.bridge.Stats()
	if st.SentBatches < 9 || st.DroppedMessages != 1 || st.DroppedBatches != 0 {
		t.Errorf("sender stats %+v: want the votes in 9 or more batches, the oversized one dropped and no batch refused", st)
	}
}

// A batch whose claimed sender is not the connection's certificate stops
// decoding at its header: none of its messages is decoded. Shown with
// messages made of garbage: decoded, they would fail with another error.
func TestImpostorBatchRefusedBeforeItsMessagesAreDecoded(t *testing.T) {
	header := &Batch{Cluster: 7, From: 2, FromAddr: "127.0.0.1:2", To: 0, Session: 1, Seq: 1}
	var h Encoder
	header.EncodeWire(&h)
	batch := *header
	for i := range 100 {
		batch.Msgs = append(batch.Msgs, Msg{To: "participant", Body: vote(uint64(i + 1))})
	}
	var e Encoder
	batch.EncodeWire(&e)
	frame := e.Bytes()
	// The count of messages is the header's last byte (0 there, 100 here):
	// everything after it is the messages. Make it garbage.
	for i := len(h.Bytes()) + 1; i < len(frame); i++ {
		frame[i] = 0xff
	}
	decode := func(sender int32) (*Batch, error) {
		d := NewDecoder(frame, Limits{})
		d.sender = &sender
		var got Batch
		got.DecodeWire(d)
		return &got, d.Err()
	}
	got, err := decode(1)
	var imp *ImpostorError
	if !errors.As(err, &imp) || imp.Conn != 1 || imp.Claimed != 2 || got.Msgs != nil {
		t.Fatalf("node 2's batch on node 1's connection: %v (%d messages), want an ImpostorError and none decoded", err, len(got.Msgs))
	}
	// On node 2's own connection the messages are decoded, and the garbage
	// is found.
	if _, err := decode(2); err == nil || errors.As(err, &imp) {
		t.Fatalf("node 2's own batch of garbage messages: %v, want a decoding error", err)
	}
}
