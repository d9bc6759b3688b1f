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
// with reflect.DeepEqual; so is an empty Reconciled.
type State struct {
	Incarnation uint32                            // highest RecBoot incarnation seen
	KV          map[string]int64                  // committed values (missing key reads 0)
	InDoubt     map[messages.TxID]messages.Record // participant: the RecPrepared record of a transaction not yet committed or aborted
	Pending     map[messages.TxID][]int32         // coordinator: participants of a commit decision not yet ended
	// Heuristic: participant: the operator's heuristic decisions (true: a
	// forced commit, false: a forced abort), from RecHeuristic records.
	// Never dropped: a coordinator's Commit may come back to one at any time.
	Heuristic map[messages.TxID]bool
	// Outcomes: participant: what it did with a transaction it is no
	// longer in doubt about — the kind of the record that settled it
	// (RecCommitted, RecAborted, RecRefused, RecReadOnly) — kept until the
	// coordinator's mark (Marks) passes the transaction. It is what a
	// restarted participant can vouch for: a transaction of a coordinator
	// at or above its mark with no entry here (and not in doubt) was never
	// voted on by this node.
	Outcomes map[messages.TxID]messages.RecordKind
	// Marks: participant: per coordinator node, the lowest transaction
	// (incarnation, seq) this node still vouches for (RecMark records).
	Marks map[int32]messages.TxID
	// Acceptor: acceptor (non-blocking commit): per transaction, its
	// highest promise and its accepted value (RecPromised, RecAccepted).
	// Dropped only below a mark of the same incarnation (see forgetAccepted).
	Acceptor map[messages.TxID]Acceptance
	// Reconciled: participant: the heuristic decisions (keys of Heuristic)
	// whose comparison with the coordinator's decision was reported
	// (RecReconciled records). Kept like Heuristic. Nil while empty.
	Reconciled map[messages.TxID]bool
}

// Acceptance is an acceptor's state for one transaction (messages.Acceptance).
type Acceptance = messages.Acceptance

// NewState returns the fold of an empty log.
func NewState() *State {
	return &State{
		KV:        map[string]int64{},
		InDoubt:   map[messages.TxID]messages.Record{},
		Pending:   map[messages.TxID][]int32{},
		Heuristic: map[messages.TxID]bool{},
		Outcomes:  map[messages.TxID]messages.RecordKind{},
		Marks:     map[int32]messages.TxID{},
		Acceptor:  map[messages.TxID]Acceptance{},
	}
}

// Below reports whether tx lies below mark (see messages.TxID.Below).
func Below(tx, mark messages.TxID) bool { return tx.Below(mark) }

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
		s.settle(r.Tx, r.Kind)
	case messages.RecAborted:
		if _, ok := s.InDoubt[r.Tx]; ok {
			delete(s.InDoubt, r.Tx)
			s.settle(r.Tx, r.Kind)
		}
	case messages.RecRefused, messages.RecReadOnly:
		s.settle(r.Tx, r.Kind)
	case messages.RecMark:
		old, ok := s.Marks[r.Tx.Node]
		if ok && !Below(old, r.Tx) {
			return // marks only rise
		}
		s.Marks[r.Tx.Node] = r.Tx
		for tx := range s.Outcomes {
			if Below(tx, r.Tx) {
				delete(s.Outcomes, tx)
			}
		}
		ForgetAccepted(s.Acceptor, r.Tx)
	case messages.RecPromised:
		a := s.Acceptor[r.Tx]
		a.Promised = max(a.Promised, r.Ballot)
		s.Acceptor[r.Tx] = a
	case messages.RecAccepted:
		a := s.Acceptor[r.Tx]
		a.Promised = max(a.Promised, r.Ballot)
		if a.Accepted == messages.DecisionUnknown || r.Ballot >= a.AcceptedBallot {
			a.AcceptedBallot, a.Accepted = r.Ballot, r.Decision
		}
		s.Acceptor[r.Tx] = a
	case messages.RecCommitDecision:
		s.Pending[r.Tx] = cloneInts(r.Participants)
	case messages.RecEnd:
		delete(s.Pending, r.Tx)
	case messages.RecHeuristic:
		// The transaction stays in InDoubt until its COMMITTED or ABORTED:
		// a participant recovering one finishes the forced decision.
		s.Heuristic[r.Tx] = r.Decision == messages.DecisionCommit
	case messages.RecReconciled:
		if _, ok := s.Heuristic[r.Tx]; !ok {
			return // only a heuristic decision is reconciled
		}
		if s.Reconciled == nil {
			s.Reconciled = map[messages.TxID]bool{}
		}
		s.Reconciled[r.Tx] = true
	}
}

