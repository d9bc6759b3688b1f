package metrics

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"twopc/actors/actortest"
)

// The metrics tests' rig: HTTP gets without kept-alive connections (no
// goroutine outlives a test), a scrape parsed into families, and lookups.

func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }

var web = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}

// get returns the status and body of url.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	res, err := web.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// scrape reads url's /metrics.
func scrape(t testing.TB, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// value is the sample of family name whose labels include want: a
// counter's or gauge's value, a histogram's count. ok is false if there is
// no such sample.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, w := range want {
			if got[k] != w {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// labelsOf lists, per twopc_ family, the label names its samples carry.
func labelsOf(fams map[string]*dto.MetricFamily) map[string][]string {
	out := map[string][]string{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "twopc_") {
			continue
		}
		seen := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				seen[l.GetName()] = true
			}
		}
		for l := range seen {
			out[name] = append(out[name], l)
		}
		sort.Strings(out[name])
	}
	return out
}

// eventually polls a scrape until cond holds.
func eventually(t testing.TB, base, what string, cond func(map[string]*dto.MetricFamily) bool) {
	t.Helper()
	actortest.Eventually(t, 30*time.Second, func() string {
		if cond(scrape(t, base)) {
			return ""
		}
		return what
	})
}
