package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

// The web tests' rig: an in-process cluster with its view served by an
// httptest server, a reader of the view's frames, a fake source for the
// hub's own tests, and a real browser (Chromium, driven with chromedp).

func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }

// rig is a four-node cluster and its view.
type rig struct {
	l   *cluster.Local
	rec *trace.Recorder
	src *LocalSource
	h   *Handler
	srv *httptest.Server
	url string
}

// newRig starts a cluster of four nodes and serves its view. Cleanup stops
// the view before the server and the server before the cluster; a browser
// made after the rig is closed before all of them.
func newRig(t *testing.T, opts Options) *rig {
	t.Helper()
	rec := trace.NewRecorder(1000)
	src := NewLocalSource(4, rec)
	// 2PC: the resolve test needs a transaction that blocks, and settled
	// waits for the coordinator's END, which only 2PC logs.
	l, err := cluster.StartLocal(cluster.LocalConfig{
		Nodes: 4, DataDir: t.TempDir(), Tracer: rec, CrashAtSteps: true, Protocol: actors.TwoPC,
		Timing: actors.Timing{VoteTimeout: 2 * time.Second, InDoubtAfter: 500 * time.Millisecond},
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}), Observers: src.Observers(nil),
	})
	if err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	t.Cleanup(func() { _ = l.Stop() })
	src.Attach(l)
	h := NewHandler(src, opts)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = h.Close() })
	return &rig{l: l, rec: rec, src: src, h: h, srv: srv, url: srv.URL + "/"}
}

// newServer serves h on a loopback port until the test ends; the URL
// ends with "/". Made after h, so that h closes first.
func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if c, ok := h.(interface{ Close() error }); ok {
		t.Cleanup(func() { _ = c.Close() })
	}
	return srv.URL + "/"
}

// client is a client of node i, closed when the test ends.
func (r *rig) client(t *testing.T, i int) *cluster.Client {
	t.Helper()
	c, err := cluster.Dial(r.l.Members()[i])
	if err != nil {
		t.Fatalf("dial node %d: %v", i, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// settled waits until tx's trace shows its coordinator's END: every event
// of it has been recorded.
func (r *rig) settled(t *testing.T, tx messages.TxID) []trace.Event {
	t.Helper()
	var evs []trace.Event
	actortest.Eventually(t, 20*time.Second, func() string {
		evs = r.rec.Events(tx)
		for _, e := range evs {
			if e.Kind == trace.LogWrite && e.What == messages.RecEnd.String() {
				return ""
			}
		}
		return fmt.Sprintf("no END in the trace of %v yet (%d events)", tx, len(evs))
	})
	return evs
}

// frames reads the frames of an /events stream.
type frames struct {
	res *http.Response
	sc  *bufio.Scanner
}

func openFrames(t *testing.T, url string) *frames {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"events", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	return &frames{res: res, sc: sc}
}

// next is the next frame; it fails the test when the stream ends.
func (f *frames) next(t *testing.T) frameJSON {
	t.Helper()
	for f.sc.Scan() {
		line := f.sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var fr frameJSON
		if err := json.Unmarshal([]byte(data), &fr); err != nil {
			t.Fatalf("a frame that is not JSON: %v\n%s", err, data)
		}
		return fr
	}
	t.Fatalf("the event stream ended: %v", f.sc.Err())
	return frameJSON{}
}

// until reads frames until cond holds for one.
func (f *frames) until(t *testing.T, what string, cond func(frameJSON) bool) frameJSON {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if fr := f.next(t); cond(fr) {
			return fr
		}
	}
	t.Fatalf("no frame with %s in 2000 frames", what)
	return frameJSON{}
}

// fakeSource is a Source with nothing behind it: Snapshot returns cards
// of its nodes, all up; Watch hands out its sink; Act records what it
// was told.
type fakeSource struct {
	nodes   int
	actions []string

	mu      sync.Mutex
	sink    Sink
	watches int
	acted   []Action
	snaps   int
}

func (f *fakeSource) Info() Info {
	return Info{Title: "fake", Nodes: f.nodes, Actions: f.actions}
}

func (f *fakeSource) Snapshot(context.Context) (*Snapshot, error) {
	f.mu.Lock()
	f.snaps++
	f.mu.Unlock()
	s := &Snapshot{}
	for i := 0; i < f.nodes; i++ {
		s.Nodes = append(s.Nodes, NodeStatus{ID: int32(i), State: StateUp, Protocol: "fake"})
	}
	return s, nil
}

func (f *fakeSource) Trace(context.Context, messages.TxID) ([]trace.Event, error) { return nil, nil }

func (f *fakeSource) Recent(context.Context, int) ([]TxEnd, error) { return nil, nil }

func (f *fakeSource) Watch(s Sink) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sink = s
	f.watches++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.sink == s {
			f.sink = nil
		}
	}
}

