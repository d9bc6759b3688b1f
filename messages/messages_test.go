package messages

import (
	"fmt"
	"strings"
	"testing"
)

func TestTxIDRoundTrip(t *testing.T) {
	id := TxID{Node: 3, Incarnation: 7, Seq: 42}
	got, err := ParseTxID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseTxID(%q) = %v, %v", id.String(), got, err)
	}
	for _, bad := range []string{"", "1.2", "a.1.1", "1.0.1", "1.1.0", "-1.1.1", "1.1.1.1"} {
		if _, err := ParseTxID(bad); err == nil {
			t.Errorf("ParseTxID(%q) accepted", bad)
		}
	}
}

func TestOwners(t *testing.T) {
	all, err := Owners(EverywhereKey, 4)
	if err != nil || len(all) != 4 {
		t.Fatalf("value owned by %v, %v; want every node", all, err)
	}
	if o, err := Owners("n2/alice", 4); err != nil || len(o) != 1 || o[0] != 2 {
		t.Fatalf("n2/alice owned by %v, %v", o, err)
	}
	if _, err := Owners("n4/alice", 4); err == nil || !strings.Contains(err.Error(), "unknown node 4") {
		t.Fatalf("n4/alice in a 4-node cluster: %v", err)
	}
	// Hash ownership is deterministic and spreads keys over the members.
	seen := map[int32]bool{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "alice", "bob"} {
		o1, _ := Owners(k, 4)
		o2, _ := Owners(k, 4)
		if len(o1) != 1 || o1[0] != o2[0] {
			t.Fatalf("%s owned by %v then %v", k, o1, o2)
		}
		seen[o1[0]] = true
	}
	if len(seen) < 2 {
		t.Fatalf("ten keys all hashed to %v", seen)
	}
	// "n42" and "n1x/y" are ordinary keys, not owner prefixes.
	for _, k := range []string{"n42", "n1x/y"} {
		if _, err := Owners(k, 4); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
}

func TestValidateKey(t *testing.T) {
	for _, bad := range []string{"", "a b", "a=b", "tab\tkey", "n2/", strings.Repeat("k", MaxKeyLen+1)} {
		if err := ValidateKey(bad); err == nil {
			t.Errorf("ValidateKey(%q) accepted", bad)
		}
	}
	for _, good := range []string{"value", "n0/x", "alice", "acct-1", "ü"} {
		if err := ValidateKey(good); err != nil {
			t.Errorf("ValidateKey(%q): %v", good, err)
		}
	}
}

// Invalid UTF-8 is refused wherever a key is checked, with the key quoted
// (%q), so the error shows its bytes instead of printing U+FFFD for them.
func TestValidateKeyRefusesInvalidUTF8(t *testing.T) {
	for _, bad := range []string{"n1/a\xffb", "a\xff", "\xc3", "n0/\xed\xa0\x80"} { // the last: an encoded surrogate
		want := fmt.Sprintf("key %q: not valid UTF-8", bad)
		if err := ValidateKey(bad); err == nil || err.Error() != want {
			t.Errorf("ValidateKey(%q) = %v, want %q", bad, err, want)
		}
		if _, err := Owners(bad, 4); err == nil || err.Error() != want {
			t.Errorf("Owners(%q) = %v, want %q", bad, err, want)
		}
		if _, _, err := Split([]Op{Set("n0/ok", 1), Set(bad, 1)}, 4); err == nil || err.Error() != want {
			t.Errorf("Split with %q = %v, want %q", bad, err, want)
		}
		if err := CheckOwned([]Op{Set(bad, 1)}, 0, 4); err == nil || err.Error() != want {
			t.Errorf("CheckOwned with %q = %v, want %q", bad, err, want)
		}
	}
}

func TestSplitGroupsByOwnerInOrder(t *testing.T) {
	parts, byNode, err := Split([]Op{Set("n2/a", 1), Add(EverywhereKey, 1), Add("n2/a", 5), Delete("n0/b")}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 || parts[0] != 0 || parts[1] != 1 || parts[2] != 2 {
		t.Fatalf("participants %v", parts)
	}
	// Node 2 gets its ops in the order given.
	n2 := byNode[2]
	if len(n2) != 3 || n2[0].Kind != OpSet || n2[1].Key != EverywhereKey || n2[2].Value != 5 {
		t.Fatalf("node 2 ops %v", n2)
	}
	if _, _, err := Split(nil, 3); err == nil || !strings.Contains(err.Error(), "no operations") {
		t.Fatalf("empty transaction: %v", err)
	}
	if _, _, err := Split([]Op{{Key: "k", Kind: OpDelete, Value: 3}}, 3); err == nil {
		t.Fatal("delete with a value accepted")
	}
}

// Record kinds are written to logs by number: a new kind goes at the end,
// and the numbers of the old ones never change.
func TestRecordKindNumbersAreStable(t *testing.T) {
	kinds := []RecordKind{RecBoot, RecPrepared, RecCommitted, RecAborted, RecCommitDecision, RecEnd, RecHeuristic}
	for i, k := range kinds {
		if uint8(k) != uint8(i+1) {
			t.Errorf("%v is %d, want %d", k, uint8(k), i+1)
		}
	}
	r := Record{Kind: RecHeuristic, Tx: TxID{Node: 1, Incarnation: 2, Seq: 3}, Decision: DecisionAbort}
	if got := r.String(); got != "HEURISTIC abort 1.2.3" {
		t.Errorf("String() = %q", got)
	}
}

func TestCheckOpCountNamesTheLimit(t *testing.T) {
	if err := CheckOpCount(DefaultMaxOpsPerTx, DefaultMaxOpsPerTx); err != nil {
		t.Errorf("exactly the limit: %v", err)
	}
	err := CheckOpCount(DefaultMaxOpsPerTx+1, DefaultMaxOpsPerTx)
	if err == nil || !strings.Contains(err.Error(), "MaxOpsPerTx") || !strings.Contains(err.Error(), "1025 operations") {
		t.Errorf("one over the limit: %v", err)
	}
}
