package web

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"twopc/trace"
)

// The hub: while at least one browser is attached it watches the source,
// and every tick drains the feed, asks for a snapshot, and sends one frame
// (JSON) to every subscriber. A subscriber is a small channel of frames: a
// browser that falls that far behind is dropped, and the hub never waits
// for one. With no subscriber the hub stops watching and its loop ends.

// Options tune a Handler; zero fields take the defaults.
type Options struct {
	// Tick is how often a frame is sent (250ms; at most 10 per second).
	Tick time.Duration
	// Buffer is how many frames a browser may fall behind before it is
	// dropped (8: two seconds at the default tick).
	Buffer int
	// MaxMessages bounds the messages drawn per frame (48); MaxTxs the
	// transactions listed per frame (64); the rest are counted.
	MaxMessages, MaxTxs int
	// Window is the chart's span (5 minutes).
	Window time.Duration
	// AskTimeout bounds a frame's snapshot (1s): a stuck node makes its
	// card say so instead of holding the page.
	AskTimeout time.Duration
	// ActFromAnywhere accepts actions from browsers on other hosts too.
	// By default only a browser on this machine (a loopback peer) may act;
	// others watch.
	ActFromAnywhere bool
}

func (o Options) withDefaults() Options {
	if o.Tick <= 0 {
		o.Tick = 250 * time.Millisecond
	}
	o.Tick = max(o.Tick, 100*time.Millisecond)
	if o.Buffer <= 0 {
		o.Buffer = 8
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = 48
	}
	if o.MaxTxs <= 0 {
		o.MaxTxs = 64
	}
	if o.Window <= 0 {
		o.Window = 5 * time.Minute
	}
	if o.AskTimeout <= 0 {
		o.AskTimeout = time.Second
	}
	return o
}

// recentKept is how many finished transactions a new page is sent.
const recentKept = 200

// maxWindows bounds the fault windows kept.
const maxWindows = 200

type hub struct {
	src  Source
	opts Options
	info Info
	feed *feed

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	run    *loopRun // the loop running now; nil when none
	closed bool
	loops  sync.WaitGroup

	// Kept across frames and loops, under mu.
	cards   []cardJSON
	parts   [][2]int32
	doubts  []doubtJSON
	ndoubts int
	snapErr string
	recent  []txJSON    // the last recentKept, oldest first
	series  []pointJSON // the chart, oldest first, within the window
	lastSec int64       // the newest second in series
	windows []*window   // fault windows, by start
	stats   map[int32][2]uint64
	perSync map[int32]float64
}

// loopRun is one run of the loop, from a first subscriber to the last
// one leaving.
type loopRun struct {
	stop chan struct{}
}

// subscriber is one browser.
type subscriber struct {
	ch      chan []byte
	gone    chan struct{} // closed when the hub drops it
	dropped bool
}

func newHub(src Source, opts Options) *hub {
	info := src.Info()
	opts = opts.withDefaults()
	return &hub{src: src, opts: opts, info: info, feed: newFeed(info.Nodes, opts.MaxMessages, 32, opts.MaxTxs, opts.Window),
		subs: map[*subscriber]struct{}{}, stats: map[int32][2]uint64{}, perSync: map[int32]float64{}}
}

// subscribe adds a browser; its first frame (a hello) is already queued.
// canAct says whether it may act (it is on this machine); why says why not.
func (h *hub) subscribe(canAct bool, why string) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("the view is closing")
	}
	s := &subscriber{ch: make(chan []byte, h.opts.Buffer), gone: make(chan struct{})}
	if h.run == nil {
		h.start()
	}
	h.subs[s] = struct{}{}
	s.ch <- h.helloLocked(canAct, why)
	return s, nil
}

// unsubscribe removes a browser; the last one out stops the loop.
func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(s)
	if len(h.subs) == 0 && h.run != nil {
		close(h.run.stop)
		h.run = nil
	}
}

func (h *hub) dropLocked(s *subscriber) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	close(s.gone)
}

// close drops every browser and waits for the loop to end.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	for s := range h.subs {
		h.dropLocked(s)
	}
	if h.run != nil {
		close(h.run.stop)
		h.run = nil
	}
	h.mu.Unlock()
	h.loops.Wait()
}

