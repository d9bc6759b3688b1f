package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// --http: node processes serve /metrics, /healthz and /readyz; the
// transactions a node coordinates are counted there, with no node label
// (one node per process) and nothing per transaction; a node killed with
// SIGKILL answers nothing (not ready), and once restarted on its log it is
// ready again.
func TestProcessMetricsAndReadiness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startProcClusterHTTP(t, 3, "metrics", true)
	base := make([]string, 3)
	for id := range base {
		base[id] = "http://" + c.http[id]
		if out, want := c.proc(id).stdout.String(), "http: serving on "+base[id]+"\n"; !strings.HasPrefix(out, want) {
			t.Fatalf("node %d stdout %q, want it to start with %q", id, out, want)
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body, err := httpGet(base[id] + path); err != nil || code != http.StatusOK {
				t.Fatalf("node %d %s: %d %q %v", id, path, code, body, err)
			}
		}
	}

	cl := newRPCClient(c.peers, c.certs, 0)
	defer cl.Close()
	for _, ops := range [][]messages.Op{
		{messages.Set("n1/a", 5)},
		{messages.Add(messages.EverywhereKey, 1)},
		{messages.AddFloor("n1/a", -10, 0), messages.Add("n2/b", 10)}, // node 1 votes no
	} {
		if _, err := cl.Submit(0, ops...); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrapeMetrics(t, base[0])
	for _, m := range []struct {
		outcome, reason string
		want            float64
	}{{"committed", "none", 2}, {"aborted", "vote_no", 1}, {"unknown", "node_down", 0}} {
		if got, ok := sample(fams, "twopc_transactions_total", map[string]string{"outcome": m.outcome, "reason": m.reason}); !ok || got != m.want {
			t.Errorf("node 0 twopc_transactions_total{outcome=%s,reason=%s} = %v (present %v), want %v", m.outcome, m.reason, got, ok, m.want)
		}
	}
	if got, _ := sample(fams, "twopc_transaction_duration_seconds", nil); got != 3 {
		t.Errorf("node 0 twopc_transaction_duration_seconds counts %v, want 3", got)
	}
	txLike := regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	for name, f := range fams {
		if !strings.HasPrefix(name, "twopc_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" || txLike.MatchString(l.GetValue()) {
					t.Errorf("%s has label %s=%q: one node per process needs no node label, and no label names a transaction", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	// SIGKILL: nothing answers on its HTTP port, so it is not ready.
	c.kill(1)
	if code, body, err := httpGet(base[1] + "/readyz"); err == nil {
		t.Fatalf("node 1 /readyz after SIGKILL: %d %q, want no answer", code, body)
	}
	// Node 0 sees its link to node 1 fail once it has something to send.
	if _, err := cl.Submit(0, messages.Set("n1/c", 1)); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 20*time.Second, func() string {
		if v, ok := sample(scrapeMetrics(t, base[0]), "twopc_peer_up", map[string]string{"peer": "1"}); !ok || v != 0 {
			return fmt.Sprintf("node 0's twopc_peer_up{peer=1} = %v (present %v) with node 1 killed, want 0", v, ok)
		}
		return ""
	})
	c.start(1) // waits for its serving line: recovered from its log
	if code, body, err := httpGet(base[1] + "/readyz"); err != nil || code != http.StatusOK || body != "ready\n" {
		t.Fatalf("node 1 /readyz after restart: %d %q %v", code, body, err)
	}
	if v, _ := sample(scrapeMetrics(t, base[1]), "twopc_up", nil); v != 1 {
		t.Errorf("node 1 twopc_up after restart = %v, want 1", v)
	}
	actortest.Eventually(t, 20*time.Second, func() string {
		if v, _ := sample(scrapeMetrics(t, base[0]), "twopc_peer_up", map[string]string{"peer": "1"}); v != 1 {
			return "node 0's twopc_peer_up{peer=1} not back to 1 after node 1's restart"
		}
		return ""
	})
}
