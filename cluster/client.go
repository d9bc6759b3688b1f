package cluster

import (
	"fmt"
	"net/rpc"
	"time"

	"twopc/messages"
)

// SubmitArgs and ReadArgs are the Client service's requests.
type SubmitArgs struct {
	Ops []messages.Op
}

type ReadArgs struct {
	Keys []string
}

// ReadResult answers a read: one entry per key per owning node.
type ReadResult struct {
	Values []NodeValue
}

// clientService is the net/rpc face a node shows to clients.
type clientService struct{ n *Node }

func (s *clientService) Submit(args *SubmitArgs, out *messages.Outcome) error {
	o, err := s.n.Submit(args.Ops...)
	if err != nil {
		return err
	}
	*out = *o
	return nil
}

func (s *clientService) Read(args *ReadArgs, out *ReadResult) error {
	vals, err := s.n.Read(args.Keys...)
	if err != nil {
		return err
	}
	out.Values = vals
	return nil
}

// Client talks to one node of a cluster; that node coordinates the
// transactions submitted through it and fetches reads from the owners.
// A Client is safe for concurrent use.
type Client struct {
	addr string
	rpc  *rpc.Client
}

// Dial connects to the node at addr.
func Dial(addr string) (*Client, error) {
	c, err := rpc.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to node at %s: %w", addr, err)
	}
	return &Client{addr: addr, rpc: c}, nil
}

// DialTimeout is Dial with a bound on connecting.
func DialTimeout(addr string, d time.Duration) (*Client, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := Dial(addr)
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Submit runs one transaction and returns its outcome: Committed, or not
// with the reason. An error means no outcome is known (e.g. the node went
// away mid-call).
func (c *Client) Submit(ops ...messages.Op) (*messages.Outcome, error) {
	var out messages.Outcome
	if err := c.rpc.Call("Client.Submit", &SubmitArgs{Ops: ops}, &out); err != nil {
		return nil, fmt.Errorf("submit via %s: %w", c.addr, err)
	}
	return &out, nil
}

// Read returns the committed values of keys (a missing key reads 0).
func (c *Client) Read(keys ...string) ([]NodeValue, error) {
	var out ReadResult
	if err := c.rpc.Call("Client.Read", &ReadArgs{Keys: keys}, &out); err != nil {
		return nil, fmt.Errorf("read via %s: %w", c.addr, err)
	}
	return out.Values, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.rpc.Close() }
