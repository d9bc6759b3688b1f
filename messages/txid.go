package messages

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// TxID names a transaction. It is unique across restarts of its coordinator:
// Incarnation is taken from the coordinator's log at start (one more than any
// incarnation recorded before), Seq counts transactions within it.
//
// The coordinator's node id is part of the id, so any node can tell which
// coordinator to ask about a transaction it is in doubt about.
type TxID struct {
	Node        int32
	Incarnation uint32
	Seq         uint64
}

// String renders the id as node.incarnation.seq, e.g. "2.5.17".
func (t TxID) String() string {
	return fmt.Sprintf("%d.%d.%d", t.Node, t.Incarnation, t.Seq)
}

// IsZero reports whether t is the zero id, which no transaction has.
func (t TxID) IsZero() bool { return t == TxID{} }

// Compare orders ids by node, then incarnation, then sequence (-1, 0, +1),
// so that lists of transactions read in the order they were begun per node.
func (t TxID) Compare(u TxID) int {
	if c := cmp.Compare(t.Node, u.Node); c != 0 {
		return c
	}
	if c := cmp.Compare(t.Incarnation, u.Incarnation); c != 0 {
		return c
	}
	return cmp.Compare(t.Seq, u.Seq)
}

// Below reports whether t lies below mark, a participant's mark for a
// coordinator (see RecMark): of the same coordinator node, and of an
// earlier incarnation, or of the same one with a lower Seq.
func (t TxID) Below(mark TxID) bool {
	if t.Node != mark.Node {
		return false
	}
	return t.Incarnation < mark.Incarnation || (t.Incarnation == mark.Incarnation && t.Seq < mark.Seq)
}

// BelowInIncarnation reports whether t lies below mark within mark's own
// incarnation: same coordinator node and incarnation, lower Seq. An
// acceptor forgets by this rule, never by an earlier incarnation (see
// persistence.ForgetAccepted).
func (t TxID) BelowInIncarnation(mark TxID) bool {
	return t.Node == mark.Node && t.Incarnation == mark.Incarnation && t.Seq < mark.Seq
}

// ParseTxID reads the form produced by String.
func ParseTxID(s string) (TxID, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return TxID{}, fmt.Errorf("transaction id %q: want node.incarnation.seq", s)
	}
	node, err := strconv.ParseInt(parts[0], 10, 32)
	if err != nil || node < 0 {
		return TxID{}, fmt.Errorf("transaction id %q: bad node %q", s, parts[0])
	}
	inc, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || inc == 0 {
		return TxID{}, fmt.Errorf("transaction id %q: bad incarnation %q", s, parts[1])
	}
	seq, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil || seq == 0 {
		return TxID{}, fmt.Errorf("transaction id %q: bad sequence %q", s, parts[2])
	}
	return TxID{Node: int32(node), Incarnation: uint32(inc), Seq: seq}, nil
}
