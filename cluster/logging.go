package cluster

import (
	"context"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
)

// slogHandler lets protoactor (which logs through log/slog) write into the
// node's hclog logger, so one process has one log format and one level knob.
type slogHandler struct {
	l      hclog.Logger
	prefix string // accumulated WithGroup names, each followed by "."
}

// NewSlogHandler returns a slog.Handler that writes every record to l.
// slog levels map onto hclog's: below Debug → Trace, below Info → Debug,
// below Warn → Info, below Error → Warn, the rest → Error. Attributes become
// hclog key/value pairs; groups become "group." key prefixes.
func NewSlogHandler(l hclog.Logger) slog.Handler {
	if l == nil {
		l = hclog.NewNullLogger()
	}
	return &slogHandler{l: l}
}

// ActorSystemLogging routes an actor system's log through l (named
// "protoactor"), tagging every line with the system's id.
func ActorSystemLogging(l hclog.Logger) actor.ConfigOption {
	if l == nil {
		l = hclog.NewNullLogger()
	}
	return actor.WithLoggerFactory(func(sys *actor.ActorSystem) *slog.Logger {
		return slog.New(NewSlogHandler(l.Named("protoactor"))).With("system", sys.ID)
	})
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	}
	return hclog.Error
}

// Enabled asks the logger on every call rather than caching its level, so
// SetLevel on the hclog logger takes effect at once. The Is* methods are used
// instead of comparing GetLevel because the null logger reports NoLevel (which
// would compare as "everything enabled") while emitting nothing.
func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool {
	switch hclogLevel(l) {
	case hclog.Trace:
		return h.l.IsTrace()
	case hclog.Debug:
		return h.l.IsDebug()
	case hclog.Info:
		return h.l.IsInfo()
	case hclog.Warn:
		return h.l.IsWarn()
	}
	return h.l.IsError()
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	args := make([]interface{}, 0, 2*r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		args = appendAttr(args, h.prefix, a)
		return true
	})
	h.l.Log(hclogLevel(r.Level), r.Message, args...)
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	args := make([]interface{}, 0, 2*len(attrs))
	for _, a := range attrs {
		args = appendAttr(args, h.prefix, a)
	}
	if len(args) == 0 {
		return h
	}
	return &slogHandler{l: h.l.With(args...), prefix: h.prefix}
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	if name == "" { // slog's contract: an empty group name is no group
		return h
	}
	return &slogHandler{l: h.l, prefix: h.prefix + name + "."}
}

// appendAttr flattens a into hclog's alternating key/value list. Nested groups
// become dotted keys because hclog has no notion of structure.
func appendAttr(args []interface{}, prefix string, a slog.Attr) []interface{} {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) { // slog's contract: empty attributes are ignored
		return args
	}
	if a.Value.Kind() == slog.KindGroup {
		inner := prefix
		if a.Key != "" { // an unnamed group inlines its members
			inner = prefix + a.Key + "."
		}
		for _, g := range a.Value.Group() {
			args = appendAttr(args, inner, g)
		}
		return args
	}
	return append(args, prefix+a.Key, a.Value.Any())
}
