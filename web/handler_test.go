package web

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"twopc/messages"
	"twopc/trace"
)

var plain = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// get returns a GET's status, content type and body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	res, err := plain.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, res.Header.Get("Content-Type"), string(b)
}

// post sends an action as the page does (same origin, JSON) and returns
// the status and the answer.
func post(t *testing.T, base, body string, headers ...string) (int, actResult) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"api/act", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", strings.TrimSuffix(base, "/"))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1] // the client sends req.Host, not a Host header
			continue
		}
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := plain.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", body, err)
	}
	defer res.Body.Close()
	var out actResult
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: the answer is not JSON: %v", body, err)
	}
	return res.StatusCode, out
}

// The page and its two assets are served from the binary, and nothing in
// them points anywhere else: no CDN, no font, nothing to fetch offline.
func TestPageAndAssetsEmbeddedNothingExternal(t *testing.T) {
	h := NewHandler(&fakeSource{nodes: 1}, Options{})
	defer h.Close()
	srv := newServer(t, h)
	code, ctype, page := get(t, srv)
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/html") {
		t.Fatalf("GET /: %d %s", code, ctype)
	}
	res, err := plain.Get(srv)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q does not keep the page to its own origin", csp)
	}
	assets := map[string]string{"static/app.js": "text/javascript", "static/style.css": "text/css"}
	for path, want := range assets {
		if !strings.Contains(page, `"`+path+`"`) {
			t.Errorf("the page does not load %s", path)
		}
		code, ctype, body := get(t, srv+path)
		if code != http.StatusOK || !strings.HasPrefix(ctype, want) || len(body) < 1000 {
			t.Errorf("GET /%s: %d %s, %d bytes", path, code, ctype, len(body))
		}
		assets[path] = body
	}
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)
	for name, body := range map[string]string{"index.html": page, "app.js": assets["static/app.js"], "style.css": assets["static/style.css"]} {
		for _, m := range external.FindAllString(body, -1) {
			if m != "http://www.w3.org" { // the SVG namespace, a name and never fetched
				t.Errorf("%s refers to %q", name, m)
			}
		}
	}
	for _, path := range []string{"nothing-here", "static/", "static/nothing.js"} {
		if code, _, _ := get(t, srv+path); code != http.StatusNotFound {
			t.Errorf("GET /%s: %d, want 404", path, code)
		}
	}
}

// The live stream opens with a hello (what is shown, which actions this
// browser may take, the recent transactions), then frames with the cards;
// a transaction submitted shows up with its participants, its messages
// and its second on the chart; an action posted from the page crashes a
// node, and the frames show it down with its window open.
func TestEventsStreamTheClusterLive(t *testing.T) {
	r := newRig(t, Options{})
	before, err := r.client(t, 0).Submit(messages.Add(messages.EverywhereKey, 1))
	if err != nil || !before.Committed {
		t.Fatalf("submit: %+v %v", before, err)
	}
	r.settled(t, before.Tx)
	fr := openFrames(t, r.url)
	hello := fr.next(t)
	if hello.Hello == nil || hello.Hello.Nodes != 4 || !slices.Contains(hello.Hello.Actions, ActionCrash) {
		t.Fatalf("first frame is not a hello for 4 nodes with actions: %+v", hello.Hello)
	}
	if !slices.ContainsFunc(hello.Txs, func(x txJSON) bool { return x.Tx == before.Tx.String() && x.Outcome == OutcomeCommitted }) {
		t.Errorf("the hello lists %+v, not %v (committed before the page opened)", hello.Txs, before.Tx)
	}
	fr.until(t, "four cards up", func(f frameJSON) bool {
		up := 0
		for _, c := range f.Nodes {
			if c.State == StateUp && c.Protocol != "" && c.InFlight >= 0 {
				up++
			}
		}
		return up == 4
	})

	o, err := r.client(t, 2).Submit(messages.Add(messages.EverywhereKey, 1))
	if err != nil || !o.Committed {
		t.Fatalf("submit: %+v %v", o, err)
	}
	var listed, drawn, charted bool
	fr.until(t, "the transaction listed, drawn and charted", func(f frameJSON) bool {
		for _, x := range f.Txs {
			if x.Tx == o.Tx.String() {
				if x.Outcome != OutcomeCommitted || x.Node != 2 || !slices.Equal(x.Participants, []int32{0, 1, 2, 3}) {
					t.Errorf("listed as %+v", x)
				}
				listed = true
			}
		}
		for _, m := range f.Msgs {
			if m.Tx == o.Tx.String() && m.What == "Prepare" && m.From == 2 {
				drawn = true
			}
		}
		for _, p := range f.Series {
			charted = charted || p.Commits > 0
		}
		return listed && drawn && charted
	})

	if code, ans := post(t, r.url, `{"do":"crash","node":3}`); code != http.StatusOK || !ans.OK || !strings.Contains(ans.Message, "node 3 crashed") {
		t.Fatalf("crash from the page: %d %+v", code, ans)
	}
	fr.until(t, "node 3 down, its window open", func(f frameJSON) bool {
		down := len(f.Nodes) == 4 && f.Nodes[3].State == StateDown
		open := slices.ContainsFunc(f.Windows, func(w windowJSON) bool { return w.Kind == "crash" && w.To == 0 && strings.Contains(w.Label, "node 3") })
		return down && open
	})
	if code, ans := post(t, r.url, `{"do":"crash","node":3}`); code != http.StatusConflict || !strings.Contains(ans.Message, "already down") {
		t.Errorf("crash a node that is down: %d %+v", code, ans)
	}
}

