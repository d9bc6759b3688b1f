package main

import (
	"strings"
	"testing"
)

// The coordinator crashes between COMMIT and the acks: its client cannot
// know the outcome, the participants are in doubt and wait for it, and once
// it restarts it finishes the commit everywhere. The trace shows it all.
func TestCoordinatorCrashBetweenCommitAndAcks(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-logged",
		"add 1 via 0",
		"indoubt",
		"get value",
		"restart 0",
		"get value",
		"wait settled",
		"trace 0.1.2",
	}, "\n")+"\n", "--in-doubt-after", "1m", "--protocol", "2pc") // 2PC: the participants block in doubt
	// The trace: COMMIT durable, the crash, no Commit from the dead node,
	// the restart, then Commit to every participant, their COMMITTED
	// records and acks, and END.
	traceAt := traceStart(got, "0.1.2")
	expectTrace(t, got[traceAt:], "trace 0.1.2: committed; coordinator node 0, participants 0 1 2 3",
		"node 0 log COMMIT (forced)", "node 0 crashed (power cut)", "node 0 restarted (incarnation 2)",
		"Commit 0 → 1", "Commit 0 → 1 received", "node 1 log COMMITTED (forced)", "Ack 1 → 0 received", "node 0 log END (lazy)")
	got = got[:traceAt]
	expectLines(t, got,
		`node 0 will crash when it next reaches commit-logged \(coordinator: COMMIT durable, no Commit sent yet\)`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: node crashed; the participants settle it \(see indoubt, trace 0\.1\.2\)`,
		`tx +node +age +waits for`,
		`0\.1\.2 +1 +\d.*s +coordinator node 0 \(down\); also asks node 0, 2, 3`,
		`0\.1\.2 +2 +\d.*s +coordinator node 0 \(down\); also asks node 0, 1, 3`,
		`0\.1\.2 +3 +\d.*s +coordinator node 0 \(down\); also asks node 0, 1, 2`,
		`error: value on node 0: node 0 is down`, `error: value on node 1: .*`, `error: value on node 2: .*`, `error: value on node 3: .*`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
		`settled: .*`,
	)
}

// With the coordinator down and every participant in doubt, nobody knows
// the outcome: the operator may force one (a heuristic decision). Here it
// matches what the coordinator logged, so the restart agrees with it.
func TestResolveForcesAHeuristicDecisionWhenNobodyKnows(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-logged",
		"add 1 via 0",
		"resolve 0.1.2 commit",
		"get value",
		"indoubt",
		"restart 0",
		"get value",
	}, "\n")+"\n", "--in-doubt-after", "1m", "--protocol", "2pc")
	expectLines(t, got,
		`node 0 will crash .*`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`resolved 0\.1\.2: heuristic commit on node 1, 2, 3 \(the coordinator's decision was unknown; if it decided otherwise, the nodes now disagree\)`,
		`error: value on node 0: node 0 is down`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
		`no transaction is in doubt`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
	)
}

// Once the coordinator is back, its log decides (no COMMIT: presumed
// abort), and the operator may not decide otherwise — nor at all.
func TestResolveIsRefusedWhenTheOutcomeIsKnown(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-decided",
		"add 1 via 0",
		"restart 0",
		"resolve 0.1.2 commit",
		"resolve 0.1.2 abort",
	}, "\n")+"\n", "--in-doubt-after", "1m", "--protocol", "2pc") // 2PC: the participants block in doubt
	expectLines(t, got,
		`node 0 will crash .*`,
		`node 0 crashed at commit-decided of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`refused: 0\.1\.2 is known to have aborted \(.*\).*`,
		`refused: 0\.1\.2 is known to have aborted \(.*\).*`,
	)
}

// The operator guesses wrong: a heuristic abort where the coordinator had
// logged COMMIT. Once the coordinator is back, the nodes disagree — and say
// so: the trace's summary reports the heuristic decision and the damage.
func TestWrongHeuristicDecisionIsReportedAsDamage(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-logged",
		"add 1 via 0",
		"resolve 0.1.2 abort",
		"restart 0",
		"get value",
		"indoubt",
		"trace 0.1.2",
	}, "\n")+"\n", "--in-doubt-after", "1m", "--protocol", "2pc") // 2PC: the participants block in doubt
	traceAt := traceStart(got, "0.1.2")
	expectTrace(t, got[traceAt:],
		"trace 0.1.2: committed (the operator forced a heuristic decision on node 1 2 3; heuristic damage on node 1 2 3); coordinator node 0, participants 0 1 2 3",
		"node 0 log COMMIT (forced)", "node 0 crashed (power cut)", "node 1 log HEURISTIC (forced)",
		"node 0 restarted (incarnation 2)", "Ack 1 → 0: heuristic damage")
	expectLines(t, got[:traceAt],
		`node 0 will crash .*`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`resolved 0\.1\.2: heuristic abort on node 1, 2, 3 .*`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`value = 5  \(node 0\)`, `value = 4  \(node 1\)`, `value = 4  \(node 2\)`, `value = 4  \(node 3\)`,
		`no transaction is in doubt`,
	)
}
