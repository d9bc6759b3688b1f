package bridge

import (
	"fmt"
	"hash/fnv"
	"reflect"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// The wire types hold no maps and travel in the bridge's own binary encoding
// (encoding.go, codec.go), never gob: gob allocates what the sender claims
// (a map or a slice of the announced size) before anything can check it.

// Msg is one actor message crossing from one node to another.
type Msg struct {
	To         string      // target actor id on the receiving node (e.g. "participant", "coordinator/0.1.5", "future$12")
	SenderAddr string      // sender PID address ("" if no sender)
	SenderID   string      // sender PID id ("" if no sender)
	Body       interface{} // one of wireMessages (nil travels as tag 0)
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

// wireMessages lists every message type that may cross nodes inside a
// Batch; the bridge refuses anything else before it is queued, and skips
// anything else that arrives.
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
	&messages.PromiseRequest{},
	&messages.PromiseReply{},
	&messages.AcceptRequest{},
	&messages.AcceptReply{},
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

// wireable reports whether body can be sent to a peer: a wire message type,
// and not a nil pointer (which no receiver could act on).
func wireable(body interface{}) bool {
	if body == nil || !wireTypes[reflect.TypeOf(body)] {
		return false
	}
	return !reflect.ValueOf(body).IsNil()
}

// A body's encoding is its tag (a uvarint) and then its fields in order.
// Tag 0 is a nil body. To carry a new message type: give it the next tag in
// bodyCodecs with an encode and a decode function (decode allocates slices
// only through Decoder.Count), and list it in wireMessages if peers may
// send it to each other. Tags are never reused: a node of an older build
// refuses a batch holding a tag it does not know, naming the tag.
type bodyCodec struct {
	tag uint64
	typ reflect.Type // a pointer type
	enc func(*Encoder, any)
	dec func(*Decoder) any
}

// body makes the table entry for *T.
func body[T any](tag uint64, enc func(*Encoder, *T), dec func(*Decoder, *T)) bodyCodec {
	return bodyCodec{
		tag: tag,
		typ: reflect.TypeOf((*T)(nil)),
		enc: func(e *Encoder, v any) { enc(e, v.(*T)) },
		dec: func(d *Decoder) any {
			v := new(T)
			dec(d, v)
			return v
		},
	}
}

var bodyCodecs = []bodyCodec{
	body(1, func(e *Encoder, m *messages.Prepare) {
		e.TxID(m.Tx)
		e.Ops(m.Ops)
		e.Count(len(m.Participants))
		for _, p := range m.Participants {
			e.Varint(int64(p))
		}
		e.Varint(m.Begun)
		e.Uvarint(m.Settled)
	}, func(d *Decoder, m *messages.Prepare) {
		m.Tx = d.TxID()
		m.Ops = d.Ops()
		if n := d.Count("participants (MaxParticipants)", d.lim.MaxParticipants, minInt32Size); n > 0 {
			m.Participants = make([]int32, n)
			for i := range m.Participants {
				m.Participants[i] = d.Int32()
			}
		}
		m.Begun = d.Varint()
		m.Settled = d.Uvarint()
	}),
	body(2, func(e *Encoder, m *messages.Vote) {
		e.TxID(m.Tx)
		e.Varint(int64(m.From))
		e.Byte(byte(m.Kind))
		e.String(m.Reason)
	}, func(d *Decoder, m *messages.Vote) {
		m.Tx, m.From, m.Kind, m.Reason = d.TxID(), d.Int32(), messages.VoteKind(d.Byte()), d.String()
	}),
	body(3, func(e *Encoder, m *messages.Commit) {
		e.TxID(m.Tx)
		e.Varint(int64(m.From))
		e.Uvarint(m.Settled)
	}, func(d *Decoder, m *messages.Commit) {
		m.Tx, m.From, m.Settled = d.TxID(), d.Int32(), d.Uvarint()
	}),
	body(4, func(e *Encoder, m *messages.Abort) {
		e.TxID(m.Tx)
		e.Varint(int64(m.From))
		e.String(m.Reason)
		e.Uvarint(m.Settled)
	}, func(d *Decoder, m *messages.Abort) {
		m.Tx, m.From, m.Reason, m.Settled = d.TxID(), d.Int32(), d.String(), d.Uvarint()
	}),
	body(5, func(e *Encoder, m *messages.Ack) {
		e.TxID(m.Tx)
		e.Varint(int64(m.From))
		e.Bool(m.Heuristic)
	}, func(d *Decoder, m *messages.Ack) {
		m.Tx, m.From, m.Heuristic = d.TxID(), d.Int32(), d.Bool()
	}),
	body(6, func(e *Encoder, m *messages.DecisionQuery) {
		e.TxID(m.Tx)
		e.Varint(int64(m.From))
		e.Varint(m.Begun)
	}, func(d *Decoder, m *messages.DecisionQuery) {
		m.Tx, m.From, m.Begun = d.TxID(), d.Int32(), d.Varint()
	}),
	body(7, func(e *Encoder, m *messages.DecisionReply) {
		e.TxID(m.Tx)
		e.Varint(int64(m.From))
		e.Byte(byte(m.Decision))
		e.Bool(m.Presumed)
	}, func(d *Decoder, m *messages.DecisionReply) {
		m.Tx, m.From, m.Decision, m.Presumed = d.TxID(), d.Int32(), messages.Decision(d.Byte()), d.Bool()
	}),
	body(8, func(e *Encoder, m *messages.Read) {
		e.Strings(m.Keys)
	}, func(d *Decoder, m *messages.Read) {
		m.Keys = d.Keys()
	}),
	body(9, func(e *Encoder, m *messages.ReadReply) {
		e.Varint(int64(m.From))
		e.Count(len(m.Values))
		for _, kv := range m.Values {
			e.String(kv.Key)
			e.Varint(kv.Value)
		}
		e.String(m.Err)
	}, func(d *Decoder, m *messages.ReadReply) {
		m.From = d.Int32()
		if n := d.Count("values per read reply (MaxKeysPerRead)", d.lim.MaxKeysPerRead, minStringSize+1); n > 0 {
			m.Values = make([]messages.KeyValue, n)
			for i := range m.Values {
				m.Values[i] = messages.KeyValue{Key: d.String(), Value: d.Varint()}
			}
		}
		m.Err = d.String()
	}),
	body(10, func(e *Encoder, m *actor.DeadLetterResponse) {
		e.Bool(m.Target != nil)
		if m.Target != nil {
			e.String(m.Target.Address)
			e.String(m.Target.Id)
			e.Uvarint(uint64(m.Target.RequestId))
		}
	}, func(d *Decoder, m *actor.DeadLetterResponse) {
		if d.Bool() {
			m.Target = &actor.PID{Address: d.String(), Id: d.String(), RequestId: d.Uint32()}
		}
	}),
	// Not wire messages between peers (see wireMessages), but the Client
	// service's reply (Outcome) and the coordinator's vocabulary.
	body(11, func(e *Encoder, m *messages.Outcome) {
		e.TxID(m.Tx)
		e.Bool(m.Committed)
		e.Bool(m.Unknown)
		e.String(m.Reason)
	}, func(d *Decoder, m *messages.Outcome) {
		m.Tx, m.Committed, m.Unknown, m.Reason = d.TxID(), d.Bool(), d.Bool(), d.String()
	}),
	body(12, func(e *Encoder, m *messages.Begin) {
		e.Ops(m.Ops)
		e.Bool(m.NotifyBegun)
	}, func(d *Decoder, m *messages.Begin) {
		m.Ops, m.NotifyBegun = d.Ops(), d.Bool()
	}),
	body(13, func(e *Encoder, m *messages.Begun) {
		e.TxID(m.Tx)
	}, func(d *Decoder, m *messages.Begun) {
		m.Tx = d.TxID()
	}),
	// A snapshot read's lock and release (messages/reads.go).
	body(14, func(e *Encoder, m *messages.ReadLock) {
		encodeReadID(e, m.Reader)
		e.Varint(m.Begun)
		e.Strings(m.Keys)
	}, func(d *Decoder, m *messages.ReadLock) {
		m.Reader, m.Begun, m.Keys = decodeReadID(d), d.Varint(), d.Keys()
	}),
	body(15, func(e *Encoder, m *messages.ReadLocked) {
		encodeReadID(e, m.Reader)
		e.Varint(int64(m.From))
		e.Count(len(m.Values))
		for _, kv := range m.Values {
			e.String(kv.Key)
			e.Varint(kv.Value)
		}
		e.String(m.Err)
	}, func(d *Decoder, m *messages.ReadLocked) {
		m.Reader, m.From = decodeReadID(d), d.Int32()
		if n := d.Count("values per read lock (MaxKeysPerRead)", d.lim.MaxKeysPerRead, minStringSize+1); n > 0 {
			m.Values = make([]messages.KeyValue, n)
			for i := range m.Values {
				m.Values[i] = messages.KeyValue{Key: d.String(), Value: d.Varint()}
			}
		}
		m.Err = d.String()
	}),
	body(16, func(e *Encoder, m *messages.ReadRelease) {
		encodeReadID(e, m.Reader)
	}, func(d *Decoder, m *messages.ReadRelease) {
		m.Reader = decodeReadID(d)
	}),
	body(17, func(e *Encoder, m *messages.ReadReleased) {
		encodeReadID(e, m.Reader)
		e.Varint(int64(m.From))
		e.Bool(m.Held)
	}, func(d *Decoder, m *messages.ReadReleased) {
		m.Reader, m.From, m.Held = decodeReadID(d), d.Int32(), d.Bool()
	}),
	body(18, func(e *Encoder, m *messages.PromiseRequest) {
		e.TxID(m.Tx)
		e.Uvarint(uint64(m.Ballot))
		e.Varint(int64(m.From))
	}, func(d *Decoder, m *messages.PromiseRequest) {
		m.Tx, m.Ballot, m.From = d.TxID(), messages.Ballot(d.Uint32()), d.Int32()
	}),
	body(19, func(e *Encoder, m *messages.PromiseReply) {
		e.TxID(m.Tx)
		e.Uvarint(uint64(m.Ballot))
		e.Varint(int64(m.From))
		e.Bool(m.OK)
		e.Uvarint(uint64(m.Promised))
		e.Uvarint(uint64(m.AcceptedBallot))
		e.Byte(byte(m.Accepted))
	}, func(d *Decoder, m *messages.PromiseReply) {
		m.Tx, m.Ballot, m.From, m.OK = d.TxID(), messages.Ballot(d.Uint32()), d.Int32(), d.Bool()
		m.Promised, m.AcceptedBallot = messages.Ballot(d.Uint32()), messages.Ballot(d.Uint32())
		m.Accepted = decodeDecision(d, true)
	}),
	body(20, func(e *Encoder, m *messages.AcceptRequest) {
		e.TxID(m.Tx)
		e.Uvarint(uint64(m.Ballot))
		e.Varint(int64(m.From))
		e.Byte(byte(m.Decision))
		e.Uvarint(m.Settled)
	}, func(d *Decoder, m *messages.AcceptRequest) {
		m.Tx, m.Ballot, m.From = d.TxID(), messages.Ballot(d.Uint32()), d.Int32()
		m.Decision = decodeDecision(d, false)
		m.Settled = d.Uvarint()
	}),
	body(21, func(e *Encoder, m *messages.AcceptReply) {
		e.TxID(m.Tx)
		e.Uvarint(uint64(m.Ballot))
		e.Varint(int64(m.From))
		e.Bool(m.OK)
		e.Uvarint(uint64(m.Promised))
	}, func(d *Decoder, m *messages.AcceptReply) {
		m.Tx, m.Ballot, m.From, m.OK, m.Promised = d.TxID(), messages.Ballot(d.Uint32()), d.Int32(), d.Bool(), messages.Ballot(d.Uint32())
	}),
}

// decodeDecision reads a decision byte: commit or abort, or also "none"
// where none may be said (orNone). Anything else fails the decode, so an
// acceptor never holds a value no proposer could have chosen.
func decodeDecision(d *Decoder, orNone bool) messages.Decision {
	v := messages.Decision(d.Byte())
	if d.Err() == nil && (v > messages.DecisionAbort || (!orNone && v == messages.DecisionUnknown)) {
		d.Fail(fmt.Errorf("decision %d: want commit or abort", uint8(v)))
	}
	return v
}

func encodeReadID(e *Encoder, r messages.ReadID) {
	e.Varint(int64(r.Node))
	e.Uvarint(uint64(r.Incarnation))
	e.Uvarint(r.Seq)
}

func decodeReadID(d *Decoder) messages.ReadID {
	return messages.ReadID{Node: d.Int32(), Incarnation: d.Uint32(), Seq: d.Uvarint()}
}

// bodyByType and bodyByTag index bodyCodecs; filled by init, read-only after.
var (
	bodyByType = map[reflect.Type]*bodyCodec{}
	bodyByTag  = map[uint64]*bodyCodec{}
)

func init() {
	for i := range bodyCodecs {
		c := &bodyCodecs[i]
		if c.tag == 0 || bodyByTag[c.tag] != nil || bodyByType[c.typ] != nil {
			panic(fmt.Sprintf("bridge: bodyCodecs: tag %d (%v) is 0 or used twice", c.tag, c.typ))
		}
		bodyByType[c.typ], bodyByTag[c.tag] = c, c
	}
	for _, m := range wireMessages {
		wireTypes[reflect.TypeOf(m)] = true
	}
}

// encodeBody writes a message body: its tag and fields, or tag 0 for nil.
func encodeBody(e *Encoder, body any) error {
	if body == nil {
		e.Uvarint(0)
		return nil
	}
	c := bodyByType[reflect.TypeOf(body)]
	if c == nil {
		return fmt.Errorf("message type %T has no wire encoding (add it to bodyCodecs in bridge/wire.go)", body)
	}
	if reflect.ValueOf(body).IsNil() {
		e.Uvarint(0)
		return nil
	}
	e.Uvarint(c.tag)
	c.enc(e, body)
	return nil
}

// decodeBody reads a body written by encodeBody; an unknown tag fails the
// decoder, naming the tag (a number: nothing the sender wrote is echoed).
func decodeBody(d *Decoder) any {
	tag := d.Uvarint()
	if d.err != nil || tag == 0 {
		return nil
	}
	c := bodyByTag[tag]
	if c == nil {
		d.Fail(fmt.Errorf("unknown message type tag %d", tag))
		return nil
	}
	return c.dec(d)
}

func (b *Batch) EncodeWire(e *Encoder) {
	e.Uvarint(b.Cluster)
	e.Varint(int64(b.From))
	e.String(b.FromAddr)
	e.Varint(int64(b.To))
	e.Varint(b.Session)
	e.Uvarint(b.Seq)
	e.Count(len(b.Msgs))
	for i := range b.Msgs {
		encodeMsg(e, &b.Msgs[i])
	}
}

// encodeMsg writes one message; a body without an encoding travels as nil
// (the sender checks wireable before queueing, so only a test sees this).
func encodeMsg(e *Encoder, m *Msg) {
	e.String(m.To)
	e.String(m.SenderAddr)
	e.String(m.SenderID)
	mark := len(e.buf)
	if err := encodeBody(e, m.Body); err != nil {
		e.buf = e.buf[:mark]
		e.Uvarint(0)
	}
}

func (b *Batch) DecodeWire(d *Decoder) {
	b.Cluster = d.Uvarint()
	b.From = d.Int32()
	if d.sender != nil && d.err == nil && b.From != *d.sender {
		d.Fail(&ImpostorError{Conn: *d.sender, Claimed: b.From})
		return
	}
	b.FromAddr = d.String()
	b.To = d.Int32()
	b.Session = d.Varint()
	b.Seq = d.Uvarint()
	n := d.Count("messages per batch (MaxMsgsPerBatch)", d.lim.MaxMsgsPerBatch, minMsgSize)
	if n == 0 {
		return
	}
	b.Msgs = make([]Msg, n)
	for i := range b.Msgs {
		m := &b.Msgs[i]
		m.To, m.SenderAddr, m.SenderID = d.String(), d.String(), d.String()
		m.Body = decodeBody(d)
		if d.err != nil {
			b.Msgs = nil
			return
		}
	}
}

func (a *Ack) EncodeWire(e *Encoder) { e.Varint(int64(a.Accepted)) }
func (a *Ack) DecodeWire(d *Decoder) { a.Accepted = d.Int() }
