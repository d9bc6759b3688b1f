package actortest

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that other goroutines — a logger inside an actor
// system, a command run by the test, a pseudo-terminal's reader — may write
// while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
