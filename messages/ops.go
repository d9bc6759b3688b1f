package messages

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// OpKind is what an operation does to its key.
type OpKind uint8

const (
	OpSet    OpKind = iota + 1 // key = Value
	OpAdd                      // key += Value, refused if the result would fall below Floor (when HasFloor)
	OpDelete                   // key removed; a missing key reads 0
)

func (k OpKind) String() string {
	switch k {
	case OpSet:
		return "set"
	case OpAdd:
		return "add"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Op is one operation of a transaction on one key.
type Op struct {
	Key      string
	Kind     OpKind
	Value    int64
	Floor    int64
	HasFloor bool
}

func (o Op) String() string {
	switch o.Kind {
	case OpSet:
		return fmt.Sprintf("set %s=%d", o.Key, o.Value)
	case OpAdd:
		if o.HasFloor {
			return fmt.Sprintf("add %s%+d (floor %d)", o.Key, o.Value, o.Floor)
		}
		return fmt.Sprintf("add %s%+d", o.Key, o.Value)
	case OpDelete:
		return "delete " + o.Key
	}
	return fmt.Sprintf("%v %s", o.Kind, o.Key)
}

// Set, Add, AddFloor and Delete build operations.
func Set(key string, v int64) Op { return Op{Key: key, Kind: OpSet, Value: v} }
func Add(key string, d int64) Op { return Op{Key: key, Kind: OpAdd, Value: d} }
func AddFloor(key string, d, floor int64) Op {
	return Op{Key: key, Kind: OpAdd, Value: d, Floor: floor, HasFloor: true}
}
func Delete(key string) Op { return Op{Key: key, Kind: OpDelete} }

// EverywhereKey is the seed's single integer. Every node holds its own copy,
// so an operation on it touches every node: "add 1 to value" is the seed's
// transaction, run by all nodes at once.
const EverywhereKey = "value"

// MaxKeyLen bounds a key so a client cannot make a participant hold
// arbitrarily large lock-table entries.
const MaxKeyLen = 256

// ValidateKey says what is wrong with a key, or nil. Keys are non-empty,
// valid UTF-8, printable, without spaces or '='; a key beginning with "n"
// followed by digits and "/" names its owner explicitly (e.g. "n2/alice").
func ValidateKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("key %.20q...: longer than %d bytes", key, MaxKeyLen)
	}
	// Checked before the runes: ranging over a string turns each bad byte
	// into U+FFFD, which is printable, so the loop below would let it pass
	// and two different byte strings could print as the same key.
	if !utf8.ValidString(key) {
		return fmt.Errorf("key %q: not valid UTF-8", key)
	}
	for _, r := range key {
		if r == '=' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("key %q: contains %q (keys are printable, without spaces or '=')", key, r)
		}
	}
	if _, _, explicit, err := explicitOwner(key); explicit && err != nil {
		return err
	}
	return nil
}

// explicitOwner parses the "n<id>/" prefix. explicit is true when the key
// looks like it tries to name an owner.
func explicitOwner(key string) (node int, rest string, explicit bool, err error) {
	if len(key) < 2 || key[0] != 'n' || key[1] < '0' || key[1] > '9' {
		return 0, "", false, nil
	}
	slash := strings.IndexByte(key, '/')
	if slash < 0 {
		return 0, "", false, nil // "n42" is an ordinary key
	}
	digits := key[1:slash]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, "", false, nil // "n1x/y" is an ordinary key
		}
	}
	n, perr := strconv.Atoi(digits)
	if perr != nil || n > 1<<20 {
		return 0, "", true, fmt.Errorf("key %q: owner prefix n%s/ is not a node id", key, digits)
	}
	if slash == len(key)-1 {
		return n, "", true, fmt.Errorf("key %q: nothing after the owner prefix", key)
	}
	return n, key[slash+1:], true, nil
}

