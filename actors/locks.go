package actors

import (
	"fmt"
	"math"

	"twopc/messages"
)

// lockTable holds the participant's per-key locks. It is owned by the
// participant actor: no mutex.
//
// Two modes:
//   - exclusive, for set, delete, and any mix of operations on one key;
//   - increment, for a transaction that only adds to a key. Adds commute, so
//     any number of transactions share a key in this mode. A floor stays
//     safe by escrow: a transaction is admitted only if every floor held on
//     the key (its own and the others') is still met in the worst case —
//     every pending decrement commits and no pending increment does.
//
// The table itself never blocks: a conflict is reported to the participant,
// which either votes no at once or parks the Prepare, holding nothing, until
// older holders are decided (see participant.mayWait).
type lockTable struct {
	keys map[string]*keyLock
}

type keyLock struct {
	exclusive messages.TxID // zero when not held exclusively
	adders    []adder
}

// adder is one transaction holding a key in increment mode.
type adder struct {
	tx     messages.TxID
	net    int64        // the transaction's total change to the key
	checks []floorCheck // floors its own adds must keep
}

// floorCheck: the key's value, plus prefix (this transaction's adds up to
// and including the floored one), must not fall below floor.
type floorCheck struct {
	prefix int64
	floor  int64
}

func newLockTable() *lockTable { return &lockTable{keys: make(map[string]*keyLock)} }

// keyPlan is what one transaction needs on one key.
type keyPlan struct {
	key       string
	exclusive bool
	ops       []messages.Op
	adder     adder
}

// plan groups a transaction's ops by key, in first-seen order, and picks
// each key's lock mode.
func plan(tx messages.TxID, ops []messages.Op) ([]keyPlan, error) {
	idx := make(map[string]int, len(ops))
	var plans []keyPlan
	for _, o := range ops {
		i, ok := idx[o.Key]
		if !ok {
			i = len(plans)
			idx[o.Key] = i
			plans = append(plans, keyPlan{key: o.Key, adder: adder{tx: tx}})
		}
		p := &plans[i]
		p.ops = append(p.ops, o)
		if o.Kind != messages.OpAdd {
			p.exclusive = true
		}
	}
	for i := range plans {
		p := &plans[i]
		if p.exclusive {
			continue
		}
		for _, o := range p.ops {
			sum, ok := addChecked(p.adder.net, o.Value)
			if !ok {
				return nil, fmt.Errorf("key %s: adds overflow int64", p.key)
			}
			p.adder.net = sum
			if o.HasFloor {
				p.adder.checks = append(p.adder.checks, floorCheck{prefix: sum, floor: o.Floor})
			}
		}
	}
	return plans, nil
}

// acquire takes every lock tx needs for ops and checks the ops against the
// committed values, or takes nothing and says why. current reads a committed
// value.
func (lt *lockTable) acquire(tx messages.TxID, ops []messages.Op, current func(string) int64) error {
	plans, err := plan(tx, ops)
	if err != nil {
		return err
	}
	for _, p := range plans {
		if err := lt.admissible(p, current(p.key)); err != nil {
			return err
		}
	}
	for _, p := range plans {
		lt.take(p)
	}
	return nil
}

// force takes the locks without checks: recovery re-locks what the log says
// was prepared, which was admissible when it was prepared.
func (lt *lockTable) force(tx messages.TxID, ops []messages.Op) {
	plans, err := plan(tx, ops)
	if err != nil {
		// An overflowing plan was refused at prepare time and never logged;
		// lock exclusively rather than not at all.
		plans = nil
		for _, o := range ops {
			plans = append(plans, keyPlan{key: o.Key, exclusive: true})
		}
	}
	for _, p := range plans {
		lt.take(p)
	}
}

// lockConflict is the error for a key held in a mode that excludes the
// request; Holders are the transactions holding it.
type lockConflict struct {
	Key     string
	Holders []messages.TxID
}

func (c *lockConflict) Error() string {
	return fmt.Sprintf("key %s is locked by transaction %v", c.Key, c.Holders[0])
}

