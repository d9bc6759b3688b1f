package actors

import (
	"strings"
	"testing"
	"time"
)

func TestTimingDefaultsAreValid(t *testing.T) {
	if err := (Timing{}).Validate(); err != nil {
		t.Fatalf("zero Timing (all defaults): %v", err)
	}
	if err := DefaultTiming.Validate(); err != nil {
		t.Fatalf("DefaultTiming: %v", err)
	}
	if got := (Timing{}).WithDefaults(); got != DefaultTiming {
		t.Fatalf("zero Timing with defaults = %+v, want %+v", got, DefaultTiming)
	}
}

// WithDefaults fills zero fields only: a value that was set is kept, even
// one Validate refuses.
func TestTimingWithDefaultsKeepsSetFields(t *testing.T) {
	set := Timing{VoteTimeout: time.Hour, RememberOutcomes: time.Millisecond}
	got := set.WithDefaults()
	if got.VoteTimeout != time.Hour || got.RememberOutcomes != time.Millisecond {
		t.Fatalf("set fields changed: %+v", got)
	}
	if got.ClockSkew != DefaultTiming.ClockSkew || got.InDoubtAfter != DefaultTiming.InDoubtAfter ||
		got.ResendInterval != DefaultTiming.ResendInterval || got.MaxResendInterval != DefaultTiming.MaxResendInterval ||
		got.MaxQueryInterval != DefaultTiming.MaxQueryInterval {
		t.Fatalf("zero fields not defaulted: %+v", got)
	}
	neg := Timing{ClockSkew: -time.Second}.WithDefaults()
	if neg.ClockSkew != -time.Second {
		t.Fatalf("a negative field was replaced: %+v", neg)
	}
}

func TestTimingValidateNamesTheBrokenRule(t *testing.T) {
	for _, c := range []struct {
		name   string
		timing Timing
		want   string
	}{
		{"remember shorter than a late prepare counts",
			Timing{VoteTimeout: 2 * time.Second, ClockSkew: 10 * time.Millisecond, RememberOutcomes: 300 * time.Millisecond},
			"Timing.RememberOutcomes (300ms) must be at least Timing.VoteTimeout + 2 × Timing.ClockSkew (2s + 2 × 10ms = 2.02s)"},
		{"negative vote timeout", Timing{VoteTimeout: -time.Second}, "Timing.VoteTimeout (-1s) must not be negative (zero means the default, 2s)"},
		{"negative clock skew", Timing{ClockSkew: -time.Millisecond}, "Timing.ClockSkew (-1ms) must not be negative (zero means the default, 1s)"},
		{"negative resend interval", Timing{ResendInterval: -1}, "Timing.ResendInterval (-1ns) must not be negative (zero means the default, 200ms)"},
		{"negative max resend interval", Timing{MaxResendInterval: -1}, "Timing.MaxResendInterval (-1ns) must not be negative (zero means the default, 5s)"},
		{"negative in-doubt pause", Timing{InDoubtAfter: -1}, "Timing.InDoubtAfter (-1ns) must not be negative (zero means the default, 3s)"},
		{"negative max query interval", Timing{MaxQueryInterval: -1}, "Timing.MaxQueryInterval (-1ns) must not be negative (zero means the default, 10s)"},
		{"negative memory", Timing{RememberOutcomes: -1}, "Timing.RememberOutcomes (-1ns) must not be negative (zero means the default, 10s)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.timing.Validate()
			if err == nil {
				t.Fatalf("%+v: valid, want %q", c.timing, c.want)
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("%+v:\n got  %v\n want %s…", c.timing, err, c.want)
			}
		})
	}
	// An unset RememberOutcomes follows the clocks it must outlast: a long
	// vote timeout alone is valid, and what it is remembered for covers it.
	long := Timing{VoteTimeout: time.Hour}
	if err := long.Validate(); err != nil {
		t.Fatalf("VoteTimeout alone refused: %v", err)
	}
	if got, want := long.WithDefaults().RememberOutcomes, time.Hour+2*DefaultTiming.ClockSkew; got != want {
		t.Fatalf("RememberOutcomes for a 1h vote timeout = %v, want %v", got, want)
	}
	// The boundary itself is allowed.
	edge := Timing{VoteTimeout: 2 * time.Second, ClockSkew: 10 * time.Millisecond, RememberOutcomes: 2020 * time.Millisecond}
	if err := edge.Validate(); err != nil {
		t.Fatalf("RememberOutcomes exactly VoteTimeout + 2 × ClockSkew: %v", err)
	}
}