// watching is the sink set now, or nil.
func (f *fakeSource) watching() Sink {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sink
}

func (f *fakeSource) Act(_ context.Context, a Action) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acted = append(f.acted, a)
	return "done: " + a.Do, nil
}

func (f *fakeSource) actedOn() []Action {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Action(nil), f.acted...)
}

// --- a real browser ---

// browserEnv set to 1 means the browser tests must run: .ci/run sets it
// after installing Chromium, and a missing browser is then a failure.
const browserEnv = "TWOPC_BROWSER_TESTS"

// artifactsEnv names a directory for the screenshots the browser tests
// take (each test in a folder of its own); without it, the test's temporary
// directory.
const artifactsEnv = "TWOPC_ARTIFACTS"

const installHint = "apt-get install -y --no-install-recommends chromium"

// chromePath finds the browser: $CHROME_PATH, else chromium on $PATH.
// Without TWOPC_BROWSER_TESTS=1 the test is skipped, saying how to run it.
func chromePath(t *testing.T) string {
	t.Helper()
	if os.Getenv(browserEnv) != "1" {
		t.Skipf("browser test skipped: set %s=1 to run it in Chromium (%s; CHROME_PATH names another binary)", browserEnv, installHint)
	}
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("%s=1 but no Chromium found (not on $PATH, no $CHROME_PATH): install it with %s", browserEnv, installHint)
	return ""
}

// browser is one headless Chromium with one tab.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// newBrowser starts Chromium with a width×height viewport. Make it after
// the rig: it must close first.
func newBrowser(t *testing.T, width, height int64) *browser {
	t.Helper()
	path := chromePath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root Chromium will not start otherwise
		// Keep the browser off the network: it reaches only this machine.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.WindowSize(int(width), int(height)),
	)
	// The whole test's bound sits on the allocator's parent: a timeout on
	// the first Run's context would stop the browser with it.
	whole, cancelWhole := context.WithTimeout(context.Background(), 4*time.Minute)
	alloc, cancelAlloc := chromedp.NewExecAllocator(whole, opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	b := &browser{t: t, ctx: ctx, artifacts: artifactsDir(t)}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		cancelTab()
		cancelAlloc()
		cancelWhole()
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelWhole()
		<-done
	})
	return b
}

// artifactsDir is where a test's screenshots go, said in its log.
func artifactsDir(t *testing.T) string {
	dir := t.TempDir()
	if base := os.Getenv(artifactsEnv); base != "" {
		dir = filepath.Join(base, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("artifacts directory: %v", err)
		}
	}
	return dir
}

// do runs steps, each run bounded.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v%s", what, err, b.consoleNote())
	}
}

// eval evaluates a JavaScript expression in the page into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v%s", expr, err, b.consoleNote())
	}
	if err := json.Unmarshal(raw, out); err != nil {
		b.t.Fatalf("evaluate %s: %v (%s)", expr, err, raw)
	}
}

// wait waits until a JavaScript expression is true in the page: for an
// event the page shows, not for a time.
func (b *browser) wait(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(50*time.Second))); err != nil {
		b.t.Fatalf("waiting for %s (%s): %v%s", what, expr, err, b.consoleNote())
	}
}

// count is how many elements match a CSS selector.
func (b *browser) count(sel string) int {
	b.t.Helper()
	var n int
	b.eval(fmt.Sprintf(`document.querySelectorAll(%q).length`, sel), &n)
	return n
}

// open loads url and waits for the first frame to have drawn the cards.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url))
	b.wait("the first frame", `document.querySelectorAll('.card').length > 0 && document.getElementById('conn').dataset.state === 'live'`)
}

// screenshot saves the whole page as name.png among the test's artifacts.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.artifacts, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// errors are the console's errors and uncaught exceptions so far.
func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			out = append(out, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
		}
	}
	return out
}

func (b *browser) consoleNote() string {
	if errs := b.errors(); len(errs) > 0 {
		return "\nconsole errors:\n" + strings.Join(errs, "\n")
	}
	return ""
}

// noConsoleErrors fails the test if the page logged an error.
func (b *browser) noConsoleErrors() {
	b.t.Helper()
	if errs := b.errors(); len(errs) > 0 {
		b.t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// chromedpClick clicks the first element sel matches, once it is visible.
func chromedpClick(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel))
}
