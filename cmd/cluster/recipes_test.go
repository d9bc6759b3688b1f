package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's "Breaking it on purpose" recipes, one script each under
// testdata/, in the manner of etcd-raft's interaction tests: a command, a
// line of dashes, what the prompt prints, a blank line; and so on. Lines
// starting with # before the first command are comments; a line `flags:
// ...` there gives the command-line flags, and `normalise: values` hides
// the values `get` reads (for a recipe whose values depend on how its
// concurrent transactions interleave).
//
// What differs from run to run is normalised before comparing:
// transaction ids are <tx>, measured milliseconds <ms>, an in-doubt
// transaction's age <age>, addresses <addr>; runs of spaces (a table's
// padding, which follows the widths) are two spaces; spawn's counts are
// <n> and its per-reason lines are left out; a trace is its first line
// (the order of concurrent events varies); and a restart's ", <k> in
// doubt" is left out, since whether the node has asked about its in-doubt
// transactions yet is a race.
//
// go test ./cmd/cluster -run TestRecipes -rewrite writes the outputs seen
// into the scripts (check them before committing).

var rewrite = flag.Bool("rewrite", false, "write the output seen into the recipe scripts")

// step is one command of a script and the output it expects.
type step struct {
	cmd, want string
}

type script struct {
	comments  []string
	flags     []string
	normalise []string
	steps     []step
}

func parseScript(text string) (*script, error) {
	s := &script{}
	blocks := strings.Split(strings.TrimRight(text, "\n")+"\n", "\n\n")
	for i, b := range blocks {
		lines := strings.Split(strings.TrimRight(b, "\n"), "\n")
		if i == 0 {
			for len(lines) > 0 && (strings.HasPrefix(lines[0], "#") || strings.HasPrefix(lines[0], "flags:") || strings.HasPrefix(lines[0], "normalise:")) {
				switch l := lines[0]; {
				case strings.HasPrefix(l, "flags:"):
					s.flags = strings.Fields(strings.TrimPrefix(l, "flags:"))
				case strings.HasPrefix(l, "normalise:"):
					s.normalise = strings.Fields(strings.TrimPrefix(l, "normalise:"))
				default:
					s.comments = append(s.comments, l)
				}
				lines = lines[1:]
			}
			if len(lines) == 0 {
				continue
			}
		}
		if len(lines) < 2 || lines[1] != "----" {
			return nil, fmt.Errorf("block %d: want a command, then ----, then its output:\n%s", i+1, b)
		}
		s.steps = append(s.steps, step{cmd: lines[0], want: strings.Join(lines[2:], "\n")})
	}
	if len(s.steps) == 0 {
		return nil, fmt.Errorf("no commands")
	}
	return s, nil
}

func (s *script) String() string {
	var b strings.Builder
	for _, c := range s.comments {
		b.WriteString(c + "\n")
	}
	if len(s.flags) > 0 {
		b.WriteString("flags: " + strings.Join(s.flags, " ") + "\n")
	}
	if len(s.normalise) > 0 {
		b.WriteString("normalise: " + strings.Join(s.normalise, " ") + "\n")
	}
	for i, st := range s.steps {
		if i > 0 || b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString(st.cmd + "\n----\n")
		if st.want != "" {
			b.WriteString(st.want + "\n")
		}
	}
	return b.String()
}

var (
	addrPattern    = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	msPattern      = regexp.MustCompile(`\(\d+ ms\)`)
	agePattern     = regexp.MustCompile(`^(<tx> +\d+ +)\S+`)
	restartPattern = regexp.MustCompile(`^(node \d+ restarted \(incarnation \d+), \d+ in doubt\)$`)
	spawnPattern   = regexp.MustCompile(`^(spawned \d+): committed \d+, aborted \d+`)
	reasonPattern  = regexp.MustCompile(`^  \d+ × `)
	valuePattern   = regexp.MustCompile(` = -?\d+  \(node `)
	spacesPattern  = regexp.MustCompile(`   +`)
)

// normalise makes what cmd printed comparable from run to run (see above).
func normalise(cmd, out string, opts []string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if strings.HasPrefix(cmd, "trace ") {
		lines = lines[:1]
	}
	var kept []string
	for _, l := range lines {
		if reasonPattern.MatchString(l) {
			continue
		}
		l = addrPattern.ReplaceAllString(l, "<addr>")
		l = txIDPattern.ReplaceAllString(l, "<tx>")
		l = msPattern.ReplaceAllString(l, "(<ms> ms)")
		l = agePattern.ReplaceAllString(l, "${1}<age>")
		l = restartPattern.ReplaceAllString(l, "$1)")
		l = spawnPattern.ReplaceAllString(l, "$1: committed <n>, aborted <n>")
		if slices.Contains(opts, "values") {
			l = valuePattern.ReplaceAllString(l, " = <n>  (node ")
		}
		kept = append(kept, spacesPattern.ReplaceAllString(l, "  "))
	}
	return strings.Join(kept, "\n")
}

