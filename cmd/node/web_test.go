package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"twopc/actors/actortest"
)

// --http serves the live web view at /: the page, and a stream whose first
// frame says which node it shows and that it takes no action (the prompt
// does). The stream ends when the node stops.
func TestHTTPServesTheWebView(t *testing.T) {
	addr := freePorts(t, 1)[0]
	certs := makeCerts(t, 1)
	args := certs.args("--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "warn", "--http", "127.0.0.1:0")
	var stdout, stderr actortest.Buffer
	signals := make(chan os.Signal, 2)
	done := make(chan error, 1)
	go func() { done <- run(args, &stdout, &stderr, signals) }()
	waitFor(t, &stdout, fmt.Sprintf("node 0 serving on %s (incarnation 1)\n", addr), 10*time.Second)
	m := regexp.MustCompile(`^http: serving on (http://\S+)\n`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no URL line first: %q", stdout.String())
	}
	base := m[1]
	if code, body, err := httpGet(base + "/"); err != nil || code != http.StatusOK || !strings.Contains(body, "static/app.js") {
		t.Fatalf("GET /: %d %v\n%.200s", code, err, body)
	}
	res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var hello string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			hello = d
			break
		}
	}
	for _, want := range []string{`"title":"node 0 of 1"`, `"actions":[]`} {
		if !strings.Contains(hello, want) {
			t.Errorf("first frame lacks %s: %.300s", want, hello)
		}
	}
	signals <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return with a browser attached")
	}
	for sc.Scan() { // the stream ends with the process's server
	}
	res.Body.Close()
}
