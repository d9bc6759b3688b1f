package metrics

import (
	"fmt"
	"net/http"
	"testing"
)

// Handle mounts a handler beside the endpoint's own, while it serves: the
// page at "/" gets what no other pattern takes, and /metrics, /healthz
// and /readyz stay the endpoint's.
func TestHandleMountsBesideTheEndpoints(t *testing.T) {
	ep, err := ForNode("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	base := ep.URL()
	if code, _ := get(t, base+"/"); code != http.StatusNotFound {
		t.Fatalf("GET / before anything is mounted: %d, want 404", code)
	}
	ep.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	if code, body := get(t, base+"/"); code != http.StatusOK || body != "page /" {
		t.Errorf("GET / once mounted: %d %q", code, body)
	}
	if code, body := get(t, base+"/events"); code != http.StatusOK || body != "page /events" {
		t.Errorf("GET /events once mounted: %d %q", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz with a page at /: %d %q", code, body)
	}
	var nilEndpoint *Endpoint
	nilEndpoint.Handle("/", http.NotFoundHandler()) // must not panic
}
