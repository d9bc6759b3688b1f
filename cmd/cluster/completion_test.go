package main

import (
	"slices"
	"strings"
	"testing"
)

// complete returns the completions of line (typed up to its end) as whole
// words, the way the line editor would show them.
func complete(r *repl, line string) []string {
	cands, n := r.completer().Do([]rune(line), len([]rune(line)))
	typed := string([]rune(line)[len([]rune(line))-n:])
	var out []string
	for _, c := range cands {
		out = append(out, typed+strings.TrimSuffix(string(c), " "))
	}
	return out
}

// Completion comes from the command table: names, each command's own
// words, `via <node>` after a transaction command's arguments, the
// transactions printed lately after trace and resolve, and the keys used
// lately after get, set and transfer.
func TestCompletionFollowsTheCommandTable(t *testing.T) {
	p := startPrompt(t)
	// Keys and transaction ids come from use.
	for _, line := range []string{"set n1/a=5 n2/b=1", "transfer n1/a n2/b 2 via 3", "get c"} {
		if out := p.exec(line); strings.HasPrefix(out, "error:") {
			t.Fatalf("%s: %s", line, out)
		}
	}
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	steps := []string{"commit-decided", "commit-logged", "commit-sent", "commit-received", "committed-logged"}
	for _, c := range []struct {
		line string
		want []string
	}{
		{"", names},
		{"hel", []string{"help"}},
		{"help ", nil},
		{"add ", nil}, // a delta: nothing to offer
		{"add 1 ", []string{"via"}},
		{"add 1 via ", []string{"0", "1", "2", "3"}},
		{"add 1 via 2 ", nil},
		{"set ", []string{"c=", "n2/b=", "n1/a="}},
		{"set n1/", []string{"n1/a="}},
		{"set n1/a=3 ", []string{"c=", "n2/b=", "n1/a=", "via"}},
		{"transfer ", []string{"c", "n2/b", "n1/a"}},
		{"transfer n1/a ", []string{"c", "n2/b", "n1/a"}},
		{"transfer n1/a n2/b ", nil},
		{"transfer n1/a n2/b 4 ", []string{"via"}},
		{"get ", []string{"value", "c", "n2/b", "n1/a"}},
		{"get val", []string{"value"}},
		{"spawn ", []string{"10", "100", "1000"}},
		{"spawn 10 ", []string{"add", "set", "transfer"}},
		{"spawn 10 add 1 ", []string{"via"}},
		{"spawn 10 transfer ", []string{"c", "n2/b", "n1/a"}},
		{"crash ", []string{"0", "1", "2", "3"}},
		{"crash 1 ", []string{"at"}},
		{"crash 1 at com", steps},
		{"crash 1 at commit-logged ", nil},
		{"restart ", []string{"0", "1", "2", "3"}},
		{"partition 0 ", []string{"0", "1", "2", "3"}},
		{"partition 0 1 ", nil},
		{"trace ", []string{"3.1.2", "0.1.2"}},
		{"trace 3", []string{"3.1.2"}},
		{"resolve ", []string{"3.1.2", "0.1.2"}},
		{"resolve 0.1.2 ", []string{"commit", "abort"}},
		{"loglevel w", []string{"warn"}},
		{"faults ", []string{"0", "1", "2", "3"}},
		{"faults 2 ", []string{"off", "drop=", "dup=", "delay=", "reorder="}},
		{"faults 2 d", []string{"drop=", "dup=", "delay="}},
		{"faults 2 drop=0.1 ", []string{"dup=", "delay=", "reorder="}},
		{"faults 2 off ", nil},
		{"wait ", []string{"settled", "indoubt"}},
		{"nosuch ", nil},
	} {
		if got := complete(p.r, c.line); !slices.Equal(got, c.want) {
			t.Errorf("complete %q = %q, want %q", c.line, got, c.want)
		}
	}
}

// A completed word is followed by a space, except a key to set, which
// goes on with its value.
func TestCompletionEndsAWordWithASpace(t *testing.T) {
	p := startPrompt(t)
	p.exec("set n1/a=5")
	for line, want := range map[string]string{"hel": "p ", "set n1": "/a=", "crash 1 a": "t "} {
		cands, _ := p.r.completer().Do([]rune(line), len(line))
		if len(cands) != 1 || string(cands[0]) != want {
			t.Errorf("complete %q: %q, want %q", line, cands, want)
		}
	}
}