func (lt *lockTable) admissible(p keyPlan, cur int64) error {
	kl := lt.keys[p.key]
	if kl != nil && !kl.exclusive.IsZero() {
		return &lockConflict{Key: p.key, Holders: []messages.TxID{kl.exclusive}}
	}
	if p.exclusive {
		if kl != nil && len(kl.adders) > 0 {
			c := &lockConflict{Key: p.key}
			for _, a := range kl.adders {
				c.Holders = append(c.Holders, a.tx)
			}
			return c
		}
		_, err := applyOps(cur, p.ops)
		return err
	}
	var others []adder
	if kl != nil {
		others = kl.adders
	}
	all := append(others[:len(others):len(others)], p.adder) // never writes into the table's slice
	// Every subset of the holders may commit: the extremes are all the
	// increments, or all the decrements, and neither may overflow.
	hi, lo := cur, cur
	for _, a := range all {
		var ok bool
		if a.net > 0 {
			hi, ok = addChecked(hi, a.net)
		} else {
			lo, ok = addChecked(lo, a.net)
		}
		if !ok {
			return fmt.Errorf("key %s: pending adds could overflow int64", p.key)
		}
	}
	for _, a := range all {
		if len(a.checks) == 0 {
			continue
		}
		// Worst case for a: every other pending decrement commits first,
		// which is lo without a's own decrement (cannot overflow: it lies
		// between lo and cur).
		worst := lo
		if a.net < 0 {
			worst -= a.net
		}
		for _, c := range a.checks {
			v, ok := addChecked(worst, c.prefix)
			if !ok {
				return fmt.Errorf("key %s: add overflows int64", p.key)
			}
			if v < c.floor {
				err := &floorConflict{Key: p.key, Value: v, Floor: c.floor, Holder: a.tx, Own: a.tx == p.adder.tx}
				for _, b := range others {
					err.Pending = append(err.Pending, b.tx)
				}
				return err
			}
		}
	}
	return nil
}

// floorConflict: admitting the add could take the key below a floor. When
// other transactions hold the key (Pending), their outcome may change that,
// so the requester may wait for them like for a lock.
type floorConflict struct {
	Key          string
	Value, Floor int64
	Holder       messages.TxID // whose floor
	Own          bool          // the floor is the requester's own
	Pending      []messages.TxID
}

func (c *floorConflict) Error() string {
	if c.Own {
		return fmt.Sprintf("key %s would fall to %d, below its floor %d", c.Key, c.Value, c.Floor)
	}
	return fmt.Sprintf("key %s: admitting this add could take it to %d, below the floor %d held by transaction %v", c.Key, c.Value, c.Floor, c.Holder)
}

func (lt *lockTable) take(p keyPlan) {
	kl := lt.keys[p.key]
	if kl == nil {
		kl = &keyLock{}
		lt.keys[p.key] = kl
	}
	if p.exclusive {
		kl.exclusive = p.adder.tx
		return
	}
	kl.adders = append(kl.adders, p.adder)
}

// release drops every lock tx holds on the keys of ops.
func (lt *lockTable) release(tx messages.TxID, ops []messages.Op) {
	for _, o := range ops {
		kl := lt.keys[o.Key]
		if kl == nil {
			continue
		}
		if kl.exclusive == tx {
			kl.exclusive = messages.TxID{}
		}
		for i := 0; i < len(kl.adders); i++ {
			if kl.adders[i].tx == tx {
				kl.adders = append(kl.adders[:i], kl.adders[i+1:]...)
				i--
			}
		}
		if kl.exclusive.IsZero() && len(kl.adders) == 0 {
			delete(lt.keys, o.Key)
		}
	}
}

// holders returns the transactions holding key, in any mode.
func (lt *lockTable) holders(key string) []messages.TxID {
	kl := lt.keys[key]
	if kl == nil {
		return nil
	}
	if !kl.exclusive.IsZero() {
		return []messages.TxID{kl.exclusive}
	}
	out := make([]messages.TxID, len(kl.adders))
	for i, a := range kl.adders {
		out[i] = a.tx
	}
	return out
}

// held counts the keys with at least one lock.
func (lt *lockTable) held() int { return len(lt.keys) }

// applyOps runs ops on one key's value in order, checking floors and
// overflow.
func applyOps(cur int64, ops []messages.Op) (int64, error) {
	v := cur
	for _, o := range ops {
		switch o.Kind {
		case messages.OpSet:
			v = o.Value
		case messages.OpDelete:
			v = 0
		case messages.OpAdd:
			n, ok := addChecked(v, o.Value)
			if !ok {
				return cur, fmt.Errorf("key %s: %d%+d overflows int64", o.Key, v, o.Value)
			}
			if o.HasFloor && n < o.Floor {
				return cur, fmt.Errorf("key %s would fall to %d, below its floor %d", o.Key, n, o.Floor)
			}
			v = n
		default:
			return cur, fmt.Errorf("key %s: unknown operation %v", o.Key, o.Kind)
		}
	}
	return v, nil
}

func addChecked(a, b int64) (int64, bool) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, false
	}
	return a + b, true
}