// start begins a loop run; h.mu is held. The recent transactions are read
// from the source first, so that the hello a new page gets lists them.
func (h *hub) start() {
	run := &loopRun{stop: make(chan struct{})}
	h.run = run
	now := time.Now()
	// Read again at each run: transactions ended while no browser looked
	// were not collected. A source that keeps none leaves the list as the
	// last run left it.
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.AskTimeout)
	ends, err := h.src.Recent(ctx, recentKept)
	cancel()
	if err == nil && len(ends) > 0 {
		h.recent = h.recent[:0]
		for _, t := range ends {
			h.recent = append(h.recent, txOf(t))
		}
	}
	// Seconds before this run were not watched: the chart shows a gap
	// there, not zeros. The second under way is (partly) watched from now.
	h.lastSec = max(h.lastSec, now.Unix()-1)
	stop := h.src.Watch(h.feed)
	h.loops.Add(1)
	go h.loop(run, stop)
}

func (h *hub) loop(run *loopRun, unwatch func()) {
	defer h.loops.Done()
	defer unwatch()
	t := time.NewTicker(h.opts.Tick)
	defer t.Stop()
	for {
		h.tick(run)
		select {
		case <-run.stop:
			return
		case <-t.C:
		}
	}
}

// tick makes one frame and sends it to every subscriber.
func (h *hub) tick(run *loopRun) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.AskTimeout)
	snap, err := h.src.Snapshot(ctx)
	cancel()
	d := h.feed.drain()
	now := time.Now()

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.run != run {
		return // stopped meanwhile: a newer run (or none) speaks now
	}
	f := frameJSON{T: ms(now)}
	h.applyMarks(d.marks)
	if err != nil {
		h.snapErr = err.Error()
	} else {
		h.snapErr = ""
		h.applySnapshot(snap, now)
	}
	f.Error = h.snapErr
	h.fillState(&f)
	f.Msgs = make([]msgJSON, len(d.msgs))
	for i, m := range d.msgs {
		f.Msgs[i] = msgJSON{At: ms(m.At), From: m.From, To: m.To, What: m.What, Tx: m.Tx.String()}
	}
	f.MsgCount = d.msgSeen
	n := h.info.Nodes
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if c := d.links[i*n+j]; c > 0 {
				f.Links = append(f.Links, linkJSON{From: int32(i), To: int32(j), Count: c})
			}
		}
		if d.forced[i]+d.lazy[i]+d.commits[i]+d.aborts[i] > 0 {
			f.Activity = append(f.Activity, activityJSON{Node: int32(i), Forced: d.forced[i], Lazy: d.lazy[i], Commits: d.commits[i], Aborts: d.aborts[i]})
		}
	}
	for _, e := range d.marks {
		f.Marks = append(f.Marks, markOf(e))
	}
	f.MarksLost = d.marksLost
	for _, t := range d.txs {
		tj := txOf(t)
		f.Txs = append(f.Txs, tj)
		h.recent = append(h.recent, tj)
	}
	if over := len(h.recent) - recentKept; over > 0 {
		h.recent = append(h.recent[:0], h.recent[over:]...)
	}
	f.TxsLost = d.txsLost
	// The seconds now over, since the last frame.
	for sec := h.lastSec + 1; sec < now.Unix(); sec++ {
		p := pointOf(h.feed.second(sec))
		f.Series = append(f.Series, p)
		h.series = append(h.series, p)
		h.lastSec = sec
	}
	h.pruneLocked(now)
	f.Windows = h.windowsJSON()
	h.sendLocked(f)
}

// fillState puts the state every frame carries into f.
func (h *hub) fillState(f *frameJSON) {
	f.Nodes, f.Partitions, f.InDoubt, f.InDoubtTotal = h.cards, h.parts, h.doubts, h.ndoubts
	if f.Partitions == nil {
		f.Partitions = [][2]int32{}
	}
}

