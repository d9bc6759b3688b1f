package cluster

import "fmt"

// Fail-stop: a node whose log fails stops itself, as a crash would. A node
// without a log can promise nothing: it would refuse every Prepare and
// answer no question about its transactions, while participants in doubt
// on them stay locked until someone notices. Stopped, it is seen as down by
// everyone; restarted (by a supervisor: cmd/node exits with its own code;
// by `restart` in the in-process cluster), it recovers from what its log
// really holds and settles them.

// logFailed is told by the persistence actor, on that actor's goroutine,
// that the log failed. The stop waits for that actor, so it runs elsewhere.
func (n *Node) logFailed(err error) {
	n.logErr.CompareAndSwap(nil, &err) // at once, for serving
	go n.failStop(err)
}

// failStop stops the node because its log failed, unless it is already
// stopping or crashing (a clean Stop, a power cut: a failing write then is
// part of that, not news) or is still starting (Start reports it).
func (n *Node) failStop(err error) {
	n.mu.Lock()
	if n.stopped || !n.started || n.cut.Load() {
		stopping := n.stopped && n.started && !n.cut.Load()
		n.mu.Unlock()
		if stopping {
			// Still a failing disk, worth saying: the log leaves that to
			// us. (After a power cut it is not real; during Start, Start
			// returns it.)
			n.log.Error("log failed while the node was stopping", "error", err)
		}
		return
	}
	n.stopped = true
	n.failure = err
	n.mu.Unlock()
	n.log.Error("log failed: node stopping (fail-stop); start it again to recover from its log", "error", err)
	if n.cfg.Tracer != nil {
		n.cfg.Tracer.NodeEvent(n.cfg.ID, "stopped: its log failed")
	}
	// As a crash: callers still waiting are told, the listener and its
	// connections closed, the roles stopped without finishing their
	// mailboxes; the log refuses every write already.
	close(n.stopCh)
	n.teardown(true)
	close(n.failStopped)
	if n.cfg.FailStopped != nil {
		n.cfg.FailStopped(n)
	}
}

// serving marks the end of Start: from now on a log failure stops the node.
// A failure during Start (its log failed before the node ever served) makes
// Start fail instead.
func (n *Node) serving() error {
	n.mu.Lock()
	if p := n.logErr.Load(); p != nil {
		err := *p
		n.stopped = true
		n.mu.Unlock()
		n.teardown(true)
		return fmt.Errorf("node %d: log failed while starting: %w", n.cfg.ID, err)
	}
	n.started = true
	n.mu.Unlock()
	return nil
}

// waitFailStop waits, if the node is stopping itself after a log failure,
// until that is done. Called by Stop and Crash once they find the node
// stopped already.
func (n *Node) waitFailStop() {
	if n.Failure() != nil {
		<-n.failStopped
	}
}

// Failure is the log failure that made the node stop itself, or nil.
func (n *Node) Failure() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.failure
}

// FailStopped is closed once the node has stopped itself because its log
// failed (Failure says how): listener and connections closed, roles and
// log stopped. It stays open while the node runs, and after a clean Stop or
// a crash.
func (n *Node) FailStopped() <-chan struct{} { return n.failStopped }

// failStopped marks node i down once it stopped itself (Config.FailStopped),
// so that `status` shows it down and `restart` brings it back.
func (l *Local) failStopped(i int, n *Node) {
	l.mu.Lock()
	if l.nodes[i] == n {
		l.nodes[i] = nil
	}
	l.mu.Unlock()
}
