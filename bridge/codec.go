package bridge

// The net/rpc codecs. Every request and every response is one frame:
//
//	frame    = length payload          length: 4 bytes, big-endian, of payload
//	request  = seq method body         seq: uvarint, method: string ("Bridge.Deliver")
//	response = seq error body          error: string ("" for success; then no body)
//
// with the body in the encoding of encoding.go. The length is checked
// against Limits.MaxFrame before anything is buffered, and the frame's
// buffer grows only as its bytes arrive, so a length announced and never
// sent costs nothing. A server codec reads no further frame while its
// connection has MaxCallsPerConn calls or MaxConnBytes request bytes in
// flight (read and not yet answered): that is the connection's back-pressure.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/rpc"
	"reflect"
	"slices"
	"sync"
)

const (
	frameHeader = 4
	// readChunk is the first allocation for a frame's bytes; the buffer
	// doubles from there as bytes arrive.
	readChunk = 4 << 10
	// keepBuffer: a write buffer larger than this is dropped after use, so
	// an idle connection does not keep its largest frame's buffer.
	keepBuffer = 64 << 10
	maxMethod  = 64
)

// FrameTooLargeError is a frame refused for its announced length.
type FrameTooLargeError struct{ Len, Max int }

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("frame of %d bytes announced: more than MaxFrame = %d", e.Len, e.Max)
}

// frameReader reads length-prefixed frames.
type frameReader struct {
	r   *bufio.Reader
	max int
}

// length reads a frame's length and checks it.
func (f *frameReader) length() (int, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if uint64(n) > uint64(f.max) {
		return 0, &FrameTooLargeError{Len: int(n), Max: f.max}
	}
	return int(n), nil
}

// payload reads n bytes, growing the buffer only as they arrive.
func (f *frameReader) payload(n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), n-len(buf)))
		}
		m, err := f.r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// frameWriter encodes and writes frames; net/rpc serialises its calls.
type frameWriter struct {
	w   io.Writer
	max int
	enc Encoder
}

func (f *frameWriter) begin() *Encoder {
	f.enc.buf = append(f.enc.buf[:0], 0, 0, 0, 0)
	return &f.enc
}

// finish writes the frame begun, refusing one larger than MaxFrame (the
// peer would refuse it and close the connection).
func (f *frameWriter) finish() error {
	defer func() {
		if cap(f.enc.buf) > keepBuffer {
			f.enc.buf = nil
		}
	}()
	n := len(f.enc.buf) - frameHeader
	if n > f.max {
		return &FrameTooLargeError{Len: n, Max: f.max}
	}
	binary.BigEndian.PutUint32(f.enc.buf, uint32(n))
	_, err := f.w.Write(f.enc.buf)
	return err
}

// encodeValue writes an rpc argument or reply.
func encodeValue(e *Encoder, v any) error {
	if wv, ok := v.(WireValue); ok {
		wv.EncodeWire(e)
		return nil
	}
	if c := bodyByType[reflect.TypeOf(v)]; c != nil && !reflect.ValueOf(v).IsNil() {
		c.enc(e, v)
		return nil
	}
	return fmt.Errorf("bridge: type %T has no wire encoding", v)
}

// decodeValue reads an rpc argument or reply into v (a pointer) and checks
// the frame held nothing more.
func decodeValue(d *Decoder, v any) error {
	if wv, ok := v.(WireValue); ok {
		wv.DecodeWire(d)
	} else if c := bodyByType[reflect.TypeOf(v)]; c != nil {
		got := c.dec(d)
		if d.err == nil {
			reflect.ValueOf(v).Elem().Set(reflect.ValueOf(got).Elem())
		}
	} else {
		return fmt.Errorf("bridge: type %T has no wire encoding", v)
	}
	if d.err == nil && d.Remaining() > 0 {
		d.Fail(fmt.Errorf("%d bytes left over after the body", d.Remaining()))
	}
	return d.err
}

// budget is one connection's calls and request bytes in flight.
type budget struct {
	mu      sync.Mutex
	cond    sync.Cond
	calls   int
	bytes   int
	waiting int              // the reader is waiting for room (a test watches this)
	held    map[uint64][]int // request seq → frame lengths held (a client may reuse a seq)
}

func (b *budget) acquire(lim *Limits, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.calls >= lim.MaxCallsPerConn || b.bytes+n > lim.MaxConnBytes {
		b.waiting++
		b.cond.Wait()
		b.waiting--
	}
	b.calls++
	b.bytes += n
}

