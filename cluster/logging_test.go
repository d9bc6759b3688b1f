package cluster

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
)

func TestSlogHandlerLevels(t *testing.T) {
	cases := []struct {
		level slog.Level
		tag   string
	}{
		{slog.LevelDebug - 1, "[TRACE]"},
		{slog.LevelDebug, "[DEBUG]"},
		{slog.LevelInfo, "[INFO]"},
		{slog.LevelWarn, "[WARN]"},
		{slog.LevelError, "[ERROR]"},
		{slog.LevelError + 4, "[ERROR]"},
	}
	for _, c := range cases {
		hl, buf := newBufferLogger(hclog.Trace)
		slog.New(NewSlogHandler(hl)).Log(context.Background(), c.level, "hello", "k", 7)
		out := buf.String()
		if !strings.Contains(out, c.tag) || !strings.Contains(out, "test: hello") || !strings.Contains(out, "k=7") {
			t.Errorf("slog level %v: want a %s line with \"hello\" and k=7, got %q", c.level, c.tag, out)
		}
	}
}

func TestSlogHandlerEnabledFollowsHclogLevel(t *testing.T) {
	hl, buf := newBufferLogger(hclog.Warn)
	h := NewSlogHandler(hl)
	ctx := context.Background()
	if h.Enabled(ctx, slog.LevelInfo) {
		t.Error("Info is enabled on an hclog logger at Warn")
	}
	if !h.Enabled(ctx, slog.LevelWarn) {
		t.Error("Warn is not enabled on an hclog logger at Warn")
	}
	l := slog.New(h)
	l.Info("quiet")
	if out := buf.String(); out != "" {
		t.Errorf("Info record written by an hclog logger at Warn: %q", out)
	}

	hl.SetLevel(hclog.Debug) // a later level change must take effect
	if !h.Enabled(ctx, slog.LevelDebug) {
		t.Error("Debug still disabled after SetLevel(Debug)")
	}
	l.Debug("loud")
	if out := buf.String(); !strings.Contains(out, "[DEBUG]") || !strings.Contains(out, "loud") {
		t.Errorf("Debug record after SetLevel(Debug): got %q", out)
	}

	if NewSlogHandler(hclog.NewNullLogger()).Enabled(ctx, slog.LevelError) {
		t.Error("the null logger reports Error as enabled")
	}
}

func TestSlogHandlerAttrsAndGroups(t *testing.T) {
	hl, buf := newBufferLogger(hclog.Trace)
	l := slog.New(NewSlogHandler(hl)).With("system", "s1").WithGroup("req").With("id", 3)
	l.Info("done", slog.Group("peer", slog.Int("node", 2)), "ok", true)
	out := buf.String()
	for _, want := range []string{"system=s1", "req.id=3", "req.peer.node=2", "req.ok=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in %q", want, out)
		}
	}
}

func TestActorSystemLogging(t *testing.T) {
	hl, buf := newBufferLogger(hclog.Info)
	sys := actor.NewActorSystem(ActorSystemLogging(hl))
	out := buf.String()
	if !strings.Contains(out, "test.protoactor: actor system started") || !strings.Contains(out, "system="+sys.ID) {
		t.Errorf("want the system's start line through hclog, named and tagged with its id; got %q", out)
	}
}
