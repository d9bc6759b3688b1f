package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// An action is taken only when posted as JSON from the page's own origin:
// another site's page (by Origin or Sec-Fetch-Site), a plain form post, a
// GET, and a name that was made to point at this loopback server (DNS
// rebinding) are all refused, and nothing reaches the cluster.
func TestActionsRefusedFromAnotherOrigin(t *testing.T) {
	src := &fakeSource{nodes: 2, actions: []string{ActionCrash, ActionHeal}}
	base := newServer(t, NewHandler(src, Options{}))
	for _, c := range []struct {
		name    string
		headers []string
		code    int
		want    string
	}{
		{"another origin", []string{"Origin", "http://evil.example", "Sec-Fetch-Site", ""}, http.StatusForbidden, "another origin"},
		{"cross-site fetch", []string{"Origin", "", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "another origin"},
		{"same-site fetch", []string{"Origin", "", "Sec-Fetch-Site", "same-site"}, http.StatusForbidden, "another origin"},
		{"a form post", []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType, "application/json"},
		{"a rebound name", []string{"Host", "evil.example", "Origin", "http://evil.example"}, http.StatusMisdirectedRequest, "loopback name"},
	} {
		code, ans := post(t, base, `{"do":"crash","node":1}`, c.headers...)
		if code != c.code || ans.OK || !strings.Contains(ans.Message, c.want) {
			t.Errorf("%s: %d %+v, want %d saying %q", c.name, code, ans, c.code, c.want)
		}
	}
	res, err := plain.Get(base + "api/act")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET api/act: %d, want 405", res.StatusCode)
	}
	// Reading is refused under a rebound name too.
	req, _ := http.NewRequest(http.MethodGet, base+"events", nil)
	req.Host = "evil.example:80"
	if res, err := plain.Do(req); err != nil || res.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET /events as evil.example: %v %v, want 421", res.StatusCode, err)
	} else {
		res.Body.Close()
	}
	if got := src.actedOn(); len(got) != 0 {
		t.Fatalf("refused requests reached the source: %+v", got)
	}

	// The page itself (same origin, JSON, by name or address) acts.
	if code, ans := post(t, base, `{"do":"heal"}`); code != http.StatusOK || !ans.OK || ans.Message != "done: heal" {
		t.Errorf("same-origin POST: %d %+v", code, ans)
	}
	localhost := strings.Replace(base, "127.0.0.1", "localhost", 1)
	if code, ans := post(t, base, `{"do":"heal"}`, "Host", strings.TrimSuffix(strings.TrimPrefix(localhost, "http://"), "/"), "Origin", strings.TrimSuffix(localhost, "/")); code != http.StatusOK || !ans.OK {
		t.Errorf("same-origin POST as localhost: %d %+v", code, ans)
	}
	if got := src.actedOn(); len(got) != 2 {
		t.Errorf("%d actions taken, want the 2 same-origin ones", len(got))
	}
}

// A browser on another host watches but does not act, unless the view is
// told to take actions from anywhere; a source without actions takes none.
func TestActionsOnlyFromThisMachine(t *testing.T) {
	src := &fakeSource{nodes: 2, actions: []string{ActionCrash}}
	act := func(h *Handler, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "http://twopc.example/api/act", strings.NewReader(`{"do":"crash","node":0}`))
		req.RemoteAddr = remote
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	h := NewHandler(src, Options{})
	defer h.Close()
	if w := act(h, "192.0.2.7:5555"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "only from a browser on the cluster's own machine") {
		t.Errorf("from another host: %d %s", w.Code, w.Body)
	}
	if got := src.actedOn(); len(got) != 0 {
		t.Fatalf("an action from another host was taken: %+v", got)
	}
	if w := act(h, "[::1]:5555"); w.Code != http.StatusOK {
		t.Errorf("from this machine: %d %s", w.Code, w.Body)
	}
	anywhere := NewHandler(src, Options{ActFromAnywhere: true})
	defer anywhere.Close()
	if w := act(anywhere, "192.0.2.7:5555"); w.Code != http.StatusOK {
		t.Errorf("from another host with ActFromAnywhere: %d %s", w.Code, w.Body)
	}
	watcher := NewHandler(&fakeSource{nodes: 2}, Options{})
	defer watcher.Close()
	if w := act(watcher, "127.0.0.1:5555"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "not taken from this page") {
		t.Errorf("a source that takes no action: %d %s", w.Code, w.Body)
	}
	// What a remote page is told: no actions, and why.
	sub, err := h.hub.subscribe(h.mayAct(httptest.NewRequest(http.MethodGet, "http://twopc.example/events", nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.hub.unsubscribe(sub)
	if hello := string(<-sub.ch); !strings.Contains(hello, `"actions":[]`) || !strings.Contains(hello, "actionsWhy") {
		t.Errorf("a remote browser's hello: %s", hello)
	}
}