// sendLocked encodes f and queues it for every subscriber, dropping those
// whose buffer is full.
func (h *hub) sendLocked(f frameJSON) {
	b, err := json.Marshal(f)
	if err != nil {
		return // cannot happen: every field is plain data
	}
	for s := range h.subs {
		select {
		case s.ch <- b:
		default:
			s.dropped = true
			h.dropLocked(s)
		}
	}
}

// helloLocked is a new page's first frame: what the view is, the chart so
// far, the recent transactions, and the state as of the last frame.
func (h *hub) helloLocked(canAct bool, why string) []byte {
	f := frameJSON{T: ms(time.Now())}
	hello := &helloJSON{Title: h.info.Title, Note: h.info.Note, Nodes: h.info.Nodes, Window: int(h.opts.Window / time.Second),
		TickMs: int(h.opts.Tick / time.Millisecond), Actions: []string{}}
	if canAct {
		hello.Actions = append(hello.Actions, h.info.Actions...)
	} else if len(h.info.Actions) > 0 {
		hello.ActionsWhy = why
	}
	f.Hello = hello
	h.fillState(&f)
	f.Error = h.snapErr
	f.Series = h.series
	f.Txs = h.recent
	f.Windows = h.windowsJSON()
	b, _ := json.Marshal(f)
	return b
}

// applySnapshot turns a snapshot into cards and the in-doubt list, and
// opens and closes the fault windows it shows.
func (h *hub) applySnapshot(s *Snapshot, now time.Time) {
	h.cards = h.cards[:0]
	faults := ""
	for _, c := range s.Nodes {
		cj := cardJSON{ID: c.ID, Addr: c.Addr, State: c.State, Why: c.Why, Incarnation: c.Incarnation,
			InFlight: c.InFlight, Locks: c.Locks, InDoubt: c.InDoubt, LogBytes: c.LogBytes,
			Protocol: c.Protocol, Skew: skewText(c.Skew), Faults: c.Faults, Cut: c.Cut, RecordsPerFsync: -1}
		if cj.Cut == nil {
			cj.Cut = []int32{}
		}
		if c.State == StateUp || c.State == StatePartitioned {
			prev, seen := h.stats[c.ID]
			if seen && c.Fsyncs > prev[1] && c.Records >= prev[0] {
				h.perSync[c.ID] = float64(c.Records-prev[0]) / float64(c.Fsyncs-prev[1])
			} else if !seen && c.Fsyncs > 0 {
				h.perSync[c.ID] = float64(c.Records) / float64(c.Fsyncs)
			}
			h.stats[c.ID] = [2]uint64{c.Records, c.Fsyncs}
			if v, ok := h.perSync[c.ID]; ok {
				cj.RecordsPerFsync = v
			}
		} else {
			delete(h.stats, c.ID) // a restarted node counts from zero
		}
		h.cards = append(h.cards, cj)

		key := fmt.Sprintf("down/%d", c.ID)
		switch c.State {
		case StateDown:
			h.openWindow(key, "crash", fmt.Sprintf("node %d down", c.ID), now)
		case StateUp, StatePartitioned:
			h.closeWindow(key, now)
		}
		key = fmt.Sprintf("skew/%d", c.ID)
		if c.Skew != 0 {
			h.openWindow(key, "skew", fmt.Sprintf("node %d clock %s", c.ID, skewText(c.Skew)), now)
		} else if c.State != StateUnknown {
			h.closeWindow(key, now)
		}
		if c.Faults != "" {
			faults = c.Faults
		}
	}
	if faults != "" {
		h.openWindow("faults", "faults", "faults: "+faults, now)
	} else {
		h.closeWindow("faults", now)
	}
	h.parts = s.Partitions
	cut := map[string]bool{}
	for _, p := range s.Partitions {
		key := fmt.Sprintf("partition/%d-%d", p[0], p[1])
		cut[key] = true
		h.openWindow(key, "partition", fmt.Sprintf("nodes %d and %d partitioned", p[0], p[1]), now)
	}
	for _, w := range h.windows {
		if w.open && strings.HasPrefix(w.key, "partition/") && !cut[w.key] {
			h.closeWindow(w.key, now)
		}
	}
	h.doubts = h.doubts[:0]
	for _, d := range s.InDoubt {
		h.doubts = append(h.doubts, doubtJSON{Tx: d.Tx.String(), Node: d.Node, AgeMs: now.Sub(d.Since).Milliseconds(),
			Participants: d.Participants, Asked: d.Asked, Coordinator: d.Tx.Node, CoordinatorUp: d.CoordinatorUp, Votes: d.Votes})
	}
	h.ndoubts = s.InDoubtTotal
}

