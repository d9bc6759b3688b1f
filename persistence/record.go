package persistence

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"twopc/messages"
)

// recordVersion leads every record payload so that a later change of the
// encoding can be told apart from damage instead of being misread.
const recordVersion = 1

// Smallest encodings, used to bound a decoded count by the bytes that are
// left: a count larger than remaining/min cannot be honest, and checking it
// up front keeps a damaged count from driving an allocation.
const (
	minTxSize     = 3                         // node, incarnation, seq: one varint byte each
	minOpSize     = 5                         // key length, kind, flags, value, floor
	minRecordSize = 2 + minTxSize + 1 + 1 + 1 // version, kind, tx, incarnation, two counts
)

// checkRecord refuses records that the decoder would reject, so that a bad
// Append is answered with an error instead of poisoning the log for replay.
func checkRecord(r *messages.Record) error {
	if r.Kind < messages.RecBoot || r.Kind > messages.LastRecordKind {
		return fmt.Errorf("unknown record kind %d", uint8(r.Kind))
	}
	switch {
	case carriesDecision(r.Kind) && r.Decision != messages.DecisionCommit && r.Decision != messages.DecisionAbort:
		return fmt.Errorf("%v record with decision %v: want commit or abort", r.Kind, r.Decision)
	case !carriesDecision(r.Kind) && r.Decision != messages.DecisionUnknown:
		return fmt.Errorf("%v record with a decision (%v): only HEURISTIC and ACCEPTED records carry one", r.Kind, r.Decision)
	case !carriesBallot(r.Kind) && r.Ballot != 0:
		return fmt.Errorf("%v record with a ballot (%d): only PROMISED and ACCEPTED records carry one", r.Kind, r.Ballot)
	}
	for i, o := range r.Ops {
		if o.Kind < messages.OpSet || o.Kind > messages.OpDelete {
			return fmt.Errorf("op %d (key %q): unknown operation kind %d", i, o.Key, uint8(o.Kind))
		}
	}
	return nil
}

// carriesDecision: the kinds whose records end with a decision byte.
func carriesDecision(k messages.RecordKind) bool {
	return k == messages.RecHeuristic || k == messages.RecAccepted
}

// carriesBallot: the kinds whose records carry a ballot (after the ops,
// before a decision).
func carriesBallot(k messages.RecordKind) bool {
	return k == messages.RecPromised || k == messages.RecAccepted
}

// appendRecord appends the payload encoding of r to dst. Every field is
// written whatever the kind, so decode(encode(r)) == r for any valid r —
// except Decision, which only a HEURISTIC record carries (checkRecord
// refuses it elsewhere): it is one byte after the ops of that kind only, so
// the records of every older kind encode as they always did.
func appendRecord(dst []byte, r *messages.Record) []byte {
	dst = append(dst, recordVersion, byte(r.Kind))
	dst = appendTx(dst, r.Tx)
	dst = binary.AppendUvarint(dst, uint64(r.Incarnation))
	dst = binary.AppendUvarint(dst, uint64(len(r.Participants)))
	for _, p := range r.Participants {
		dst = binary.AppendVarint(dst, int64(p))
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Ops)))
	for _, o := range r.Ops {
		dst = appendString(dst, o.Key)
		var flags byte
		if o.HasFloor {
			flags = 1
		}
		dst = append(dst, byte(o.Kind), flags)
		dst = binary.AppendVarint(dst, o.Value)
		dst = binary.AppendVarint(dst, o.Floor)
	}
	if carriesBallot(r.Kind) {
		dst = binary.AppendUvarint(dst, uint64(r.Ballot))
	}
	if carriesDecision(r.Kind) {
		dst = append(dst, byte(r.Decision))
	}
	return dst
}

func appendTx(dst []byte, t messages.TxID) []byte {
	dst = binary.AppendVarint(dst, int64(t.Node))
	dst = binary.AppendUvarint(dst, uint64(t.Incarnation))
	return binary.AppendUvarint(dst, t.Seq)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeRecord parses one record payload. It accepts exactly what
// appendRecord produces for a record that passes checkRecord, and nothing
// with trailing bytes.
func decodeRecord(b []byte) (messages.Record, error) {
	d := decoder{b: b}
	r := d.record()
	if d.err == nil && d.off != len(d.b) {
		d.failf("%d trailing bytes after the record", len(d.b)-d.off)
	}
	if d.err != nil {
		return messages.Record{}, d.err
	}
	return r, nil
}

// decoder reads the payload encodings. The first error sticks and every
// later read returns zero values, so callers check err once at the end.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("payload byte %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) u8(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 1 {
		d.failf("%s: payload ends early", what)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	return readVarint(d, what, binary.Uvarint)
}