// Owners returns the nodes that hold key in a cluster of nodes 0..members-1:
// every node for EverywhereKey, the named node for an "n<id>/" key, and
// otherwise one node chosen by a hash of the key, the same on every node.
func Owners(key string, members int) ([]int32, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	return owners(key, members)
}

// owners is Owners for a key already validated.
func owners(key string, members int) ([]int32, error) {
	if members <= 0 {
		return nil, errors.New("cluster has no members")
	}
	if key == EverywhereKey {
		all := make([]int32, members)
		for i := range all {
			all[i] = int32(i)
		}
		return all, nil
	}
	if n, _, explicit, _ := explicitOwner(key); explicit {
		if n >= members {
			return nil, fmt.Errorf("key %q: unknown node %d (members are 0-%d)", key, n, members-1)
		}
		return []int32{int32(n)}, nil
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return []int32{int32(h.Sum32() % uint32(members))}, nil
}

// CheckOwned validates ops as a participant (node) receives them: some ops,
// each well formed and on a key that node owns.
func CheckOwned(ops []Op, node int32, members int) error {
	if len(ops) == 0 {
		return errors.New("no operations to prepare")
	}
	for _, o := range ops {
		if err := ValidateOp(o); err != nil {
			return err
		}
		own, err := owners(o.Key, members)
		if err != nil {
			return err
		}
		if !slices.Contains(own, node) {
			return fmt.Errorf("key %s is owned by node %d, not this one", o.Key, own[0])
		}
	}
	return nil
}

// ValidateOp checks an operation on its own, before any participant sees it.
func ValidateOp(o Op) error {
	if err := ValidateKey(o.Key); err != nil {
		return err
	}
	switch o.Kind {
	case OpSet, OpDelete:
		if o.HasFloor {
			return fmt.Errorf("%v %s: a floor applies only to add", o.Kind, o.Key)
		}
		if o.Kind == OpDelete && o.Value != 0 {
			return fmt.Errorf("delete %s: takes no value", o.Key)
		}
	case OpAdd:
	default:
		return fmt.Errorf("key %s: unknown operation %v", o.Key, o.Kind)
	}
	return nil
}

// Split validates ops and groups them by owning node, keeping their order
// within each node. Participants are returned in ascending order.
func Split(ops []Op, members int) (participants []int32, byNode [][]Op, err error) {
	if len(ops) == 0 {
		return nil, nil, errors.New("transaction has no operations")
	}
	perNode := make([][]Op, members)
	for _, o := range ops {
		if err := ValidateOp(o); err != nil {
			return nil, nil, err
		}
		own, err := owners(o.Key, members)
		if err != nil {
			return nil, nil, err
		}
		for _, n := range own {
			perNode[n] = append(perNode[n], o)
		}
	}
	for n, nodeOps := range perNode {
		if len(nodeOps) > 0 {
			participants = append(participants, int32(n))
			byNode = append(byNode, nodeOps)
		}
	}
	return participants, byNode, nil
}

// Apply carries out a committed operation on a node's state. Floors are not
// checked here: they were checked, with escrow, when the transaction
// prepared.
func Apply(kv map[string]int64, o Op) {
	switch o.Kind {
	case OpSet:
		kv[o.Key] = o.Value
	case OpAdd:
		kv[o.Key] += o.Value
	case OpDelete:
		delete(kv, o.Key)
	}
}

// DefaultMaxOpsPerTx is how many operations a transaction may have unless a
// node is configured otherwise (bridge.Limits.MaxOpsPerTx): the wire refuses
// a longer one before decoding it, and a node refuses it at Submit.
const DefaultMaxOpsPerTx = 1024

// CheckOpCount refuses a transaction of more than limit operations, naming
// the limit, so a caller learns which knob it ran into.
func CheckOpCount(n, limit int) error {
	if n > limit {
		return fmt.Errorf("transaction has %d operations: more than the limit of %d per transaction (MaxOpsPerTx)", n, limit)
	}
	return nil
}
