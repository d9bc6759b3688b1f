package bridge

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Backlog bounds the work peers can queue at a node. Delivered messages go
// into the roles' mailboxes, which have no bound of their own (a bounded
// mailbox would block the node's own actors, too, and they send to each
// other). So the roles' mailboxes are counted instead, by a mailbox
// middleware, and an inbound batch waits, before anything of it is handed
// over, while the count is above the limit. The wait holds the peer's call,
// and the codec reads no more frames from a connection with MaxCallsPerConn
// calls unanswered: back-pressure reaches the sender's socket, and memory
// stays bounded by the limit plus what the connections may hold.
//
// Only the long-lived roles (coordinator, participant) are counted: a
// mailbox that dies with messages in it (a txn actor that stops) would leave
// its count behind for good; a txn actor's messages are bounded by the
// transactions the coordinator admits.
type Backlog struct {
	depth   atomic.Int64
	limit   int64
	holding atomic.Int64 // inbound batches waiting in wait now
}

// DefaultMaxBacklog is the messages a node's roles may have queued before
// inbound batches wait: a few hundred bytes each, so tens of MiB.
const DefaultMaxBacklog = 1 << 16

// NewBacklog makes a backlog of at most limit messages (DefaultMaxBacklog
// if limit <= 0).
func NewBacklog(limit int) *Backlog {
	if limit <= 0 {
		limit = DefaultMaxBacklog
	}
	return &Backlog{limit: int64(limit)}
}

// Mailbox returns the mailbox to give a counted role's props
// (actor.WithMailbox).
func (b *Backlog) Mailbox() actor.MailboxProducer {
	return actor.Unbounded((*backlogCounter)(b))
}

// Depth is the number of messages queued in the counted mailboxes now.
func (b *Backlog) Depth() int64 { return b.depth.Load() }

// Holding is the number of inbound batches waiting for room now.
func (b *Backlog) Holding() int64 { return b.holding.Load() }

// Limit is the depth above which inbound batches wait.
func (b *Backlog) Limit() int64 { return b.limit }

// wait returns once the backlog is at or below its limit (true), or when
// ctx ends first (false). A nil backlog never waits.
func (b *Backlog) wait(ctx context.Context) bool {
	if b == nil || b.depth.Load() <= b.limit {
		return true
	}
	// Over the limit only under a flood: poll rather than make every
	// message signal a condition.
	b.holding.Add(1)
	defer b.holding.Add(-1)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for b.depth.Load() > b.limit {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// backlogCounter is the mailbox middleware: posted and received messages
// (system ones too: each is posted once and received once) move the depth.
type backlogCounter Backlog

func (c *backlogCounter) MailboxStarted()             {}
func (c *backlogCounter) MessagePosted(interface{})   { c.depth.Add(1) }
func (c *backlogCounter) MessageReceived(interface{}) { c.depth.Add(-1) }
func (c *backlogCounter) MailboxEmpty()               {}
