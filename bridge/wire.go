package bridge

import (
	"encoding/gob"
	"hash/fnv"
	"reflect"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// The wire types hold no maps: gob pre-allocates a map from the element count
// the sender claims, so a few hostile bytes could make a node allocate
// gigabytes. Fixed-size fields, strings and slices only.

// Msg is one actor message crossing from one node to another.
type Msg struct {
	To         string      // target actor id on the receiving node (e.g. "participant", "coordinator/0.1.5", "future$12")
	SenderAddr string      // sender PID address ("" if no sender)
	SenderID   string      // sender PID id ("" if no sender)
	Body       interface{} // one of the gob-registered protocol messages
}

// Batch is what one Bridge.Deliver call carries: everything queued for a
// peer, in the order it was sent.
type Batch struct {
	Cluster  uint64 // hash of the member list: a node of another cluster is refused
	From     int32  // sender node id
	FromAddr string // sender's address, which must be Members[From]
	To       int32  // receiver node id: a batch that reached the wrong node is refused
	// Session and Seq order the batches of one link. Session is the sending
	// bridge's start time, Seq counts its batches to this peer. A batch whose
	// call timed out may still arrive, after later ones; the receiver refuses
	// anything not newer than what it already delivered, so a late batch is
	// a loss (which the protocol recovers from), never a reordering.
	Session int64
	Seq     uint64
	Msgs    []Msg
}

// ClusterID names a membership: every node of one cluster computes the
// same, and a batch carrying another is refused (Batch.Cluster).
func ClusterID(members []string) uint64 {
	h := fnv.New64a()
	for _, m := range members {
		h.Write([]byte(m))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// Ack answers a Batch.
type Ack struct {
	Accepted int // messages handed to local actors (malformed ones are skipped)
}

// wireMessages lists every message type that may cross nodes. gob can only
// decode an interface{} field into a registered type, and encoding an
// unregistered one fails the whole batch, so the bridge refuses anything not
// listed here before it is queued.
var wireMessages = []interface{}{
	&messages.Prepare{},
	&messages.Vote{},
	&messages.Commit{},
	&messages.Abort{},
	&messages.Ack{},
	&messages.DecisionQuery{},
	&messages.DecisionReply{},
	&messages.Read{},
	&messages.ReadReply{},
	&messages.ReadLock{},
	&messages.ReadLocked{},
	&messages.ReadRelease{},
	&messages.ReadReleased{},
	// Not Begin and Outcome: clients reach a coordinator through the Client
	// rpc service, never through a peer, and an Outcome from a peer could
	// answer another client's Submit.
	// A node's dead-letter handler answers a request to a missing actor with
	// this; carrying it back lets a remote RequestFuture fail fast with
	// actor.ErrDeadLetter instead of waiting for its timeout.
	&actor.DeadLetterResponse{},
}

// wireTypes is filled once by init and only read afterwards, so concurrent
// lookups need no lock.
var wireTypes = map[reflect.Type]bool{}

func init() {
	for _, m := range wireMessages {
		gob.Register(m)
		wireTypes[reflect.TypeOf(m)] = true
	}
}

// wireable reports whether body can be encoded on the wire: a registered type
// and, since gob refuses nil pointers, not a nil one.
func wireable(body interface{}) bool {
	if body == nil || !wireTypes[reflect.TypeOf(body)] {
		return false
	}
	return !reflect.ValueOf(body).IsNil()
}
