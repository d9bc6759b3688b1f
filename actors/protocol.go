package actors

import "fmt"

// Protocol is the commit protocol a node runs. Every node of a cluster
// must run the same one.
type Protocol string

const (
	// TwoPC is classic two-phase commit with presumed abort: the
	// coordinator alone decides, by forcing its COMMIT record. A
	// coordinator that crashes after its participants voted yes leaves
	// them in doubt until it comes back.
	TwoPC Protocol = "2pc"
	// NonBlocking is Paxos Commit's way of ending a transaction: the
	// decision is chosen by a majority of three acceptors (acceptor.go),
	// and a participant in doubt finishes the transaction without its
	// coordinator (proposer.go). One crash, of any node, blocks nobody.
	NonBlocking Protocol = "nonblocking"
)

// DefaultProtocol is what a node runs when none is named (see the
// README's "Failure model" for why).
const DefaultProtocol = NonBlocking

// ParseProtocol reads a protocol's name as flags and the prompt spell it.
func ParseProtocol(s string) (Protocol, error) {
	switch Protocol(s) {
	case TwoPC, NonBlocking:
		return Protocol(s), nil
	case "":
		return DefaultProtocol, nil
	}
	return "", fmt.Errorf("unknown protocol %q: want %q or %q", s, TwoPC, NonBlocking)
}

// OrDefault is p, or DefaultProtocol when p is unset.
func (p Protocol) OrDefault() Protocol {
	if p == "" {
		return DefaultProtocol
	}
	return p
}
