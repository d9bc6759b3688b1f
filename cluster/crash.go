package cluster

import "errors"

// Crashing a node as a power cut would: the crash-point tests and (later)
// the REPL's `crash` command. A clean Stop flushes the log and says goodbye;
// a crash must not, or every test would recover from a state no real crash
// leaves behind.

// PowerCut cuts the node off at once, as a power cut would: from the moment
// it returns no message leaves or enters the node (its bridge is isolated,
// its listener and connections are closed), nothing more reaches its disk,
// and bytes its log wrote but did not fsync are lost. Its actors may still
// run for a moment, but nothing they do can be seen from outside. It is safe
// to call from any goroutine, including a StepHook running inside one of the
// node's own actors; Crash finishes the job.
func (n *Node) PowerCut() {
	n.cutOnce.Do(func() {
		n.cut.Store(true)
		if n.cfg.Tracer != nil {
			// After the cut: every event the node's tracer kept happened before.
			n.cfg.Tracer.NodeEvent(n.cfg.ID, "crashed (power cut)")
		}
		n.bridge.Isolate()
		n.wal.PowerCut()
		n.server.stop()
		// Callers of Submit learn that the node died; what it decided, if
		// anything, the rest of the cluster will settle.
		close(n.cutCh)
		n.log.Warn("power cut: node stopped without flushing its log")
	})
}

// Crash cuts the node's power (PowerCut) and releases what the process
// holds for it — goroutines, the data directory's lock — so that it can be
// started again on the same address and data, which is what a restart after
// a real crash finds. Nothing is flushed or synced on the way.
func (n *Node) Crash() {
	n.PowerCut()
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		n.waitFailStop()
		return
	}
	n.stopped = true
	n.mu.Unlock()
	n.teardown(true)
	n.log.Info("node crashed")
}

// Crashed reports whether the node's power was cut.
func (n *Node) Crashed() bool { return n.cut.Load() }

// errNodeCrashed is what a node that crashed answers its own callers.
var errNodeCrashed = errors.New("node crashed")

// Crash stops node i as a power cut would (see Node.Crash); RestartNode
// brings it back from its log.
func (l *Local) Crash(i int) error {
	n, err := l.takeDown(i)
	if err != nil {
		return err
	}
	n.Crash()
	return nil
}
