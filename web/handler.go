package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"twopc/messages"
	"twopc/trace"
)

//go:embed static
var static embed.FS

// Handler serves the page and what it reads and posts:
//
//	GET  /            the page
//	GET  /static/...  its script and style sheet
//	GET  /events      the live frames (Server-Sent Events)
//	GET  /api/trace   ?tx=<id>: a transaction's events, for its diagram
//	POST /api/act     an action (JSON Action); only from the page's own origin
//
// Mount it at "/" (e.g. metrics.Endpoint.Handle). Close it before its
// server closes: that drops every browser at once.
type Handler struct {
	src  Source
	opts Options
	hub  *hub
	mux  *http.ServeMux
	csrf *http.CrossOriginProtection
}

// maxActionBody bounds a posted action: a few short fields.
const maxActionBody = 4 << 10

// NewHandler serves the view of src.
func NewHandler(src Source, opts Options) *Handler {
	opts = opts.withDefaults()
	h := &Handler{src: src, opts: opts, hub: newHub(src, opts), mux: http.NewServeMux(), csrf: http.NewCrossOriginProtection()}
	// A refusal says why, as every answer of this view does.
	h.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, http.StatusForbidden, "refused: a request from another origin (or site) may not act here; use the page this server serves")
	}))
	sub, _ := fs.Sub(static, "static")
	h.mux.HandleFunc("GET /{$}", h.page)
	assets := http.StripPrefix("/static/", http.FileServerFS(sub))
	h.mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // files only: no listing
			return
		}
		assets.ServeHTTP(w, r)
	})
	h.mux.HandleFunc("GET /events", h.events)
	h.mux.HandleFunc("GET /api/trace", h.trace)
	h.mux.Handle("POST /api/act", h.csrf.Handler(http.HandlerFunc(h.act)))
	return h
}

// Close drops every browser and stops watching the source.
func (h *Handler) Close() error {
	h.hub.close()
	return nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := checkHost(r); err != nil {
		refuse(w, http.StatusMisdirectedRequest, err.Error())
		return
	}
	hd := w.Header()
	// The page loads nothing from anywhere else, and nothing may frame it.
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// checkHost refuses a request that reached a loopback address under a
// name that is not a loopback one: a page elsewhere whose name was made
// to point at 127.0.0.1 (DNS rebinding) must not read or act on the
// cluster.
func checkHost(r *http.Request) error {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || !isLoopbackAddr(local.String()) {
		return nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refused: this server listens on a loopback address and answers only to a loopback name (localhost, 127.0.0.1, [::1]), not %q", r.Host)
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// mayAct says whether r's browser may act, and if not, why.
func (h *Handler) mayAct(r *http.Request) (bool, string) {
	if h.opts.ActFromAnywhere || isLoopbackAddr(r.RemoteAddr) {
		return true, ""
	}
	return false, "actions are taken only from a browser on the cluster's own machine (this one is at " + r.RemoteAddr + "); this page watches"
}

// writeTimeout bounds each write of a frame: a browser whose connection
// stops draining is cut off, and its handler ends.
const writeTimeout = 10 * time.Second

func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	canAct, why := h.mayAct(r)
	sub, err := h.hub.subscribe(canAct, why)
	if err != nil {
		refuse(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer h.hub.unsubscribe(sub)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A dropped page reconnects by itself after this long.
	if _, err := io.WriteString(w, "retry: 1000\n\n"); err != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case b := <-sub.ch:
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// traceJSON is a transaction's diagram data.
type traceJSON struct {
	Tx      string      `json:"tx"`
	Summary string      `json:"summary"`
	Nodes   int         `json:"nodes"`
	Start   int64       `json:"start"` // Unix ms of the first event
	Events  []eventJSON `json:"events"`
}

type eventJSON struct {
	Ms     float64 `json:"ms"` // since the first event
	Node   int32   `json:"node"`
	Kind   string  `json:"kind"` // send, receive, log, decision, node, note
	Peer   int32   `json:"peer"`
	What   string  `json:"what"`
	Detail string  `json:"detail,omitempty"`
	Forced bool    `json:"forced,omitempty"`
	Text   string  `json:"text"`
}

func (h *Handler) trace(w http.ResponseWriter, r *http.Request) {
	s := r.URL.Query().Get("tx")
	tx, err := messages.ParseTxID(s)
	if err != nil {
		refuse(w, http.StatusBadRequest, fmt.Sprintf("%q is not a transaction id (node.incarnation.seq)", s))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.AskTimeout)
	defer cancel()
	evs, err := h.src.Trace(ctx, tx)
	if err != nil {
		refuse(w, http.StatusNotFound, err.Error())
		return
	}
	if len(evs) == 0 {
		refuse(w, http.StatusNotFound, fmt.Sprintf("no trace of %v (never seen here, or no longer kept)", tx))
		return
	}
	out := traceJSON{Tx: tx.String(), Summary: trace.Summary(tx, evs), Nodes: h.hub.info.Nodes, Start: ms(evs[0].At)}
	for _, e := range evs {
		out.Nodes = max(out.Nodes, int(e.Node)+1, int(e.Peer)+1)
		out.Events = append(out.Events, eventJSON{Ms: float64(e.At.Sub(evs[0].At).Microseconds()) / 1000, Node: e.Node, Kind: e.Kind.String(),
			Peer: e.Peer, What: e.What, Detail: e.Detail, Forced: e.Forced, Text: e.String()})
	}
	writeJSON(w, http.StatusOK, out)
}

// actResult is what an action answers.
type actResult struct {
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

func (h *Handler) act(w http.ResponseWriter, r *http.Request) {
	if ok, why := h.mayAct(r); !ok {
		refuse(w, http.StatusForbidden, "refused: "+why)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		// A form another site posts cannot carry this type without the
		// browser asking first (CORS), which this server never allows.
		refuse(w, http.StatusUnsupportedMediaType, "refused: an action is posted as application/json")
		return
	}
	var a Action
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		refuse(w, http.StatusBadRequest, "the action is not valid JSON: "+err.Error())
		return
	}
	if !slices.Contains(h.hub.info.Actions, a.Do) {
		if a.Do == "" || !isAction(a.Do) {
			refuse(w, http.StatusBadRequest, unknownAction(a.Do).Error())
			return
		}
		refuse(w, http.StatusForbidden, fmt.Sprintf("refused: %s is not taken from this page (%v)", a.Do, errNoActions))
		return
	}
	// An action may take a while (a restart replays a log), but not forever.
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	msg, err := h.src.Act(ctx, a)
	var in *InputError
	switch {
	case errors.As(err, &in):
		refuse(w, http.StatusBadRequest, in.Msg)
	case err != nil:
		refuse(w, http.StatusConflict, err.Error())
	default:
		writeJSON(w, http.StatusOK, actResult{OK: true, Message: msg})
	}
}

func isAction(do string) bool {
	return slices.Contains([]string{ActionCrash, ActionRestart, ActionPartition, ActionHeal, ActionFaults, ActionSkew, ActionResolve}, do)
}

// refuse answers an error as the page reads it: {"ok":false,"message":...}.
func refuse(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, actResult{OK: false, Message: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
