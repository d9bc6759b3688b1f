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

// A heuristic resolve is refused while a majority of the transaction's
// acceptors is reachable — recovery decides then, without risk — and
// remains the operator's last resort once it is not (here two of the
// three acceptors are down as well as the coordinator). The participants
// ask only after a minute, so the transaction is still in doubt when the
// operator tries.
func TestResolveIsRefusedWhileRecoveryCanDecide(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-logged",
		"add 1 via 0",
		"resolve 0.1.2 abort",
		"crash 1",
		"crash 2",
		"resolve 0.1.2 commit",
		"get value",
	}, "\n")+"\n", "--protocol", "nonblocking", "--in-doubt-after", "1m")
	expectLines(t, got,
		`node 0 will crash when it next reaches commit-logged \(.*\)`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`error: refused: 0\.1\.2's acceptors \[0 1 2\] are reachable by a majority \(\[1 2\]\): its participants' recovery decides it without risk; .*`,
		`node 1 crashed \(power cut: log writes not yet synced are lost\)`,
		`node 2 crashed \(power cut: log writes not yet synced are lost\)`,
		`resolved 0\.1\.2: heuristic commit on node 3 .*`,
		`error: value on node 0: node 0 is down`, `error: value on node 1: node 1 is down`, `error: value on node 2: node 2 is down`,
		`value = 5  \(node 3\)`,
	)
}
