package bridge

import (
	"fmt"

	"twopc/messages"
)

// Defaults for Limits. They are sized from what the protocol needs, not
// from what a sender may claim: the bridge sends at most DefaultBatchLimit
// messages per call, a transaction of DefaultMaxOpsPerTx operations with the
// longest keys still fits one frame (Validate checks that), and the bench's
// 64 clients sharing one connection per node stay well under the per-
// connection call limit.
const (
	DefaultMaxFrame        = 1 << 20 // 1 MiB
	DefaultMaxMsgsPerBatch = DefaultBatchLimit
	DefaultMaxOpsPerTx     = messages.DefaultMaxOpsPerTx
	DefaultMaxKeysPerRead  = 1024
	DefaultMaxParticipants = 1024
	DefaultMaxCallsPerConn = 128
	DefaultMaxConnBytes    = DefaultMaxFrame
)

// Limits bound what one connection may make a node hold. Every size and
// count a sender announces is checked against them before anything of that
// size is allocated (codec.go). A zero field takes its default
// (WithDefaults); Validate refuses a set that contradicts itself.
type Limits struct {
	// MaxFrame caps one request or response frame in bytes (its length
	// prefix excluded). A longer announced length closes the connection
	// before a byte of it is buffered.
	MaxFrame int
	// MaxMsgsPerBatch caps the messages in one Bridge.Deliver batch.
	MaxMsgsPerBatch int
	// MaxOpsPerTx caps the operations of one transaction: in a Submit, a
	// Begin and a Prepare (which holds one participant's share).
	MaxOpsPerTx int
	// MaxKeysPerRead caps the keys of one read (Client.Read, Read) and the
	// values of its reply.
	MaxKeysPerRead int
	// MaxParticipants caps the participant list of a Prepare.
	MaxParticipants int
	// MaxCallsPerConn caps the calls one connection may have in flight
	// (read, not yet answered); the next frame is not read until one is
	// answered. net/rpc serves each call on its own goroutine, so this also
	// bounds the goroutines one connection can start.
	MaxCallsPerConn int
	// MaxConnBytes caps the request bytes one connection may have in flight,
	// counted by frame length: the next frame is not read until answered
	// calls make room for it. At least MaxFrame.
	MaxConnBytes int
}

// WithDefaults returns l with each zero field set to its default.
func (l Limits) WithDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxFrame, DefaultMaxFrame)
	def(&l.MaxMsgsPerBatch, DefaultMaxMsgsPerBatch)
	def(&l.MaxOpsPerTx, DefaultMaxOpsPerTx)
	def(&l.MaxKeysPerRead, DefaultMaxKeysPerRead)
	def(&l.MaxParticipants, DefaultMaxParticipants)
	def(&l.MaxCallsPerConn, DefaultMaxCallsPerConn)
	def(&l.MaxConnBytes, max(DefaultMaxConnBytes, l.MaxFrame))
	return l
}

// Worst-case encoded sizes, for Validate: a frame must hold the largest
// message the protocol may legitimately send, or a valid transaction could
// never cross.
const (
	maxVarint    = 10
	maxOpEncoded = maxVarint + messages.MaxKeyLen + 1 + 2*maxVarint + 1 // key length, key, kind, value, floor, has-floor
	frameSlack   = 4 << 10                                              // headers, ids, addresses and the batch around one message
)

// maxTxFrame is the encoded size of the largest legal Prepare (or Submit).
func (l Limits) maxTxFrame() int {
	return frameSlack + l.MaxOpsPerTx*maxOpEncoded + l.MaxParticipants*5
}

// Validate names the first limit that breaks its rule.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxFrame", l.MaxFrame}, {"MaxMsgsPerBatch", l.MaxMsgsPerBatch}, {"MaxOpsPerTx", l.MaxOpsPerTx},
		{"MaxKeysPerRead", l.MaxKeysPerRead}, {"MaxParticipants", l.MaxParticipants},
		{"MaxCallsPerConn", l.MaxCallsPerConn}, {"MaxConnBytes", l.MaxConnBytes},
	} {
		if f.v <= 0 {
			return fmt.Errorf("bridge: Limits.%s = %d: must be positive (0 takes the default)", f.name, f.v)
		}
	}
	if l.MaxFrame > 1<<30 {
		return fmt.Errorf("bridge: Limits.MaxFrame = %d: at most 1 GiB", l.MaxFrame)
	}
	if need := l.maxTxFrame(); l.MaxFrame < need {
		return fmt.Errorf("bridge: Limits.MaxFrame = %d: a transaction of MaxOpsPerTx = %d operations with MaxParticipants = %d needs up to %d bytes",
			l.MaxFrame, l.MaxOpsPerTx, l.MaxParticipants, need)
	}
	if need := frameSlack + l.MaxKeysPerRead*(maxVarint+messages.MaxKeyLen+maxVarint); l.MaxFrame < need {
		return fmt.Errorf("bridge: Limits.MaxFrame = %d: a read of MaxKeysPerRead = %d keys needs up to %d bytes", l.MaxFrame, l.MaxKeysPerRead, need)
	}
	if l.MaxConnBytes < l.MaxFrame {
		return fmt.Errorf("bridge: Limits.MaxConnBytes = %d is less than MaxFrame = %d: a full frame could never be read", l.MaxConnBytes, l.MaxFrame)
	}
	return nil
}
