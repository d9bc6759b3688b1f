package messages

import "fmt"

// Snapshot reads: a read of keys on several nodes that returns their values
// as of one point in the serial order of committed transactions. The
// reading node takes a shared read lock at every owner (ReadLock), and once
// every owner has answered releases them all (ReadRelease); each owner says
// whether it held the lock from its answer to the release (ReadReleased).
// Nothing of it is logged: a read lock lives in its participant's memory.

// ReadID names one attempt of a snapshot read. Node and Incarnation are the
// reading node's, Seq counts its attempts, so an id is never reused, even
// across restarts of that node.
type ReadID struct {
	Node        int32
	Incarnation uint32
	Seq         uint64
}

// String renders the id as r<node>.<incarnation>.<seq>.
func (r ReadID) String() string { return fmt.Sprintf("r%d.%d.%d", r.Node, r.Incarnation, r.Seq) }

// ReadLock asks an owner to lock keys for reading and answer their values
// (ReadLocked). Begun (Unix nanoseconds) orders the read among transactions
// for lock waits, as Prepare.Begun does.
type ReadLock struct {
	Reader ReadID
	Begun  int64
	Keys   []string
}

// ReadLocked answers ReadLock: the keys' values, in the order asked, held
// by the read lock until ReadRelease; or Err, and no lock.
type ReadLocked struct {
	Reader ReadID
	From   int32
	Values []KeyValue
	Err    string
}

// ReadRelease drops the reader's read lock. Sent to every owner asked,
// whether it answered or not.
type ReadRelease struct {
	Reader ReadID
}

// ReadReleased answers ReadRelease. Held: the owner held the read lock from
// its answer until this release. False when it never answered, gave the
// lock up (its lease ran out), or restarted and forgot it: the values it
// answered may not be those of the others' moment, and the reader retries.
type ReadReleased struct {
	Reader ReadID
	From   int32
	Held   bool
}
