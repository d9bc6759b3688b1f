package persistence

import (
	"cmp"
	"encoding/binary"
	"slices"

	"twopc/messages"
)

// State is what the records of a log add up to (the fold), used for
// recovery and snapshots.
//
// Empty slices are always held as nil, whichever path built the State
// (Apply, Clone, a snapshot), so two folds of the same records compare equal
// with reflect.DeepEqual.
type State struct {
	Incarnation uint32                            // highest RecBoot incarnation seen
	KV          map[string]int64                  // committed values (missing key reads 0)
	InDoubt     map[messages.TxID]messages.Record // participant: the RecPrepared record of a transaction not yet committed or aborted
	Pending     map[messages.TxID][]int32         // coordinator: participants of a commit decision not yet ended
	// Heuristic: participant: the operator's heuristic decisions (true: a
	// forced commit, false: a forced abort), from RecHeuristic records.
	// Never dropped: a coordinator's Commit may come back to one at any time.
	Heuristic map[messages.TxID]bool
}

// NewState returns the fold of an empty log.
func NewState() *State {
	return &State{
		KV:        map[string]int64{},
		InDoubt:   map[messages.TxID]messages.Record{},
		Pending:   map[messages.TxID][]int32{},
		Heuristic: map[messages.TxID]bool{},
	}
}

// Apply folds one record into s.
func (s *State) Apply(r messages.Record) {
	s.ensureMaps()
	switch r.Kind {
	case messages.RecBoot:
		s.Incarnation = max(s.Incarnation, r.Incarnation)
	case messages.RecPrepared:
		// Copied because the record usually arrived in a message that its
		// sender still holds.
		s.InDoubt[r.Tx] = cloneRecord(r)
	case messages.RecCommitted:
		p, ok := s.InDoubt[r.Tx]
		if !ok {
			return // a repeated COMMITTED: its ops are in KV already
		}
		for _, o := range p.Ops {
			messages.Apply(s.KV, o)
		}
		delete(s.InDoubt, r.Tx)
	case messages.RecAborted:
		delete(s.InDoubt, r.Tx)
	case messages.RecCommitDecision:
		s.Pending[r.Tx] = cloneInts(r.Participants)
	case messages.RecEnd:
		delete(s.Pending, r.Tx)
	case messages.RecHeuristic:
		// The transaction stays in InDoubt until its COMMITTED or ABORTED:
		// a participant recovering one finishes the forced decision.
		s.Heuristic[r.Tx] = r.Decision == messages.DecisionCommit
	}
}

// ensureMaps lets a zero State be used like NewState's.
func (s *State) ensureMaps() {
	if s.KV == nil {
		s.KV = map[string]int64{}
	}
	if s.InDoubt == nil {
		s.InDoubt = map[messages.TxID]messages.Record{}
	}
	if s.Pending == nil {
		s.Pending = map[messages.TxID][]int32{}
	}
	if s.Heuristic == nil {
		s.Heuristic = map[messages.TxID]bool{}
	}
}

// Clone returns a deep copy that shares nothing with s.
func (s *State) Clone() *State {
	c := &State{
		Incarnation: s.Incarnation,
		KV:          make(map[string]int64, len(s.KV)),
		InDoubt:     make(map[messages.TxID]messages.Record, len(s.InDoubt)),
		Pending:     make(map[messages.TxID][]int32, len(s.Pending)),
		Heuristic:   make(map[messages.TxID]bool, len(s.Heuristic)),
	}
	for tx, c2 := range s.Heuristic {
		c.Heuristic[tx] = c2
	}
	for k, v := range s.KV {
		c.KV[k] = v
	}
	for tx, r := range s.InDoubt {
		c.InDoubt[tx] = cloneRecord(r)
	}
	for tx, p := range s.Pending {
		c.Pending[tx] = cloneInts(p)
	}
	return c
}

func cloneRecord(r messages.Record) messages.Record {
	r.Participants = cloneInts(r.Participants)
	if len(r.Ops) == 0 {
		r.Ops = nil
	} else {
		r.Ops = slices.Clone(r.Ops)
	}
	return r
}

func cloneInts(p []int32) []int32 {
	if len(p) == 0 {
		return nil
	}
	return slices.Clone(p)
}

// stateVersion leads a snapshot payload, for the same reason as
// recordVersion. Version 2 adds the heuristic decisions after the pending
// commits; a version 1 snapshot (written before there were any) still loads,
// with none.
const (
	stateVersion   = 2
	stateVersionV1 = 1
)

func compareTx(a, b messages.TxID) int {
	return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Incarnation, b.Incarnation), cmp.Compare(a.Seq, b.Seq))
}

