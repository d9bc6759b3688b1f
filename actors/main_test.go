package actors

import (
	"testing"

	"twopc/actors/actortest"
)

// Every test must leave nothing running: actors and timers are stopped by their owners.
func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }
