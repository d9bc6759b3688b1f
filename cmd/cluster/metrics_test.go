package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"twopc/actors/actortest"
)

// --http 127.0.0.1:0: the command prints where it serves, as its first
// line; /readyz is ready once the nodes serve and names a crashed one;
// /metrics counts the demo's transactions per node; nothing is served
// once the command has ended.
func TestHTTPMetricsAndReadiness(t *testing.T) {
	args := []string{"--base-port", "0", "--data-dir", t.TempDir(), "--history", "", "--log-level", "warn", "--http", "127.0.0.1:0"}
	stdin, feed := io.Pipe()
	var out, errOut actortest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, stdin, &out, &errOut) }()
	defer func() {
		feed.Close()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit code %d\nstderr:\n%s", code, errOut.String())
			}
		case <-time.After(60 * time.Second):
			t.Error("the command did not end at the end of its input")
		}
	}()

	first := regexp.MustCompile(`^http: serving on (http://127\.0\.0\.1:\d+)\n`)
	var base string
	actortest.Eventually(t, 30*time.Second, func() string {
		m := first.FindStringSubmatch(out.String())
		if m == nil {
			return fmt.Sprintf("no URL line first; stdout %q", out.String())
		}
		base = m[1]
		return ""
	})
	actortest.Eventually(t, 30*time.Second, func() string {
		if !strings.Contains(out.String(), "node 3: value = 4") {
			return "the demo has not finished"
		}
		return ""
	})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	get := func(path string) (int, string) {
		res, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz after the demo: %d %q", code, body)
	}
	_, metrics := get("/metrics")
	// The demo coordinates one transaction on each node.
	for id := 0; id < 4; id++ {
		want := fmt.Sprintf(`twopc_transactions_total{node="%d",outcome="committed",reason="none"} 1`, id)
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	fmt.Fprintln(feed, "crash 2")
	actortest.Eventually(t, 30*time.Second, func() string {
		if code, body := get("/readyz"); code != http.StatusServiceUnavailable || body != "not ready: node 2 down\n" {
			return fmt.Sprintf("/readyz after crash 2: %d %q", code, body)
		}
		return ""
	})
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with a node down: %d", code)
	}
	feed.Close()
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d\nstderr:\n%s", code, errOut.String())
	}
	done <- 0 // for the deferred check
	if _, err := client.Get(base + "/healthz"); err == nil {
		t.Error("still serving HTTP after the command ended")
	}
}
