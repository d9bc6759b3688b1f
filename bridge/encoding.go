package bridge

// The wire's binary encoding. Everything is a varint, a byte or a
// length-prefixed string, read from a frame whose whole length is already
// known and buffered. A decoder never trusts a count: before it allocates
// a slice it checks the count against its limit and against the bytes left
// in the frame divided by the smallest encoding of one element, so a frame
// of n bytes can never make it allocate more than a small constant times n
// (see TestDecodeMemoryBound).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"twopc/messages"
)

// Encoder appends values to a buffer.
type Encoder struct{ buf []byte }

// Bytes returns what has been encoded.
func (e *Encoder) Bytes() []byte { return e.buf }

func (e *Encoder) Uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *Encoder) Varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *Encoder) Byte(b byte)      { e.buf = append(e.buf, b) }

func (e *Encoder) Bool(b bool) {
	if b {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
}

func (e *Encoder) String(s string) {
	e.Uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// Count writes a slice length.
func (e *Encoder) Count(n int) { e.Uvarint(uint64(n)) }

func (e *Encoder) TxID(t messages.TxID) {
	e.Varint(int64(t.Node))
	e.Uvarint(uint64(t.Incarnation))
	e.Uvarint(t.Seq)
}

func (e *Encoder) Op(o messages.Op) {
	e.String(o.Key)
	e.Byte(byte(o.Kind))
	e.Varint(o.Value)
	e.Varint(o.Floor)
	e.Bool(o.HasFloor)
}

// Ops writes a transaction's operations.
func (e *Encoder) Ops(ops []messages.Op) {
	e.Count(len(ops))
	for _, o := range ops {
		e.Op(o)
	}
}

// Strings writes a list of strings (keys).
func (e *Encoder) Strings(ss []string) {
	e.Count(len(ss))
	for _, s := range ss {
		e.String(s)
	}
}

// Minimum encoded sizes of one slice element, for Decoder.Count.
const (
	minStringSize = 1                 // an empty string is its zero length
	minOpSize     = minStringSize + 4 // key, kind, value, floor, has-floor
	minInt32Size  = 1
	minMsgSize    = 3*minStringSize + 1 // To, SenderAddr, SenderID, body tag
)

// Decoder reads values from one frame. The first error sticks: every later
// read returns a zero value, so decoding functions need not check after
// each field, only Err at the end.
type Decoder struct {
	buf []byte
	err error
	lim *Limits
	// sender, if set, is the node the connection's certificate proves:
	// a batch claiming another sender stops decoding at its header
	// (ImpostorError), before any of its messages is decoded.
	sender *int32
}

// ImpostorError: a batch claims a sender other than the node whose
// certificate its connection presented.
type ImpostorError struct {
	Self, Conn, Claimed int32
}

func (e *ImpostorError) Error() string {
	return fmt.Sprintf("node %d refuses batch: the connection is node %d's, the batch claims node %d", e.Self, e.Conn, e.Claimed)
}

// NewDecoder reads buf under lim (zero fields take their defaults).
func NewDecoder(buf []byte, lim Limits) *Decoder {
	lim = lim.WithDefaults()
	return &Decoder{buf: buf, lim: &lim}
}

// Limits are the limits this decoder checks counts against.
func (d *Decoder) Limits() Limits { return *d.lim }

// Err is the first error met, if any.
func (d *Decoder) Err() error { return d.err }

// Remaining is how many bytes are left unread.
func (d *Decoder) Remaining() int { return len(d.buf) }

// Fail records err unless an earlier error is already recorded.
func (d *Decoder) Fail(err error) {
	if d.err == nil {
		d.err = err
		d.buf = nil
	}
}

var errTruncated = errors.New("truncated")

func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.Fail(fmt.Errorf("bad varint: %w", errTruncated))
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *Decoder) Varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.Fail(fmt.Errorf("bad varint: %w", errTruncated))
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *Decoder) Int32() int32 {
	v := d.Varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.Fail(fmt.Errorf("value %d out of range for int32", v))
		return 0
	}
	return int32(v)
}