func recipeScripts(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), ".txt")] = f
	}
	return out
}

// Every recipe script, each on a cluster of its own.
func TestRecipes(t *testing.T) {
	scripts := recipeScripts(t)
	if len(scripts) == 0 {
		t.Fatal("no scripts under testdata/")
	}
	for name, file := range scripts {
		t.Run(name, func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			s, err := parseScript(string(text))
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			p := startPrompt(t, s.flags...)
			var transcript strings.Builder
			for i, st := range s.steps {
				got := normalise(st.cmd, p.exec(st.cmd), s.normalise)
				fmt.Fprintf(&transcript, "> %s\n%s\n", st.cmd, got)
				if *rewrite {
					s.steps[i].want = got
					continue
				}
				if got != st.want {
					t.Fatalf("%s, command %d (%s):\ngot:\n%s\nwant:\n%s\nthe session so far:\n%s", file, i+1, st.cmd, got, st.want, transcript.String())
				}
			}
			if *rewrite {
				if err := os.WriteFile(file, []byte(s.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// readmeRecipes returns the rows of the README's "Breaking it on purpose"
// table: the commands of its "type" column and the script named in its
// last one.
func readmeRecipes(t *testing.T) (rows []readmeRecipe) {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(text), "\n### Breaking it on purpose\n")
	if !ok {
		t.Fatal(`README.md has no "### Breaking it on purpose" section`)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	scriptLink := regexp.MustCompile(`^\[([\w-]+)\]\(cmd/cluster/testdata/([\w-]+)\.txt\)$`)
	code := regexp.MustCompile("`([^`]+)`")
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| to see") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "| "), " | ")
		if len(cells) != 3 {
			t.Fatalf("README row %q: want three columns (to see, type, script)", l)
		}
		m := scriptLink.FindStringSubmatch(strings.TrimSpace(cells[2]))
		if m == nil || m[1] != m[2] {
			t.Fatalf("README row %q: the script column is not [name](cmd/cluster/testdata/name.txt)", l)
		}
		row := readmeRecipe{script: m[1]}
		for _, c := range code.FindAllStringSubmatch(cells[1], -1) {
			f := strings.Fields(c[1])
			switch {
			case len(f) > 0 && commandsByName[f[0]] != nil:
				row.commands = append(row.commands, c[1])
			case len(f) == 2 && strings.HasPrefix(f[0], "--"):
				// The flags the recipe's cluster is started with (`--flag value`;
				// a lone `--flag` is prose naming one).
				row.flags = append(row.flags, f...)
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		t.Fatal("README's Breaking it on purpose has no recipes")
	}
	return rows
}

type readmeRecipe struct {
	script   string
	commands []string
	flags    []string // `--flag value` in the type column: how make run must be started
}

// The README names a script for every recipe, every script is in the
// README, and the commands the README says to type are the script's, in
// order (a <placeholder> in the README, such as 0.<n>.<s>, stands for one
// word or part of one).
func TestREADMERecipesAreTheScripts(t *testing.T) {
	scripts := recipeScripts(t)
	named := map[string]bool{}
	for _, row := range readmeRecipes(t) {
		if named[row.script] {
			t.Errorf("README names script %s twice", row.script)
		}
		named[row.script] = true
		file, ok := scripts[row.script]
		if !ok {
			t.Errorf("README names recipe script %s, but testdata/%s.txt does not exist", row.script, row.script)
			continue
		}
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseScript(string(text))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var cmds []string
		for _, st := range s.steps {
			cmds = append(cmds, st.cmd)
		}
		if !sameCommands(row.commands, cmds) {
			t.Errorf("README's recipe %s types %q, its script %q", row.script, row.commands, cmds)
		}
		if strings.Join(row.flags, " ") != strings.Join(s.flags, " ") {
			t.Errorf("README's recipe %s starts the cluster with %q, its script with %q", row.script, row.flags, s.flags)
		}
	}
	for name := range scripts {
		if !named[name] {
			t.Errorf("testdata/%s.txt is not named in the README's Breaking it on purpose", name)
		}
	}
}

var placeholder = regexp.MustCompile(`<[^>]+>`)

func sameCommands(readme, script []string) bool {
	if len(readme) != len(script) {
		return false
	}
	for i, r := range readme {
		parts := placeholder.Split(r, -1)
		for j := range parts {
			parts[j] = regexp.QuoteMeta(parts[j])
		}
		if !regexp.MustCompile(`^` + strings.Join(parts, `\S+`) + `$`).MatchString(script[i]) {
			return false
		}
	}
	return true
}
