package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"twopc/actors/actortest"
)

// --http serves the live web view at / beside the metrics: the page, and a
// stream whose first frame shows the four nodes, the demo's transactions
// and every action (the browser is on this machine). The stream ends when
// the command does.
func TestHTTPServesTheWebView(t *testing.T) {
	args := []string{"--base-port", "0", "--data-dir", t.TempDir(), "--history", "", "--log-level", "warn", "--http", "127.0.0.1:0"}
	stdin, feed := io.Pipe()
	var out, errOut actortest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, stdin, &out, &errOut) }()
	defer feed.Close()

	first := regexp.MustCompile(`^http: serving on (http://127\.0\.0\.1:\d+)\n`)
	var base string
	actortest.Eventually(t, 30*time.Second, func() string {
		m := first.FindStringSubmatch(out.String())
		if m == nil || !strings.Contains(out.String(), "node 3: value = 4") {
			return fmt.Sprintf("no URL line first, or the demo has not finished; stdout %q", out.String())
		}
		base = m[1]
		return ""
	})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(page), "static/app.js") {
		t.Fatalf("GET /: %d\n%.200s", res.StatusCode, page)
	}
	res, err = client.Get(base + "/events")
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
	for _, want := range []string{`"title":"in-process cluster of 4 nodes"`, `"crash"`, `"resolve"`, `"tx":"0.1.1"`, `"tx":"2.1.1"`} {
		if !strings.Contains(hello, want) {
			t.Errorf("first frame lacks %s: %.400s", want, hello)
		}
	}
	feed.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d\nstderr:\n%s", code, errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the command did not end with a browser attached")
	}
	for sc.Scan() { // the stream ends with the command
	}
	res.Body.Close()
}