// ForgetAccepted drops what an acceptor holds for transactions below mark
// of mark's own incarnation only. Unlike a participant's outcomes, an
// acceptor's promises and acceptances of an earlier incarnation are kept:
// that incarnation died with transactions that participants may still be
// in doubt about, and only the acceptors can tell whether commit was chosen
// for one. Below a mark of the same incarnation, every transaction has
// ended at its coordinator (every yes-voter acked, or abort was decided),
// so no proposer can still need the answer.
func ForgetAccepted(acc map[messages.TxID]Acceptance, mark messages.TxID) {
	for tx := range acc {
		if tx.BelowInIncarnation(mark) {
			delete(acc, tx)
		}
	}
}

// settle notes what this node did with tx, unless its coordinator's mark
// has passed it already (then nothing is vouched for it).
func (s *State) settle(tx messages.TxID, k messages.RecordKind) {
	if m, ok := s.Marks[tx.Node]; ok && Below(tx, m) {
		return
	}
	s.Outcomes[tx] = k
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
	if s.Outcomes == nil {
		s.Outcomes = map[messages.TxID]messages.RecordKind{}
	}
	if s.Marks == nil {
		s.Marks = map[int32]messages.TxID{}
	}
	if s.Acceptor == nil {
		s.Acceptor = map[messages.TxID]Acceptance{}
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
		Outcomes:    make(map[messages.TxID]messages.RecordKind, len(s.Outcomes)),
		Marks:       make(map[int32]messages.TxID, len(s.Marks)),
		Acceptor:    make(map[messages.TxID]Acceptance, len(s.Acceptor)),
	}
	for tx, a := range s.Acceptor {
		c.Acceptor[tx] = a
	}
	for tx, k := range s.Outcomes {
		c.Outcomes[tx] = k
	}
	for n, m := range s.Marks {
		c.Marks[n] = m
	}
	for tx, c2 := range s.Heuristic {
		c.Heuristic[tx] = c2
	}
	if len(s.Reconciled) > 0 {
		c.Reconciled = make(map[messages.TxID]bool, len(s.Reconciled))
		for tx := range s.Reconciled {
			c.Reconciled[tx] = true
		}
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
// with none. Version 3 adds the participant's outcomes and marks after the
// heuristic decisions; a version 1 or 2 snapshot loads with none (see
// Outcomes: a node upgraded from one vouches for less than it should only
// for transactions settled before the upgrade — restart it quiesced).
// Version 4 adds the acceptor's promises and acceptances after the marks;
// older snapshots were written before there were any.
// Version 5 adds the reconciled heuristic decisions after the acceptor's
// entries; an older snapshot loads with none (each is asked about, and
// reported, once more).
const (
	stateVersion   = 5
	stateVersionV4 = 4
	stateVersionV3 = 3
	stateVersionV2 = 2
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

	txs = txs[:0]
	for tx := range s.Outcomes {
		txs = append(txs, tx)
	}
	slices.SortFunc(txs, compareTx)
	dst = binary.AppendUvarint(dst, uint64(len(txs)))
	for _, tx := range txs {
		dst = appendTx(dst, tx)
		dst = append(dst, byte(s.Outcomes[tx]))
	}

	nodes := make([]int32, 0, len(s.Marks))
	for n := range s.Marks {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	dst = binary.AppendUvarint(dst, uint64(len(nodes)))
	for _, n := range nodes {
		m := s.Marks[n]
		m.Node = n // the map key is the truth
		dst = appendTx(dst, m)
	}

	txs = txs[:0]
	for tx := range s.Acceptor {
		txs = append(txs, tx)
	}
	slices.SortFunc(txs, compareTx)
	dst = binary.AppendUvarint(dst, uint64(len(txs)))
	for _, tx := range txs {
		a := s.Acceptor[tx]
		dst = appendTx(dst, tx)
		dst = binary.AppendUvarint(dst, uint64(a.Promised))
		dst = binary.AppendUvarint(dst, uint64(a.AcceptedBallot))
		dst = append(dst, byte(a.Accepted))
	}

	txs = txs[:0]
	for tx := range s.Reconciled {
		txs = append(txs, tx)
	}
	slices.SortFunc(txs, compareTx)
	dst = binary.AppendUvarint(dst, uint64(len(txs)))
	for _, tx := range txs {
		dst = appendTx(dst, tx)
	}
	return dst
}

// decodeState parses a snapshot payload.
func decodeState(b []byte) (covers uint64, s *State, err error) {
	d := decoder{b: b}
	version := d.u8("snapshot version")
	if d.err == nil && version != stateVersion && version != stateVersionV4 && version != stateVersionV3 && version != stateVersionV2 && version != stateVersionV1 {
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

	if version >= 3 {
		n = d.count("outcome count", minTxSize+1)
		for i := 0; i < n && d.err == nil; i++ {
			tx := d.tx("outcome tx")
			k := messages.RecordKind(d.u8("outcome kind"))
			if d.err != nil {
				break
			}
			switch k {
			case messages.RecCommitted, messages.RecAborted, messages.RecRefused, messages.RecReadOnly:
			default:
				d.failf("outcome %v for %v: want COMMITTED, ABORTED, REFUSED or READ-ONLY", k, tx)
			}
			if _, dup := s.Outcomes[tx]; dup {
				d.failf("outcome of %v appears twice", tx)
			}
			s.Outcomes[tx] = k
		}
		n = d.count("mark count", minTxSize)
		for i := 0; i < n && d.err == nil; i++ {
			m := d.tx("mark")
			if _, dup := s.Marks[m.Node]; dup && d.err == nil {
				d.failf("mark of node %d appears twice", m.Node)
			}
			s.Marks[m.Node] = m
		}
	}

	if version >= 4 {
		n = d.count("acceptor count", minTxSize+3)
		for i := 0; i < n && d.err == nil; i++ {
			tx := d.tx("acceptor tx")
			a := Acceptance{Promised: messages.Ballot(d.uint32("promised ballot")), AcceptedBallot: messages.Ballot(d.uint32("accepted ballot"))}
			a.Accepted = messages.Decision(d.u8("accepted decision"))
			if d.err != nil {
				break
			}
			if a.Accepted > messages.DecisionAbort {
				d.failf("accepted decision %d for %v: want none, commit or abort", uint8(a.Accepted), tx)
				break
			}
			if _, dup := s.Acceptor[tx]; dup {
				d.failf("acceptor entry of %v appears twice", tx)
			}
			s.Acceptor[tx] = a
		}
	}

	if version >= 5 {
		n = d.count("reconciled count", minTxSize)
		for i := 0; i < n && d.err == nil; i++ {
			tx := d.tx("reconciled tx")
			if d.err != nil {
				break
			}
			if _, ok := s.Heuristic[tx]; !ok {
				d.failf("reconciled %v is no heuristic decision", tx)
				break
			}
			if s.Reconciled[tx] {
				d.failf("reconciled %v appears twice", tx)
				break
			}
			if s.Reconciled == nil {
				s.Reconciled = map[messages.TxID]bool{}
			}
			s.Reconciled[tx] = true
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