// applyMarks opens a node's down window at its crash and closes it at its
// restart, at the moments the trace gives: a crash and restart between two
// frames still shows.
func (h *hub) applyMarks(marks []trace.Event) {
	for _, e := range marks {
		key := fmt.Sprintf("down/%d", e.Node)
		switch {
		case strings.HasPrefix(e.What, "crashed"), strings.HasPrefix(e.What, "stopped"):
			h.openWindow(key, "crash", fmt.Sprintf("node %d down", e.Node), e.At)
		case strings.HasPrefix(e.What, "restarted"):
			h.closeWindow(key, e.At)
		}
	}
}

// window is a time a fault was in place: a node down, a link cut, faults
// injected, a clock skewed.
type window struct {
	key, kind, label string
	from, to         time.Time
	open             bool
}

func (h *hub) openWindow(key, kind, label string, at time.Time) {
	for _, w := range h.windows {
		if w.open && w.key == key {
			w.label = label
			return
		}
	}
	h.windows = append(h.windows, &window{key: key, kind: kind, label: label, from: at, open: true})
	if len(h.windows) > maxWindows {
		h.windows = h.windows[len(h.windows)-maxWindows:]
	}
}

func (h *hub) closeWindow(key string, at time.Time) {
	for _, w := range h.windows {
		if w.open && w.key == key {
			w.open, w.to = false, at
		}
	}
}

// pruneLocked forgets what has left the chart's window.
func (h *hub) pruneLocked(now time.Time) {
	oldest := now.Add(-h.opts.Window)
	i := 0
	for i < len(h.series) && h.series[i].T < oldest.Unix() {
		i++
	}
	h.series = h.series[i:]
	kept := h.windows[:0]
	for _, w := range h.windows {
		if w.open || w.to.After(oldest) {
			kept = append(kept, w)
		}
	}
	h.windows = kept
}

func (h *hub) windowsJSON() []windowJSON {
	out := make([]windowJSON, 0, len(h.windows))
	for _, w := range h.windows {
		wj := windowJSON{Kind: w.kind, Label: w.label, From: ms(w.from)}
		if !w.open {
			wj.To = ms(w.to)
		}
		out = append(out, wj)
	}
	return out
}

// --- what a frame is, as the page reads it ---

type frameJSON struct {
	T            int64          `json:"t"` // server time, Unix ms
	Hello        *helloJSON     `json:"hello,omitempty"`
	Error        string         `json:"error,omitempty"` // why there is no fresh snapshot
	Nodes        []cardJSON     `json:"nodes"`
	Partitions   [][2]int32     `json:"partitions"`
	InDoubt      []doubtJSON    `json:"indoubt"`
	InDoubtTotal int            `json:"indoubtTotal"`
	Msgs         []msgJSON      `json:"msgs,omitempty"`
	MsgCount     int            `json:"msgCount"`
	Links        []linkJSON     `json:"links,omitempty"`
	Activity     []activityJSON `json:"activity,omitempty"`
	Marks        []markJSON     `json:"marks,omitempty"`
	MarksLost    int            `json:"marksLost,omitempty"`
	Txs          []txJSON       `json:"txs,omitempty"`
	TxsLost      int            `json:"txsLost,omitempty"`
	Series       []pointJSON    `json:"series,omitempty"`
	Windows      []windowJSON   `json:"windows"`
}

type helloJSON struct {
	Title      string   `json:"title"`
	Note       string   `json:"note,omitempty"`
	Nodes      int      `json:"nodes"`
	Actions    []string `json:"actions"`
	ActionsWhy string   `json:"actionsWhy,omitempty"`
	Window     int      `json:"window"` // seconds
	TickMs     int      `json:"tickMs"`
}