func (d *Decoder) Uint32() uint32 {
	v := d.Uvarint()
	if v > math.MaxUint32 {
		d.Fail(fmt.Errorf("value %d out of range for uint32", v))
		return 0
	}
	return uint32(v)
}

// Int reads a Go int encoded as a varint (counts that are not slice lengths).
func (d *Decoder) Int() int {
	v := d.Varint()
	if v < math.MinInt || v > math.MaxInt {
		d.Fail(fmt.Errorf("value %d out of range for int", v))
		return 0
	}
	return int(v)
}

func (d *Decoder) Byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.Fail(fmt.Errorf("byte: %w", errTruncated))
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *Decoder) Bool() bool {
	switch b := d.Byte(); b {
	case 0:
		return false
	case 1:
		return true
	default:
		d.Fail(fmt.Errorf("bool byte %d", b))
		return false
	}
}

// String reads a length-prefixed string; its length is checked against the
// bytes actually present, so a string costs at most its own bytes.
func (d *Decoder) String() string {
	n := d.Uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)) {
		d.Fail(fmt.Errorf("string of %d bytes with %d left in the frame: %w", n, len(d.buf), errTruncated))
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

// Count reads a slice length and refuses it, naming what and the limit, if
// it exceeds limit or if the frame's remaining bytes cannot hold that many
// elements of at least minSize bytes each. Only a count that passes may be
// used to allocate.
func (d *Decoder) Count(what string, limit, minSize int) int {
	n := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(limit) {
		d.Fail(fmt.Errorf("%d %s: more than the limit of %d", n, what, limit))
		return 0
	}
	if n*uint64(minSize) > uint64(len(d.buf)) {
		d.Fail(fmt.Errorf("%d %s claimed with only %d bytes left in the frame: %w", n, what, len(d.buf), errTruncated))
		return 0
	}
	return int(n)
}

func (d *Decoder) TxID() messages.TxID {
	return messages.TxID{Node: d.Int32(), Incarnation: d.Uint32(), Seq: d.Uvarint()}
}

func (d *Decoder) Op() messages.Op {
	return messages.Op{Key: d.String(), Kind: messages.OpKind(d.Byte()), Value: d.Varint(), Floor: d.Varint(), HasFloor: d.Bool()}
}

// Ops reads a transaction's operations, at most MaxOpsPerTx.
func (d *Decoder) Ops() []messages.Op {
	n := d.Count("operations per transaction (MaxOpsPerTx)", d.lim.MaxOpsPerTx, minOpSize)
	if n == 0 {
		return nil
	}
	ops := make([]messages.Op, n)
	for i := range ops {
		ops[i] = d.Op()
	}
	return ops
}

// Keys reads the keys of one read, at most MaxKeysPerRead.
func (d *Decoder) Keys() []string {
	n := d.Count("keys per read (MaxKeysPerRead)", d.lim.MaxKeysPerRead, minStringSize)
	if n == 0 {
		return nil
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = d.String()
	}
	return keys
}

// WireValue is a type that encodes itself on the wire: the arguments and
// replies of rpc services outside this package (cluster's Client service)
// implement it. DecodeWire reports problems through d.Fail; it must
// allocate slices only with counts from d.Count.
type WireValue interface {
	EncodeWire(e *Encoder)
	DecodeWire(d *Decoder)
}

// sanitize renders text from the wire for a log line or an error: quoted,
// and cut to 64 bytes, so a sender can neither forge log lines nor make
// them long.
func sanitize(s string) string { return sanitizeN(s, 64) }

// sanitizeN is sanitize with another length; for text a member wrote, such
// as a peer's error, which may be longer and is still not trusted.
func sanitizeN(s string, limit int) string {
	if len(s) > limit {
		return fmt.Sprintf("%q... (%d bytes)", s[:limit], len(s))
	}
	return fmt.Sprintf("%q", s)
}
