package actors

import (
	"math"
	"strings"
	"testing"

	"twopc/messages"
)

func TestLocksAddsShareAKeyExclusiveDoesNot(t *testing.T) {
	lt := newLockTable()
	zero := func(string) int64 { return 0 }
	if err := lt.acquire(tx(1), []messages.Op{messages.Add("k", 1)}, zero); err != nil {
		t.Fatal(err)
	}
	if err := lt.acquire(tx(2), []messages.Op{messages.Add("k", 2)}, zero); err != nil {
		t.Fatalf("two adds must share a key: %v", err)
	}
	if err := lt.acquire(tx(3), []messages.Op{messages.Set("k", 2)}, zero); err == nil || !strings.Contains(err.Error(), "locked by") {
		t.Fatalf("set must conflict with held adds, got %v", err)
	}
	lt.release(tx(1), []messages.Op{messages.Add("k", 1)})
	lt.release(tx(2), []messages.Op{messages.Add("k", 2)})
	if lt.held() != 0 {
		t.Fatalf("%d keys still locked", lt.held())
	}
	if err := lt.acquire(tx(3), []messages.Op{messages.Set("k", 2), messages.Add("j", 1)}, zero); err != nil {
		t.Fatal(err)
	}
	// All or nothing: j is free but k is not, so j must not be taken.
	if err := lt.acquire(tx(4), []messages.Op{messages.Add("j", 1), messages.Delete("k")}, zero); err == nil {
		t.Fatal("delete on an exclusively locked key admitted")
	}
	if lt.held() != 2 {
		t.Fatalf("a refused acquire left locks behind: %d keys locked", lt.held())
	}
}

func TestLocksEscrowKeepsFloorUnderConcurrentDecrements(t *testing.T) {
	lt := newLockTable()
	balance := func(string) int64 { return 100 }
	// Two withdrawals of 40 fit; a third would overdraw if all commit.
	for i := uint64(1); i <= 2; i++ {
		if err := lt.acquire(tx(i), []messages.Op{messages.AddFloor("acct", -40, 0)}, balance); err != nil {
			t.Fatalf("withdrawal %d: %v", i, err)
		}
	}
	if err := lt.acquire(tx(3), []messages.Op{messages.AddFloor("acct", -40, 0)}, balance); err == nil {
		t.Fatal("third withdrawal admitted: 100-120 < 0 if all commit")
	}
	// A floorless decrement must not break the floors already promised.
	if err := lt.acquire(tx(4), []messages.Op{messages.Add("acct", -30)}, balance); err == nil || !strings.Contains(err.Error(), "floor") {
		t.Fatalf("floorless decrement broke a held floor, got %v", err)
	}
	// Deposits are always fine, and do not count in the worst case.
	if err := lt.acquire(tx(5), []messages.Op{messages.Add("acct", 500)}, balance); err != nil {
		t.Fatal(err)
	}
	if err := lt.acquire(tx(6), []messages.Op{messages.AddFloor("acct", -30, 0)}, balance); err == nil {
		t.Fatal("withdrawal admitted on the strength of an uncommitted deposit")
	}
}

func TestApplyOpsChecksOverflowAndFloor(t *testing.T) {
	if _, err := applyOps(1<<62, []messages.Op{messages.Add("k", 1<<62), messages.Add("k", 1<<62)}); err == nil {
		t.Fatal("overflow not detected")
	}
	v, err := applyOps(5, []messages.Op{messages.Set("k", 10), messages.AddFloor("k", -10, 0), messages.Add("k", 3)})
	if err != nil || v != 3 {
		t.Fatalf("got %d, %v; want 3", v, err)
	}
	if _, err := applyOps(5, []messages.Op{messages.AddFloor("k", -6, 0)}); err == nil {
		t.Fatal("floor not enforced")
	}
}

// Escrow must keep overflow out in the worst case too: two increments that
// each fit but together overflow must not both be admitted, or the committed
// value wraps (and every floor on the key is broken).
func TestLocksConcurrentIncrementsCannotOverflow(t *testing.T) {
	lt := newLockTable()
	cur := func(string) int64 { return math.MaxInt64 - 5 }
	if err := lt.acquire(tx(1), []messages.Op{messages.Add("k", 5)}, cur); err != nil {
		t.Fatal(err)
	}
	if err := lt.acquire(tx(2), []messages.Op{messages.AddFloor("k", -1, 0)}, cur); err != nil {
		t.Fatal(err)
	}
	if err := lt.acquire(tx(3), []messages.Op{messages.Add("k", 5)}, cur); err == nil {
		// All three may commit: MaxInt64-5+5+5-1 wraps to a huge negative,
		// below tx(2)'s floor 0.
		t.Fatal("second increment admitted although both together overflow int64")
	}
}
