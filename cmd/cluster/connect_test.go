package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"twopc/cluster"
	"twopc/identity"
)

// The "Done means", as a test: certificates made, four cmd/node
// processes started with --tls-dir and --http, `add 1`, `get value`,
// `status` and `indoubt` piped into `cmd/cluster --connect`, with the
// documented lines; the nodes' /metrics count the transaction; one node
// SIGKILLed (its /readyz answers nothing), started again (ready), and the
// same script works again.
func TestConnectDrivesNodeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	nodes := startNodeProcs(t, 4)
	script := "add 1\nget value\nstatus\nindoubt\n"
	want := func(seq, value int) []string {
		lines := []string{fmt.Sprintf(`committed 0\.1\.%d \(\d+ ms\)`, seq)}
		for i := range 4 {
			lines = append(lines, fmt.Sprintf(`value = %d  \(node %d\)`, value, i))
		}
		lines = append(lines, `node +address +state +in-flight +locks +in-doubt +log +last snapshot +skew`)
		for i, addr := range nodes.peers {
			lines = append(lines, fmt.Sprintf(`%d +%s +up +0 +0 +0 +[\d.]+ (B|KiB) +none +0`, i, strings.ReplaceAll(addr, ".", `\.`)))
		}
		return append(lines, `protocol: nonblocking`, `no transaction is in doubt`)
	}
	expectLines(t, plainSession(t, 0, script, nodes.connectArgs()...), want(1, 1)...)

	base := make([]string, 4)
	for i := range base {
		base[i] = "http://" + nodes.http[i]
	}
	committed := `twopc_transactions_total{outcome="committed",reason="none"}`
	if v := metricValue(t, base[0], committed); v != 1 {
		t.Fatalf("node 0 (the coordinator) counts %v committed, want 1", v)
	}
	if v := metricValue(t, base[1], committed); v != 0 {
		t.Fatalf("node 1 counts %v committed, want 0: it coordinated nothing", v)
	}

	nodes.kill(1)
	if code, body, err := httpGet(base[1] + "/readyz"); err == nil {
		t.Fatalf("node 1 /readyz after SIGKILL: %d %q, want no answer", code, body)
	}
	nodes.start(1)
	if code, body, err := httpGet(base[1] + "/readyz"); err != nil || code != http.StatusOK || body != "ready\n" {
		t.Fatalf("node 1 /readyz after its restart: %d %q %v", code, body, err)
	}
	expectLines(t, plainSession(t, 0, script, nodes.connectArgs()...), want(2, 2)...)
	if v := metricValue(t, base[0], committed); v != 2 {
		t.Fatalf("node 0 counts %v committed after the second script, want 2", v)
	}
}

