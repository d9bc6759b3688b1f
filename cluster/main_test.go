package cluster

import (
	"testing"

	"twopc/actors/actortest"
)

// Every test must leave nothing running: nodes, bridges, connections and timers are stopped by their owners.
func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }
