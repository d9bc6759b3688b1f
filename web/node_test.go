package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

// One node of a cmd/node cluster, as its own page sees it: its card from
// itself; its peer's card says only what its link says; its transactions
// and their diagrams; no action taken.
func TestNodeSourceShowsItsOwnNode(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := net.Listen("tcp", "127.0.0.1:0") // a peer that is not running
	if err != nil {
		t.Fatal(err)
	}
	members := []string{lis.Addr().String(), gone.Addr().String()}
	gone.Close()
	rec := trace.NewRecorder(100)
	src := NewNodeSource(0, members, rec)
	if _, err := src.Snapshot(context.Background()); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("a snapshot before the node is handed over: %v, want one saying it is starting", err)
	}
	n, err := cluster.Start(cluster.Config{ID: 0, Members: members, Listener: lis, DataDir: t.TempDir(), Tracer: rec,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}), Observer: src.Observer(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	src.Serve(n)
	h := NewHandler(src, Options{})
	base := newServer(t, h)
	fr := openFrames(t, base)
	hello := fr.next(t)
	if hello.Hello == nil || hello.Hello.Nodes != 2 || len(hello.Hello.Actions) != 0 || !strings.Contains(hello.Hello.Note, "node 0's own view") {
		t.Fatalf("hello: %+v", hello.Hello)
	}

	o, err := n.Submit(messages.Set("n0/k", 1)) // on this node alone
	if err != nil || !o.Committed {
		t.Fatalf("submit: %+v %v", o, err)
	}
	f := fr.until(t, "the transaction", func(f frameJSON) bool {
		for _, x := range f.Txs {
			if x.Tx == o.Tx.String() {
				return true
			}
		}
		return false
	})
	if len(f.Nodes) != 2 || f.Nodes[0].State != StateUp || f.Nodes[0].Locks < 0 || f.Nodes[1].State != StateUnknown || !strings.Contains(f.Nodes[1].Why, "node 0") {
		t.Errorf("cards: %+v", f.Nodes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if evs, err := src.Trace(ctx, o.Tx); err != nil || len(evs) == 0 {
		t.Errorf("trace of %v: %d events, %v", o.Tx, len(evs), err)
	}
	if _, err := src.Act(ctx, Action{Do: ActionCrash}); !errors.Is(err, errNoActions) {
		t.Errorf("act: %v, want %v", err, errNoActions)
	}
	if code, ans := post(t, base, `{"do":"crash","node":0}`); code != http.StatusForbidden || !strings.Contains(ans.Message, "not taken from this page") {
		t.Errorf("crash posted to a node's page: %d %+v", code, ans)
	}
	if n.Ready() != nil {
		t.Error("the node is not serving after a refused action")
	}
}