// The operator's other commands against node processes: what needs the
// process itself is refused with how to do it; the rest act through the
// Admin service and print what the in-process prompt prints.
func TestConnectOperatorCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	nodes := startNodeProcs(t, 4)
	got := plainSession(t, 0, strings.Join([]string{
		"set n1/a=5 n2/b=1",
		"wait settled",
		"trace 0.1.1",
	}, "\n")+"\n", nodes.connectArgs()...)
	traceAt := traceStart(got, "0.1.1")
	expectTrace(t, got[traceAt:], "trace 0.1.1: committed; coordinator node 0, participants 1 2",
		"Prepare 0 → 1", "Prepare 0 → 1 received", "node 1 log PREPARED (forced)", "Vote yes 1 → 0",
		"node 0 log ACCEPTED (forced)", "Commit 0 → 2 received", "node 2 log COMMITTED (forced)", "Ack 2 → 0 received")
	expectLines(t, got[:traceAt], `committed 0\.1\.1 \(\d+ ms\)`, `settled: nothing in flight, locked or in doubt on the running nodes`)

	got = plainSession(t, 0, strings.Join([]string{
		"crash 1",
		"crash 1 at commit-logged",
		"restart 2",
		"loglevel",
		"loglevel info",
		"loglevel",
		"loglevel warn",
		"skew 3 +5s",
		"partition 0 2",
		"faults 3 drop=0.25 delay=0.5:20ms", // node 3 takes no part below
		"status",
		"faults 3",
		"set n2/x=1 via 0",
		"set n2/x=1 via 1",
		"heal",
		"faults 3 off",
		"skew 3 0",
		"get n1/a n2/b n2/x",
		"resolve 0.1.1 commit",
		"trace 0.9.9",
		"indoubt",
	}, "\n")+"\n", nodes.connectArgs()...)
	how := `error: %s needs to own node %d's process, which runs elsewhere: crash it with a signal \(kill -9 <pid> of node %d's process, or kill -KILL the container\), and restart it by starting that process again with the same flags \(it recovers from its log\)`
	row := func(i int, skew string) string {
		return fmt.Sprintf(`%d +%s +up +0 +0 +0 +[\d.]+ (B|KiB) +none +%s`, i, strings.ReplaceAll(nodes.peers[i], ".", `\.`), skew)
	}
	expectLines(t, got,
		fmt.Sprintf(how, "crash", 1, 1),
		fmt.Sprintf(how, "crash", 1, 1),
		fmt.Sprintf(how, "restart", 2, 2),
		`log level is warn`, `log level is info`, `log level is info`, `log level is warn`,
		`node 3 clock skew \+5s`,
		`partitioned node 0 from node 2`,
		`node 3 faults: drop=0\.25 dup=0 delay=0\.5:20ms reorder=0`,
		`node +address +state +in-flight +locks +in-doubt +log +last snapshot +skew`,
		row(0, "0"), row(1, "0"), row(2, "0"), row(3, `\+5s`),
		`partitioned: 0-2`,
		`protocol: nonblocking`,
		`node 3 faults: drop=0\.25 dup=0 delay=0\.5:20ms reorder=0 \(so far \d+ dropped, 0 duplicated, \d+ delayed, 0 reordered\)`,
		`aborted 0\.1\.2: vote timeout: no vote from node\(s\) 2 within 2s`,
		`committed 1\.1\.1 \(\d+ ms\)`,
		`healed: every link restored`,
		`node 3 faults off`,
		`node 3 clock skew cleared`,
		`n1/a = 5  \(node 1\)`, `n2/b = 1  \(node 2\)`, `n2/x = 1  \(node 2\)`,
		`error: 0\.1\.1 is not in doubt on any running node`,
		`error: no trace of 0\.9\.9 on any node that answered .*`,
		`no transaction is in doubt`,
	)
}

// --connect refuses what it cannot drive, before any command: nodes
// listed out of their order, a list longer than the cluster, and a
// directory without the admin certificate.
func TestConnectRefusesWhatItCannotDrive(t *testing.T) {
	dir := writeCerts(t, 2)
	l, err := cluster.StartLocal(cluster.LocalConfig{Nodes: 2, DataDir: t.TempDir(), Logger: hclog.NewNullLogger(),
		TLS: func(i int32) (*identity.Identity, error) { return identity.Load(dir, identity.Node(i)) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	m := l.Members()
	noAdmin := t.TempDir()
	for _, f := range []string{"ca.crt", "client.crt", "client.key"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(noAdmin, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		list, dir, want string
	}{
		{m[1] + "," + m[0], dir, fmt.Sprintf("error: --connect entry 0 is %s, which is node 1: list the nodes in node-id order, as their --peers", m[1])},
		{m[0] + "," + m[1] + "," + freePorts(t, 1)[0], dir, fmt.Sprintf("error: --connect lists 3 nodes, but the node at %s is a member of a cluster of 2", m[0])},
		{m[0] + "," + m[1], noAdmin, "error: --tls-dir " + noAdmin + ": the prompt acts as the operator and needs the admin certificate"},
	} {
		var out, errOut bytes.Buffer
		if code := run([]string{"--connect", c.list, "--tls-dir", c.dir, "--history", ""}, strings.NewReader("status\n"), &out, &errOut); code != 1 {
			t.Errorf("--connect %s: exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", c.list, code, out.String(), errOut.String())
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("--connect %s: stderr %q, want %q", c.list, errOut.String(), c.want)
		}
	}
	// In order, with the admin certificate, it drives them (here an
	// in-process cluster's nodes: the wire is the same).
	got := plainSession(t, 0, "add 1 via 1\nget value\n", "--connect", m[0]+","+m[1], "--tls-dir", dir, "--history", "")
	expectLines(t, got, `committed 1\.1\.1 \(\d+ ms\)`, `value = 1  \(node 0\)`, `value = 1  \(node 1\)`)
}
