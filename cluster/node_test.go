package cluster

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Start refuses a config that breaks a rule, naming the field, before it
// listens or touches the disk.
func TestStartRefusesBadConfig(t *testing.T) {
	two := []string{"127.0.0.1:1", "127.0.0.1:2"}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no members", Config{}, "Members: member list is empty"},
		{"id out of range", Config{ID: 2, Members: two}, "ID = 2: not a member (Members are nodes 0-1)"},
		{"negative id", Config{ID: -1, Members: two}, "ID = -1: not a member"},
		{"bad address", Config{Members: []string{"127.0.0.1:1", "nohostport"}}, `Members[1] = "nohostport": not host:port`},
		{"duplicate address", Config{ID: 1, Members: []string{"127.0.0.1:1", "127.0.0.1:1"}}, `Members[0] and Members[1] are both "127.0.0.1:1"`},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
		c.cfg.DataDir, c.cfg.Logger = t.TempDir(), hclog.NewNullLogger()
		if n, err := Start(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			if n != nil {
				n.Stop()
			}
			t.Errorf("%s: Start() = %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if err := (Config{ID: 1, Members: two}).Validate(); err != nil {
		t.Errorf("a valid config: %v", err)
	}
}