// A transaction's events come as its diagram's data, headed by the same
// summary as the prompt's trace; bad and unknown ids are refused with why.
func TestTraceEndpoint(t *testing.T) {
	r := newRig(t, Options{})
	o, err := r.client(t, 1).Submit(messages.Set("n2/k", 5))
	if err != nil || !o.Committed {
		t.Fatalf("submit: %+v %v", o, err)
	}
	evs := r.settled(t, o.Tx)
	code, _, body := get(t, r.url+"api/trace?tx="+o.Tx.String())
	if code != http.StatusOK {
		t.Fatalf("trace: %d %s", code, body)
	}
	var tj traceJSON
	if err := json.Unmarshal([]byte(body), &tj); err != nil {
		t.Fatal(err)
	}
	if tj.Summary != trace.Summary(o.Tx, evs) || tj.Nodes != 4 || len(tj.Events) < len(evs) {
		t.Errorf("trace: summary %q, %d lanes, %d events; want %q, 4, at least %d", tj.Summary, tj.Nodes, len(tj.Events), trace.Summary(o.Tx, evs), len(evs))
	}
	if tj.Events[0].Ms != 0 || tj.Events[0].Text != evs[0].String() {
		t.Errorf("first event %+v, want %q at 0", tj.Events[0], evs[0])
	}
	for _, c := range []struct{ q, want string }{
		{"x.y", "is not a transaction id"},
		{"3.1.999", "no trace of 3.1.999"},
	} {
		code, _, body := get(t, r.url+"api/trace?tx="+c.q)
		if code < 400 || !strings.Contains(body, c.want) {
			t.Errorf("trace %s: %d %s, want an error saying %q", c.q, code, body, c.want)
		}
	}
}

// A bad action is refused before anything is done, with what was wrong.
func TestActionInputErrorsNameWhatWasWrong(t *testing.T) {
	r := newRig(t, Options{})
	for _, c := range []struct{ body, want string }{
		{`{"do":"crash"}`, "crash: no node given"},
		{`{"do":"crash","node":9}`, "unknown node 9 (nodes are 0-3)"},
		{`{"do":"partition","node":1,"peer":1}`, "cannot cut node 1 off from itself"},
		{`{"do":"skew","node":1,"skew":"fast"}`, `skew "fast" is not a duration`},
		{`{"do":"skew","node":1,"skew":"48h"}`, "more than 24h0m0s either way"},
		{`{"do":"faults","drop":2}`, "faults: "},
		{`{"do":"faults","delay":0.1,"maxDelay":"soon"}`, `maxDelay "soon" is not a duration`},
		{`{"do":"resolve","tx":"0.1"}`, `"0.1" is not a transaction id`},
		{`{"do":"resolve","tx":"7.1.1","decision":"commit"}`, "names node 7, which does not exist"},
		{`{"do":"resolve","tx":"0.1.1","decision":"maybe"}`, "decision must be commit or abort"},
		{`{"do":"explode"}`, `unknown action "explode"`},
		{`{}`, "no action given"},
		{`{"do":"heal","please":true}`, "unknown field"},
		{`not json`, "not valid JSON"},
	} {
		code, ans := post(t, r.url, c.body)
		if code != http.StatusBadRequest || ans.OK || !strings.Contains(ans.Message, c.want) {
			t.Errorf("%s: %d %+v, want 400 saying %q", c.body, code, ans, c.want)
		}
	}
	for i := range 4 {
		if r.l.Up(i) == nil {
			t.Errorf("node %d went down on a refused action", i)
		}
	}
	if parts := r.l.Partitions(); len(parts) != 0 {
		t.Errorf("links cut by refused actions: %v", parts)
	}
	// And a good one, to be sure the refusals were not the only answer.
	if code, ans := post(t, r.url, `{"do":"skew","node":1,"skew":"+5s"}`); code != http.StatusOK || ans.Message != "node 1 clock skew +5s" {
		t.Errorf("skew: %d %+v", code, ans)
	}
	if got := r.l.Skew(1).String(); got != "5s" {
		t.Errorf("node 1's skew is %s after the page set +5s", got)
	}
	if code, ans := post(t, r.url, `{"do":"resolve","tx":"0.1.5","decision":"abort"}`); code != http.StatusConflict || !strings.Contains(ans.Message, "not in doubt") {
		t.Errorf("resolve a transaction in doubt nowhere: %d %+v, want 409 saying so", code, ans)
	}
}
