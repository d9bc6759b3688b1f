package main

import (
	"strings"
	"testing"
)

// The non-blocking commit's promise, from the prompt: the coordinator dies
// once commit is chosen, and without restarting it the other nodes finish
// the transaction among themselves — nothing left in doubt, the same value
// on nodes 1, 2 and 3 — with clocks 5 s apart; restarted, node 0 agrees.
func TestCoordinatorDeathBlocksNobodyUnderNonBlockingCommit(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"skew 0 +5s",
		"skew 2 -5s",
		"crash 0 at commit-logged",
		"add 1 via 0",
		"wait settled",
		"indoubt",
		"get value",
		"restart 0",
		"wait settled",
		"get value",
	}, "\n")+"\n", "--protocol", "nonblocking")
	expectLines(t, got,
		`node 0 clock skew \+5s`,
		`node 2 clock skew -5s`,
		`node 0 will crash when it next reaches commit-logged \(.*\)`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`settled: nothing in flight, locked or in doubt on the running nodes`,
		`no transaction is in doubt`,
		`error: value on node 0: node 0 is down`,
		`value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`settled: nothing in flight, locked or in doubt on the running nodes`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
	)
}