type cardJSON struct {
	ID              int32   `json:"id"`
	Addr            string  `json:"addr"`
	State           string  `json:"state"`
	Why             string  `json:"why,omitempty"`
	Incarnation     uint32  `json:"incarnation"`
	InFlight        int     `json:"inFlight"`
	Locks           int     `json:"locks"`
	InDoubt         int     `json:"inDoubt"`
	LogBytes        int64   `json:"logBytes"`
	RecordsPerFsync float64 `json:"recordsPerFsync"` // -1: not known yet
	Protocol        string  `json:"protocol"`
	Skew            string  `json:"skew"`
	Faults          string  `json:"faults,omitempty"`
	Cut             []int32 `json:"cut"`
}

type doubtJSON struct {
	Tx            string  `json:"tx"`
	Node          int32   `json:"node"`
	AgeMs         int64   `json:"ageMs"`
	Participants  []int32 `json:"participants"`
	Asked         int     `json:"asked"`
	Coordinator   int32   `json:"coordinator"`
	CoordinatorUp bool    `json:"coordinatorUp"`
	Votes         []Vote  `json:"votes"`
}

type msgJSON struct {
	At   int64  `json:"at"`
	From int32  `json:"from"`
	To   int32  `json:"to"`
	What string `json:"what"`
	Tx   string `json:"tx"`
}

type linkJSON struct {
	From  int32 `json:"from"`
	To    int32 `json:"to"`
	Count int   `json:"count"`
}

type activityJSON struct {
	Node    int32 `json:"node"`
	Forced  int   `json:"forced"`
	Lazy    int   `json:"lazy"`
	Commits int   `json:"commits"`
	Aborts  int   `json:"aborts"`
}

type markJSON struct {
	At   int64  `json:"at"`
	Node int32  `json:"node"`
	Peer int32  `json:"peer"`
	Kind string `json:"kind"` // crash, restart, stop, partition, heal, other
	Text string `json:"text"`
}

type txJSON struct {
	Tx           string  `json:"tx"`
	Node         int32   `json:"node"`
	Outcome      string  `json:"outcome"`
	Reason       string  `json:"reason,omitempty"`
	Ms           float64 `json:"ms"`
	At           int64   `json:"at"`
	Participants []int32 `json:"participants"`
}

type pointJSON struct {
	T        int64    `json:"t"` // Unix seconds
	Commits  int      `json:"c"`
	Aborts   int      `json:"a"`
	Unknowns int      `json:"u"`
	P50      *float64 `json:"p50"` // ms; null with no transaction
	P99      *float64 `json:"p99"`
}

type windowJSON struct {
	Kind  string `json:"kind"` // crash, partition, faults, skew
	Label string `json:"label"`
	From  int64  `json:"from"`         // Unix ms
	To    int64  `json:"to,omitempty"` // Unix ms; absent while open
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func txOf(t TxEnd) txJSON {
	tx := ""
	if !t.Tx.IsZero() {
		tx = t.Tx.String()
	}
	p := t.Participants
	if p == nil {
		p = []int32{}
	}
	return txJSON{Tx: tx, Node: t.Node, Outcome: t.Outcome, Reason: t.Reason,
		Ms: float64(t.Took.Microseconds()) / 1000, At: ms(t.At), Participants: p}
}

func pointOf(p point) pointJSON {
	pj := pointJSON{T: p.Sec, Commits: p.Commits, Aborts: p.Aborts, Unknowns: p.Unknowns}
	if p.P50 > 0 {
		a, b := float64(p.P50.Microseconds())/1000, float64(p.P99.Microseconds())/1000
		pj.P50, pj.P99 = &a, &b
	}
	return pj
}

func markOf(e trace.Event) markJSON {
	kind := "other"
	switch {
	case strings.HasPrefix(e.What, "crashed"):
		kind = "crash"
	case strings.HasPrefix(e.What, "restarted"):
		kind = "restart"
	case strings.HasPrefix(e.What, "stopped"):
		kind = "stop"
	case strings.HasPrefix(e.What, "partitioned"):
		kind = "partition"
	case strings.HasPrefix(e.What, "healed"):
		kind = "heal"
	}
	return markJSON{At: ms(e.At), Node: e.Node, Peer: e.Peer, Kind: kind, Text: e.String()}
}
