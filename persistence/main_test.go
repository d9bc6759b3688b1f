package persistence

import (
	"testing"

	"twopc/actors/actortest"
)

// Every test must leave nothing running: logs and their actors are stopped by their owners.
func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }
