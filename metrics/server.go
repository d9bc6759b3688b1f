// Package metrics serves a node's metrics and health over HTTP: Prometheus
// /metrics, /healthz (the process is up) and /readyz (recovered from its log
// and serving). What the transactions' hot paths must count, a Recorder
// counts (the node's cluster.Observer); everything else is read from what
// the node already keeps when /metrics is scraped.
//
// One process serving one node (cmd/node) labels nothing; one serving
// several (cmd/cluster's Local) puts a node label on every twopc_ series,
// in one registry.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"twopc/cluster"
)

// Endpoint is the HTTP server of one process's metrics and health. Until
// the node (or cluster) it serves is handed over (Serve, ServeLocal), it is
// up but not ready: the node is still recovering from its log.
type Endpoint struct {
	recs     map[int32]*Recorder
	ids      []int32 // the nodes served, in order
	reg      *prometheus.Registry
	lis      net.Listener
	srv      *http.Server
	mux      *http.ServeMux
	served   chan struct{} // closed when the server goroutine ends
	mu       sync.Mutex
	nodeOf   func(id int32) *cluster.Node // nil until Serve or ServeLocal
	stopping bool
}

// ForNode listens on addr (host:port; port 0 picks one) for a process
// that runs node id alone: its series carry no node label.
func ForNode(addr string, id int32) (*Endpoint, error) {
	return listen(addr, []int32{id}, false)
}

// ForLocal listens on addr for a process that runs nodes 0..nodes-1: every
// twopc_ series carries node="<id>".
func ForLocal(addr string, nodes int) (*Endpoint, error) {
	ids := make([]int32, nodes)
	for i := range ids {
		ids[i] = int32(i)
	}
	return listen(addr, ids, true)
}

func listen(addr string, ids []int32, labelled bool) (*Endpoint, error) {
	e := &Endpoint{recs: make(map[int32]*Recorder), ids: ids, reg: prometheus.NewRegistry(), served: make(chan struct{})}
	e.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, id := range ids {
		var labels prometheus.Labels
		if labelled {
			labels = prometheus.Labels{"node": strconv.Itoa(int(id))}
		}
		r := NewRecorder(labels)
		e.recs[id] = r
		e.reg.MustRegister(r, newNodeCollector(func() *cluster.Node { return e.node(id) }, labels))
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: cannot listen on %s: %w", addr, err)
	}
	e.lis = lis
	mux := http.NewServeMux()
	// A collector that fails makes its series go missing, not the scrape.
	mux.Handle("/metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", e.readyz)
	e.mux = mux
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(e.served)
		_ = e.srv.Serve(lis) // ends with ErrServerClosed at Close
	}()
	return e, nil
}

// URL is where the endpoint serves, e.g. http://127.0.0.1:9100.
func (e *Endpoint) URL() string { return "http://" + e.lis.Addr().String() }

// Handle serves h at pattern (http.ServeMux's syntax) beside /metrics,
// /healthz and /readyz, e.g. the live web view at "/". It may be called
// while the endpoint serves. Nothing for a nil Endpoint.
func (e *Endpoint) Handle(pattern string, h http.Handler) {
	if e == nil {
		return
	}
	e.mux.Handle(pattern, h)
}

// Observer is node id's Recorder, to give as its cluster.Config.Observer;
// nil (no observer at all) for a nil Endpoint or a node it does not serve.
func (e *Endpoint) Observer(id int32) cluster.Observer {
	if e == nil || e.recs[id] == nil {
		return nil
	}
	return e.recs[id]
}

// Observers is Observer as a cluster.LocalConfig.Observers; nil for a nil
// Endpoint.
func (e *Endpoint) Observers() func(id int32) cluster.Observer {
	if e == nil {
		return nil
	}
	return e.Observer
}

// Serve hands over the process's one node, once started: /readyz follows
// it from now on. Nothing for a nil Endpoint.
func (e *Endpoint) Serve(n *cluster.Node) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.nodeOf = func(int32) *cluster.Node { return n }
	e.mu.Unlock()
}

// ServeLocal hands over an in-process cluster, once started: each node is
// read as the Local has it now (nil while down).
func (e *Endpoint) ServeLocal(l *cluster.Local) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.nodeOf = func(id int32) *cluster.Node { return l.Node(int(id)) }
	e.mu.Unlock()
}

// Stopping makes /readyz answer 503 "stopping" from now on: for a process
// about to stop its nodes, so that nothing is routed to them meanwhile.
func (e *Endpoint) Stopping() {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.stopping = true
	e.mu.Unlock()
}

func (e *Endpoint) node(id int32) *cluster.Node {
	e.mu.Lock()
	nodeOf := e.nodeOf
	e.mu.Unlock()
	if nodeOf == nil {
		return nil
	}
	return nodeOf(id)
}

// Ready is what /readyz answers: nil when every node served is up, has
// recovered from its log and serves; otherwise one line saying why not.
func (e *Endpoint) Ready() error {
	e.mu.Lock()
	started, stopping := e.nodeOf != nil, e.stopping
	e.mu.Unlock()
	switch {
	case stopping:
		return errors.New("stopping")
	case !started:
		return errors.New("starting: recovering from the log")
	}
	var why []string
	for _, id := range e.ids {
		n := e.node(id)
		var err error
		if n == nil {
			err = errors.New("down")
		} else {
			err = n.Ready()
		}
		if err != nil {
			why = append(why, fmt.Sprintf("node %d %v", id, err))
		}
	}
	if len(why) > 0 {
		return errors.New(strings.Join(why, "; "))
	}
	return nil
}

func (e *Endpoint) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := e.Ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	fmt.Fprintln(w, "ready")
}

// Close stops serving: the listener and open connections are closed at
// once (a scrape in progress is cut short). Nil-safe.
func (e *Endpoint) Close() error {
	if e == nil {
		return nil
	}
	e.Stopping()
	err := e.srv.Close()
	<-e.served
	return err
}

// Shutdown is Close, letting requests in progress finish until ctx ends.
func (e *Endpoint) Shutdown(ctx context.Context) error {
	if e == nil {
		return nil
	}
	e.Stopping()
	err := e.srv.Shutdown(ctx)
	<-e.served
	return err
}
