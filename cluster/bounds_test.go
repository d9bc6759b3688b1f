package cluster

import (
	"fmt"
	"strings"
	"testing"

	"twopc/actors"
	"twopc/bridge"
	"twopc/messages"
)

// A transaction of more operations than MaxOpsPerTx is refused, naming the
// limit, both by a node's Submit and on the wire (before the operations
// are decoded); one of exactly MaxOpsPerTx commits. Reads are bounded the
// same way by MaxKeysPerRead.
func TestSubmitAndReadRefuseMoreThanTheLimits(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{})
	c := dial(t, l, 0)
	ops := func(n int) []messages.Op {
		out := make([]messages.Op, n)
		for i := range out {
			out[i] = messages.Set(fmt.Sprintf("n%d/k%d", i%2, i), int64(i))
		}
		return out
	}
	const maxOps = bridge.DefaultMaxOpsPerTx
	want := fmt.Sprintf("more than the limit of %d", maxOps)
	if _, err := l.Node(0).Submit(ops(maxOps + 1)...); err == nil || !strings.Contains(err.Error(), "MaxOpsPerTx") || !strings.Contains(err.Error(), want) {
		t.Errorf("Node.Submit of %d operations: %v, want a refusal naming MaxOpsPerTx", maxOps+1, err)
	}
	if _, err := c.Submit(ops(maxOps + 1)...); err == nil || !strings.Contains(err.Error(), "MaxOpsPerTx") || !strings.Contains(err.Error(), want) {
		t.Errorf("Client.Submit of %d operations: %v, want a refusal naming MaxOpsPerTx", maxOps+1, err)
	}
	if o, err := c.Submit(ops(maxOps)...); err != nil || !o.Committed {
		t.Fatalf("a transaction of exactly MaxOpsPerTx operations: %v %v", outcomeString(o), err)
	}

	keys := make([]string, bridge.DefaultMaxKeysPerRead+1)
	for i := range keys {
		keys[i] = fmt.Sprintf("n0/k%d", i)
	}
	if _, err := l.Node(0).Read(keys...); err == nil || !strings.Contains(err.Error(), "MaxKeysPerRead") {
		t.Errorf("Node.Read of %d keys: %v, want a refusal naming MaxKeysPerRead", len(keys), err)
	}
	if _, err := c.Read(keys...); err == nil || !strings.Contains(err.Error(), "MaxKeysPerRead") {
		t.Errorf("Client.Read of %d keys: %v, want a refusal naming MaxKeysPerRead", len(keys), err)
	}
	vals, err := c.Read(keys[:bridge.DefaultMaxKeysPerRead]...)
	if err != nil || len(vals) != bridge.DefaultMaxKeysPerRead {
		t.Fatalf("a read of exactly MaxKeysPerRead keys: %d values, %v", len(vals), err)
	}
	if vals[2].Value != 2 {
		t.Errorf("n0/k2 = %d, want 2", vals[2].Value)
	}
}