// appendState encodes s as a snapshot payload covering every segment before
// index covers. Entries are sorted so that equal states encode to equal bytes.
func appendState(dst []byte, covers uint64, s *State) []byte {
	dst = append(dst, stateVersion)
	dst = binary.AppendUvarint(dst, covers)
	dst = binary.AppendUvarint(dst, uint64(s.Incarnation))

	keys := make([]string, 0, len(s.KV))
	for k := range s.KV {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = appendString(dst, k)
		dst = binary.AppendVarint(dst, s.KV[k])
	}

	txs := make([]messages.TxID, 0, max(len(s.InDoubt), len(s.Pending)))
	for tx := range s.InDoubt {
		txs = append(txs, tx)
	}
	slices.SortFunc(txs, compareTx)
	dst = binary.AppendUvarint(dst, uint64(len(txs)))
	var rec []byte
	for _, tx := range txs {
		r := s.InDoubt[tx]
		r.Tx = tx // the map key is the truth; the decoder keys by r.Tx
		rec = appendRecord(rec[:0], &r)
		dst = binary.AppendUvarint(dst, uint64(len(rec)))
		dst = append(dst, rec...)
	}

	txs = txs[:0]
	for tx := range s.Pending {
		txs = append(txs, tx)
	}
	slices.SortFunc(txs, compareTx)
	dst = binary.AppendUvarint(dst, uint64(len(txs)))
	for _, tx := range txs {
		dst = appendTx(dst, tx)
		parts := s.Pending[tx]
		dst = binary.AppendUvarint(dst, uint64(len(parts)))
		for _, p := range parts {
			dst = binary.AppendVarint(dst, int64(p))
		}
	}

	txs = txs[:0]
	for tx := range s.Heuristic {
		txs = append(txs, tx)
	}
	slices.SortFunc(txs, compareTx)
	dst = binary.AppendUvarint(dst, uint64(len(txs)))
	for _, tx := range txs {
		d := messages.DecisionAbort
		if s.Heuristic[tx] {
			d = messages.DecisionCommit
		}
		dst = appendTx(dst, tx)
		dst = append(dst, byte(d))
	}
	return dst
}

// decodeState parses a snapshot payload.
func decodeState(b []byte) (covers uint64, s *State, err error) {
	d := decoder{b: b}
	version := d.u8("snapshot version")
	if d.err == nil && version != stateVersion && version != stateVersionV1 {
		d.failf("unknown snapshot encoding version %d", version)
	}
	covers = d.uvarint("covered segment index")
	s = NewState()
	s.Incarnation = d.uint32("incarnation")

	n := d.count("key count", 2) // key length byte + value byte
	for i := 0; i < n && d.err == nil; i++ {
		k := d.string("key")
		v := d.varint("value")
		if _, dup := s.KV[k]; dup && d.err == nil {
			d.failf("key %q appears twice", k)
		}
		s.KV[k] = v
	}

	n = d.count("in-doubt count", 1+minRecordSize)
	for i := 0; i < n && d.err == nil; i++ {
		raw := d.bytes("in-doubt record")
		if d.err != nil {
			break
		}
		r, rerr := decodeRecord(raw)
		switch {
		case rerr != nil:
			d.failf("in-doubt record %d: %v", i, rerr)
		case r.Kind != messages.RecPrepared:
			d.failf("in-doubt record %d is %v, not PREPARED", i, r.Kind)
		default:
			if _, dup := s.InDoubt[r.Tx]; dup {
				d.failf("in-doubt transaction %v appears twice", r.Tx)
			}
			s.InDoubt[r.Tx] = r
		}
	}

	n = d.count("pending count", minTxSize+1)
	for i := 0; i < n && d.err == nil; i++ {
		tx := d.tx("pending tx")
		var parts []int32
		if m := d.count("pending participant count", 1); m > 0 {
			parts = make([]int32, m)
			for j := range parts {
				parts[j] = d.int32("pending participant")
			}
		}
		if _, dup := s.Pending[tx]; dup && d.err == nil {
			d.failf("pending transaction %v appears twice", tx)
		}
		s.Pending[tx] = parts
	}

	if version >= 2 {
		n = d.count("heuristic count", minTxSize+1)
		for i := 0; i < n && d.err == nil; i++ {
			tx := d.tx("heuristic tx")
			dec := messages.Decision(d.u8("heuristic decision"))
			if d.err != nil {
				break
			}
			if dec != messages.DecisionCommit && dec != messages.DecisionAbort {
				d.failf("heuristic decision %d for %v: want commit or abort", uint8(dec), tx)
				break
			}
			if _, dup := s.Heuristic[tx]; dup {
				d.failf("heuristic transaction %v appears twice", tx)
			}
			s.Heuristic[tx] = dec == messages.DecisionCommit
		}
	}

	if d.err == nil && d.off != len(d.b) {
		d.failf("%d trailing bytes after the snapshot", len(d.b)-d.off)
	}
	if d.err != nil {
		return 0, nil, d.err
	}
	return covers, s, nil
}