func (b *budget) hold(seq uint64, n int) {
	b.mu.Lock()
	b.held[seq] = append(b.held[seq], n)
	b.mu.Unlock()
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.calls--
	b.bytes -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// releaseSeq releases what the call answered under seq holds.
func (b *budget) releaseSeq(seq uint64) {
	b.mu.Lock()
	ns := b.held[seq]
	if len(ns) == 0 {
		b.mu.Unlock()
		return
	}
	n := ns[len(ns)-1]
	if len(ns) == 1 {
		delete(b.held, seq)
	} else {
		b.held[seq] = ns[:len(ns)-1]
	}
	b.mu.Unlock()
	b.release(n)
}

type serverCodec struct {
	c    io.ReadWriteCloser
	lim  Limits
	log  *RefusalLog
	in   frameReader
	body *Decoder // the current request's body, between header and body reads

	// sender, if set, is the connection's authenticated node (see
	// Decoder.sender); impostor is told of each batch refused for claiming
	// another.
	sender   *int32
	impostor func(*ImpostorError) error

	wmu sync.Mutex // net/rpc serialises responses already; this guards against misuse
	out frameWriter

	budget budget
}

// NewServerCodec serves net/rpc over c with the wire's framing and
// encoding under lim (zero fields take their defaults). Refusals (a frame
// too long, a request that does not decode) are logged through log, which
// may be nil.
func NewServerCodec(c io.ReadWriteCloser, lim Limits, log *RefusalLog) rpc.ServerCodec {
	lim = lim.WithDefaults()
	s := &serverCodec{
		c: c, lim: lim, log: log,
		in:  frameReader{r: bufio.NewReaderSize(c, readChunk), max: lim.MaxFrame},
		out: frameWriter{w: c, max: lim.MaxFrame},
	}
	s.budget.cond.L = &s.budget.mu
	s.budget.held = make(map[uint64][]int)
	return s
}

func (s *serverCodec) ReadRequestHeader(r *rpc.Request) error {
	s.body = nil
	n, err := s.in.length()
	if err != nil {
		var big *FrameTooLargeError
		if errors.As(err, &big) {
			s.log.refuse("frame-too-large", "closed a connection that announced a frame larger than MaxFrame", "len", big.Len, "max", big.Max)
		}
		return err
	}
	// Wait for room before reading: while the connection's earlier calls
	// are being served, its bytes stay in the kernel's buffers and then in
	// the sender's.
	s.budget.acquire(&s.lim, n)
	buf, err := s.in.payload(n)
	if err != nil {
		s.budget.release(n)
		return err
	}
	d := NewDecoder(buf, s.lim)
	d.sender = s.sender
	r.Seq = d.Uvarint()
	method := d.String()
	if d.err == nil && len(method) > maxMethod {
		d.Fail(fmt.Errorf("method name of %d bytes", len(method)))
	}
	if err := d.Err(); err != nil {
		s.budget.release(n)
		s.log.refuse("bad-header", "closed a connection whose request header does not decode", "error", err)
		return fmt.Errorf("request header: %w", err)
	}
	r.ServiceMethod = method
	s.body = d
	s.budget.hold(r.Seq, n)
	return nil
}

func (s *serverCodec) ReadRequestBody(v any) error {
	d := s.body
	s.body = nil
	if v == nil || d == nil { // net/rpc discards the body of a request it cannot serve
		return nil
	}
	if err := decodeValue(d, v); err != nil {
		var imp *ImpostorError
		if errors.As(err, &imp) && s.impostor != nil {
			return s.impostor(imp)
		}
		// The frame was read whole, so the connection stays usable; net/rpc
		// answers the call with this error.
		s.log.refuse("bad-body", "refused a request that does not decode", "type", fmt.Sprintf("%T", v), "error", err)
		return fmt.Errorf("refused: %w", err)
	}
	return nil
}

func (s *serverCodec) WriteResponse(r *rpc.Response, v any) error {
	defer s.budget.releaseSeq(r.Seq)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err := s.writeResponse(r.Seq, r.Error, v)
	var big *FrameTooLargeError
	if errors.As(err, &big) {
		// A reply too large for the client to accept: tell it so instead.
		err = s.writeResponse(r.Seq, fmt.Sprintf("reply of %d bytes exceeds MaxFrame = %d", big.Len, big.Max), nil)
	}
	return err
}

func (s *serverCodec) writeResponse(seq uint64, errMsg string, v any) error {
	e := s.out.begin()
	e.Uvarint(seq)
	e.String(errMsg)
	if errMsg == "" {
		if err := encodeValue(e, v); err != nil {
			e = s.out.begin()
			e.Uvarint(seq)
			e.String(err.Error())
		}
	}
	return s.out.finish()
}

func (s *serverCodec) Close() error { return s.c.Close() }

type clientCodec struct {
	c    io.ReadWriteCloser
	lim  Limits
	in   frameReader
	body *Decoder
	out  frameWriter
}

// NewClientCodec makes net/rpc calls over c with the wire's framing and
// encoding; replies are bounded by lim like requests are on the server.
func NewClientCodec(c io.ReadWriteCloser, lim Limits) rpc.ClientCodec {
	lim = lim.WithDefaults()
	return &clientCodec{
		c: c, lim: lim,
		in:  frameReader{r: bufio.NewReaderSize(c, readChunk), max: lim.MaxFrame},
		out: frameWriter{w: c, max: lim.MaxFrame},
	}
}

func (c *clientCodec) WriteRequest(r *rpc.Request, v any) error {
	e := c.out.begin()
	e.Uvarint(r.Seq)
	e.String(r.ServiceMethod)
	if err := encodeValue(e, v); err != nil {
		return err
	}
	return c.out.finish()
}

func (c *clientCodec) ReadResponseHeader(r *rpc.Response) error {
	c.body = nil
	n, err := c.in.length()
	if err != nil {
		return err
	}
	buf, err := c.in.payload(n)
	if err != nil {
		return err
	}
	d := NewDecoder(buf, c.lim)
	r.Seq = d.Uvarint()
	r.Error = d.String()
	if err := d.Err(); err != nil {
		return fmt.Errorf("response header: %w", err)
	}
	c.body = d
	return nil
}

func (c *clientCodec) ReadResponseBody(v any) error {
	d := c.body
	c.body = nil
	if v == nil || d == nil {
		return nil
	}
	return decodeValue(d, v)
}

func (c *clientCodec) Close() error { return c.c.Close() }
