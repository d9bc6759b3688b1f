package bank

import (
	"errors"
	"strings"
	"testing"

	"twopc/messages"
)

// CheckTotal passes on a consistent read, names a read that is off by the
// amount it is off, and tells a failed read apart.
func TestCheckTotal(t *testing.T) {
	b, f := setUp(t, Config{Nodes: 2, AccountsPerNode: 2, Initial: 100})
	if b.Total() != 400 {
		t.Fatalf("Total = %d, want 400", b.Total())
	}
	if err := b.CheckTotal(f); err != nil {
		t.Fatalf("consistent bank: %v", err)
	}
	if got := f.reads[len(f.reads)-1]; got != 4 {
		t.Fatalf("CheckTotal read %d keys in its call, want all 4 accounts in one", got)
	}
	// Half a transfer: the debit without its credit.
	f.mu.Lock()
	f.apply([]messages.Op{messages.Add("n0/acct-0", -30)})
	f.mu.Unlock()
	err := b.CheckTotal(f)
	if err == nil || errors.Is(err, ErrReadFailed) || !strings.Contains(err.Error(), "adds up to 370, not 400 (-30)") {
		t.Fatalf("half a transfer: %v", err)
	}
	if err := b.CheckTotal(failingReads{f}); !errors.Is(err, ErrReadFailed) {
		t.Fatalf("a failed read: %v, want ErrReadFailed", err)
	}
}
