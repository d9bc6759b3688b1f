package main

import (
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/cluster"
	"twopc/internal/bank"
	"twopc/messages"
)

// Four hosts: four node processes, each in a network namespace of its own
// with its own address, joined by a bridge, their certificates naming
// those addresses. Bank transfers run through clients that follow the
// cluster (cluster.DialCluster) while one host's link is taken down and
// brought back (a partition: nothing reaches it, nothing leaves it) and
// another node is SIGKILLed and restarted. At the end, read through each
// node in turn, the bank's invariant holds: no money made or lost, every
// transfer applied on both sides or on neither, as its client saw it.
//
// It needs root and the ip command (as CI has); elsewhere it skips and
// says why.
func TestFourHostsInNetworkNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes in network namespaces")
	}
	if why := labSkip(); why != "" {
		t.Skip(why)
	}
	const nodes = 4
	seed := testSeed(t)
	note := fmt.Sprintf("seed %d (TWOPC_SEED=%d repeats the random choices)", seed, seed)
	t.Logf("%s", note)
	rng := rand.New(rand.NewSource(seed))

	lab := newNetLab(t, nodes)
	peers, hosts := make([]string, nodes), make([]string, nodes)
	for i, h := range lab.hosts {
		// Each namespace has its own port space, all of it free: one
		// fixed port serves every host.
		peers[i], hosts[i] = h.addr+":7100", h.addr
	}
	certs := makeCertsFor(t, hosts)
	c := startProcClusterOn(t, peers, nil, certs, lab.exec, note,
		"--vote-timeout", "1s", "--in-doubt-after", "1s", "--log-level", "warn")

	clients := make([]*cluster.Client, nodes)
	for i := range clients {
		// Client i's own node is node i; the others take over while it
		// cannot be reached.
		order := append(append([]string(nil), peers[i:]...), peers[:i]...)
		cl, err := cluster.DialCluster(order, cluster.WithTLS(certs.client), cluster.WithConnectTimeout(2*time.Second))
		if err != nil {
			c.fatalf("dial node %d: %v", i, err)
		}
		cl.SetTimeout(6 * time.Second) // a node answers within 3 × 1 s + 2 s
		clients[i] = cl
		t.Cleanup(func() { cl.Close() })
	}
	bc := &labBank{clients: clients}

	// Before any load: one transaction across all four hosts commits, so
	// the hosts reach each other over the bridge (a firewall filtering
	// bridged traffic would stop them).
	actortest.Eventually(t, 20*time.Second, func() string {
		o, err := clients[0].Submit(messages.Add("n0/probe", 1), messages.Add("n1/probe", 1), messages.Add("n2/probe", 1), messages.Add("n3/probe", 1))
		if err != nil || !o.Committed {
			return fmt.Sprintf("%s: a transaction across the four hosts: %v %v (do the namespaces reach each other over the bridge? a firewall on bridged traffic, net.bridge.bridge-nf-call-iptables, would stop them)", note, o, err)
		}
		return ""
	})

	b := bank.New(bank.Config{Nodes: nodes, Prefix: "ns" + strconv.FormatInt(seed, 36)})
	if err := b.Setup(bc); err != nil {
		c.fatalf("%v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var transfers atomic.Int64
	for w := 0; w < 6; w++ {
		wrng := rand.New(rand.NewSource(rng.Int63()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				b.Run(bc, b.Transfer(wrng, wrng.Intn(nodes)))
				transfers.Add(1)
			}
		}()
	}
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopLoad) // before the clients close, on any failure
	after := func(n int64, what string) {
		t.Helper()
		from := transfers.Load()
		actortest.Eventually(t, time.Minute, func() string {
			if got := transfers.Load() - from; got < n {
				return fmt.Sprintf("%s: %s: %d of %d transfers done", note, what, got, n)
			}
			return ""
		})
	}

	after(40, "before any fault")
	cutOff := rng.Intn(nodes)
	t.Logf("partition: host %d's link down", cutOff)
	lab.cut(cutOff)
	after(20, fmt.Sprintf("while host %d is cut off", cutOff))
	lab.heal(cutOff)
	after(20, fmt.Sprintf("after host %d's link came back", cutOff))
	killed := (cutOff + 1 + rng.Intn(nodes-1)) % nodes
	t.Logf("SIGKILL node %d", killed)
	c.kill(killed)
	after(20, fmt.Sprintf("while node %d is down", killed))
	c.start(killed)
	after(30, fmt.Sprintf("after node %d's restart", killed))
	stopLoad()

	// What the faults left undecided is settled by the participants'
	// questions within seconds; until then a check may see it half done.
	// Then every node's view must hold the invariant.
	committed, aborted, unknown := b.Counts()
	t.Logf("%d transfers: %d committed, %d aborted, %d unknown", transfers.Load(), committed, aborted, unknown)
	if committed == 0 {
		c.fatalf("no transfer committed")
	}
	for via := 0; via < nodes; via++ {
		view, err := cluster.Dial(peers[via], cluster.WithTLS(certs.client))
		if err != nil {
			c.fatalf("dial node %d to check: %v", via, err)
		}
		r := &labBank{clients: []*cluster.Client{view}}
		var last error
		actortest.Eventually(t, 30*time.Second, func() string {
			if last = b.Check(r); last != nil {
				return fmt.Sprintf("%s: the bank read through node %d: %v", note, via, last)
			}
			return ""
		})
		view.Close()
	}
	// The restarted node coordinates again.
	o, err := clients[killed].Submit(messages.Add(fmt.Sprintf("n%d/probe", killed), 1), messages.Add(fmt.Sprintf("n%d/probe", (killed+1)%nodes), 1))
	if err != nil || !o.Committed || o.Tx.Node != int32(killed) || o.Tx.Incarnation != 2 {
		c.fatalf("after its restart, node %d: %v %v, want committed by it in its second incarnation", killed, o, err)
	}
}

// labBank is the bank's way into the lab: client i submits through node i
// (or, while it is down, another); reads go through the first client.
type labBank struct{ clients []*cluster.Client }

func (l *labBank) Submit(via int, ops ...messages.Op) (*messages.Outcome, error) {
	return l.clients[via%len(l.clients)].Submit(ops...)
}

func (l *labBank) Read(keys ...string) (map[string]int64, error) {
	vals, err := l.clients[0].Read(keys...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(vals))
	for _, v := range vals {
		out[v.Key] = v.Value
	}
	return out, nil
}
