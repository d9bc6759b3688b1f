package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
)

// Well-known actor names of a node's roles. A PID is (node address, name),
// so knowing a node's address is enough to reach its roles.
const (
	CoordinatorName = "coordinator"
	ParticipantName = "participant"
	PersistenceName = "persistence"
	AcceptorName    = "acceptor"
)

// Directory tells a role where the roles of any node are. The cluster maps
// node ids to network addresses; tests map them to probe actors.
type Directory interface {
	Coordinator(node int32) *actor.PID
	Participant(node int32) *actor.PID
	Acceptor(node int32) *actor.PID // non-blocking commit
}

func orNull(l hclog.Logger) hclog.Logger {
	if l == nil {
		return hclog.NewNullLogger()
	}
	return l
}