func (d *decoder) varint(what string) int64 {
	return readVarint(d, what, binary.Varint)
}

// readVarint reads one varint with read (binary.Uvarint or binary.Varint),
// failing the decoder when the payload ends inside it or it overflows.
func readVarint[T int64 | uint64](d *decoder, what string, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b[d.off:])
	if n <= 0 {
		if n == 0 {
			d.failf("%s: payload ends inside a varint", what)
		} else {
			d.failf("%s: varint overflows 64 bits", what)
		}
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) int32(what string) int32 {
	v := d.varint(what)
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.failf("%s: %d does not fit in 32 bits", what, v)
		return 0
	}
	return int32(v)
}

func (d *decoder) uint32(what string) uint32 {
	v := d.uvarint(what)
	if v > math.MaxUint32 {
		d.failf("%s: %d does not fit in 32 bits", what, v)
		return 0
	}
	return uint32(v)
}

// count reads an element count and rejects one that the remaining bytes
// could not hold at minSize bytes per element.
func (d *decoder) count(what string, minSize int) int {
	n := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if limit := uint64(d.remaining() / minSize); n > limit {
		d.failf("%s: count %d exceeds what the remaining %d bytes can hold", what, n, d.remaining())
		return 0
	}
	return int(n)
}

// bytes reads a length-prefixed byte string without copying it.
func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(d.remaining()) {
		d.failf("%s: length %d exceeds the remaining %d bytes", what, n, d.remaining())
		return nil
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) string(what string) string {
	return string(d.bytes(what))
}

func (d *decoder) tx(what string) messages.TxID {
	return messages.TxID{
		Node:        d.int32(what + " node"),
		Incarnation: d.uint32(what + " incarnation"),
		Seq:         d.uvarint(what + " seq"),
	}
}

func (d *decoder) record() messages.Record {
	if v := d.u8("version"); d.err == nil && v != recordVersion {
		d.failf("unknown record encoding version %d", v)
	}
	var r messages.Record
	r.Kind = messages.RecordKind(d.u8("kind"))
	if d.err == nil && (r.Kind < messages.RecBoot || r.Kind > messages.LastRecordKind) {
		d.failf("unknown record kind %d", uint8(r.Kind))
	}
	r.Tx = d.tx("tx")
	r.Incarnation = d.uint32("incarnation")
	if n := d.count("participant count", 1); n > 0 {
		r.Participants = make([]int32, n)
		for i := range r.Participants {
			r.Participants[i] = d.int32("participant")
		}
	}
	if n := d.count("op count", minOpSize); n > 0 {
		r.Ops = make([]messages.Op, n)
		for i := range r.Ops {
			o := &r.Ops[i]
			o.Key = d.string("op key")
			o.Kind = messages.OpKind(d.u8("op kind"))
			if d.err == nil && (o.Kind < messages.OpSet || o.Kind > messages.OpDelete) {
				d.failf("op %d: unknown operation kind %d", i, uint8(o.Kind))
			}
			switch flags := d.u8("op flags"); {
			case d.err != nil:
			case flags > 1:
				d.failf("op %d: unknown flags %#x", i, flags)
			default:
				o.HasFloor = flags == 1
			}
			o.Value = d.varint("op value")
			o.Floor = d.varint("op floor")
		}
	}
	if carriesBallot(r.Kind) {
		r.Ballot = messages.Ballot(d.uint32("ballot"))
	}
	if carriesDecision(r.Kind) {
		r.Decision = messages.Decision(d.u8("decision"))
		if d.err == nil && r.Decision != messages.DecisionCommit && r.Decision != messages.DecisionAbort {
			d.failf("unknown %s decision %d", strings.ToLower(r.Kind.String()), uint8(r.Decision))
		}
	}
	if d.err != nil {
		return messages.Record{}
	}
	return r
}
