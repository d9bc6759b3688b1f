package bridge

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultRefusalInterval is how often one kind of refusal may be logged.
const DefaultRefusalInterval = time.Second

// RefusalLog logs refused input at a bounded rate: at most one Warn line
// per reason per interval, carrying how many refusals of that reason were
// not logged since the last line. Reasons are fixed strings chosen by the
// code, never by a sender, so the set of reasons cannot grow; anything from
// the wire that goes into a line is quoted and truncated (sanitize). A nil
// *RefusalLog logs nothing.
type RefusalLog struct {
	log      hclog.Logger
	interval time.Duration
	now      func() time.Time // a test's clock

	mu      sync.Mutex
	reasons map[string]*refusalCount
}

type refusalCount struct {
	last       time.Time
	logged     bool
	suppressed uint64
}

// NewRefusalLog logs through log (nil → nothing) at most once per interval
// per reason (0 → DefaultRefusalInterval).
func NewRefusalLog(log hclog.Logger, interval time.Duration) *RefusalLog {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if interval <= 0 {
		interval = DefaultRefusalInterval
	}
	return &RefusalLog{log: log, interval: interval, now: time.Now, reasons: make(map[string]*refusalCount)}
}

// refuse logs msg with args for reason, unless one was logged for reason
// less than an interval ago; then it only counts it.
func (r *RefusalLog) refuse(reason, msg string, args ...any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	c := r.reasons[reason]
	if c == nil {
		c = &refusalCount{}
		r.reasons[reason] = c
	}
	now := r.now()
	if c.logged && now.Sub(c.last) < r.interval {
		c.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := c.suppressed
	c.last, c.logged, c.suppressed = now, true, 0
	r.mu.Unlock()
	args = append(args, "reason", reason)
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	r.log.Warn(msg, args...)
}

// LogEvery lets one log line through per interval (LogEveryInterval) and
// counts the rest, for refusals whose reasons need no key of their own: a
// member or a stranger cannot flood the log, and the next line says how
// many were not logged.
type LogEvery struct {
	mu     sync.Mutex
	last   time.Time
	missed int
}

// LogEveryInterval is how often a LogEvery lets a line through.
const LogEveryInterval = 10 * time.Second

// Allow says whether to log now, and how many were held back since the
// last line that was.
func (l *LogEvery) Allow() (ok bool, missed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); l.last.IsZero() || now.Sub(l.last) >= LogEveryInterval {
		l.last, missed, l.missed = now, l.missed, 0
		return true, missed
	}
	l.missed++
	return false, 0
}
