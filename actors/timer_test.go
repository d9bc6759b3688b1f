package actors

import (
	"testing"
	"time"
)

func TestBackoffDoublesUpToMax(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 500*time.Millisecond)
	if b.pause != 100*time.Millisecond {
		t.Fatalf("first pause %v", b.pause)
	}
	var got []time.Duration
	for range 4 {
		got = append(got, b.grow())
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pauses %v, want %v", got, want)
		}
	}
}
