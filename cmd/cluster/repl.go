package main

// The prompt: one command per line, read from a terminal through a line
// editor (history, completion) or from a pipe. Every command writes its
// result to the output; what went wrong is one `error: ...` line and the
// session goes on.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/chzyer/readline"
	"github.com/hashicorp/go-hclog"

	"twopc/messages"
	"twopc/trace"
)

// traceTransactions is how many transactions' traces the prompt keeps.
const traceTransactions = 10000

type repl struct {
	opts   *options
	logger hclog.Logger
	logOut *switchWriter
	tracer *trace.Recorder
	c      backend

	out io.Writer // where the current command writes
	// ctx is the running command's: Ctrl-C cancels it (interrupt).
	ctx context.Context

	runMu  sync.Mutex
	cancel context.CancelFunc // the running command's, nil between commands

	notesMu sync.Mutex
	notes   []string // said by the cluster between two lines of output (a crash at a step)

	recent recentWords // transaction ids printed lately, for completion
	keys   recentWords // keys typed lately, for completion

	stopOnce sync.Once
}

func newREPL(o *options, logger hclog.Logger, logOut *switchWriter) *repl {
	return &repl{opts: o, logger: logger, logOut: logOut, tracer: trace.NewRecorder(traceTransactions), ctx: context.Background()}
}

// interrupt cancels the command running, if any (Ctrl-C), and says
// whether there was one. A command that can stop early does (spawn stops
// submitting, wait and sleep return, a transaction command stops waiting
// for its outcome); the others finish, as they are short.
func (r *repl) interrupt() bool {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.cancel == nil {
		return false
	}
	r.cancel()
	return true
}

// running marks a command as running (cancel set) or done (nil).
func (r *repl) running(cancel context.CancelFunc) {
	r.runMu.Lock()
	r.cancel = cancel
	r.runMu.Unlock()
}

// shutdown stops the cluster once; stopping it cancels the armed crashes
// and waits for those under way.
func (r *repl) shutdown() {
	r.stopOnce.Do(func() {
		if r.c != nil {
			r.c.stop()
		}
	})
}

// loop reads commands until quit or the end of input and returns the exit
// code.
func (r *repl) loop(stdin io.Reader, stdout, stderr io.Writer) int {
	if f, ok := stdin.(*os.File); ok && readline.IsTerminal(int(f.Fd())) {
		return r.terminal(f, stdout, stderr)
	}
	r.afterDemo(false)
	r.out = stdout
	in := bufio.NewReader(stdin)
	for {
		line, tooLong, err := readLine(in)
		switch {
		case tooLong > 0:
			fmt.Fprintf(stdout, "error: a line of %d bytes is too long (at most %d)\n", tooLong, maxLine)
		case line != "" || err == nil:
			if r.exec(line) {
				return 0
			}
		}
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintln(stdout, "error: reading commands:", err)
			return 1
		}
	}
}

// maxLine bounds a command line; a longer one is skipped with an error.
const maxLine = 1 << 20

// readLine reads one line without its end of line. A line longer than
// maxLine is read to its end and dropped: tooLong is its length then.
func readLine(in *bufio.Reader) (line string, tooLong int, err error) {
	var buf []byte
	n := 0
	for {
		chunk, err := in.ReadSlice('\n')
		n += len(chunk)
		if n <= maxLine+1 {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		line = strings.TrimRight(string(buf), "\r\n")
		if n > maxLine+1 {
			return "", n, err
		}
		return line, 0, err
	}
}

// afterDemo lowers the protocol log from info to warn, unless the user
// chose a level: at a prompt, every step of every transaction would drown
// the answers (`trace` shows them for one transaction, `loglevel info` for
// all).
func (r *repl) afterDemo(say bool) {
	if r.c == nil || r.c.local() == nil {
		return // the nodes run elsewhere, with their own log levels
	}
	if r.opts.levelGiven || r.logger.GetLevel() != hclog.Info {
		return
	}
	r.logger.SetLevel(hclog.Warn)
	if say {
		fmt.Fprintln(r.out, "(the protocol log is at warn now; `loglevel info` shows every step)")
	}
}

// terminal runs the prompt with a line editor on the terminal f.
func (r *repl) terminal(f *os.File, stdout, stderr io.Writer) int {
	fd := int(f.Fd())
	var saved *readline.State
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          "twopc> ",
		HistoryFile:     r.opts.history,
		AutoComplete:    r.completer(),
		InterruptPrompt: "^C",
		EOFPrompt:       "quit",
		Stdin:           f,
		Stdout:          stdout,
		Stderr:          stderr,
		FuncIsTerminal:  func() bool { return true },
		FuncMakeRaw: func() (err error) {
			saved, err = readline.MakeRaw(fd)
			return err
		},
		FuncExitRaw: func() error {
			if saved == nil {
				return nil
			}
			return readline.Restore(fd, saved)
		},
		FuncGetWidth: func() int {
			w, _, err := readline.GetSize(fd)
			if err != nil {
				return 80
			}
			return w
		},
	})
	if err != nil {
		fmt.Fprintln(stdout, "error: opening the prompt:", err)
		return 1
	}
	defer rl.Close()
	// Log lines are written above the prompt. A command's output is
	// gathered and written in one piece: the line editor redraws its
	// prompt after every write it is given, and a table written cell by
	// cell would come out interleaved with prompts.
	screen := rl.Stdout()
	var out bytes.Buffer
	r.out = &out
	r.logOut.set(rl.Stderr())
	defer r.logOut.set(r.logOut.initial)
	r.afterDemo(true)
	if r.c.local() == nil {
		fmt.Fprintf(r.out, "driving the nodes at %s as the operator\n", strings.Join(r.c.members(), ", "))
	}
	fmt.Fprintln(r.out, "type help for the commands, quit (or Ctrl-D) to leave, Ctrl-C to stop a command")
	show := func() {
		if out.Len() > 0 {
			_, _ = screen.Write(out.Bytes())
			out.Reset()
		}
	}
	defer show()
	for {
		show()
		line, err := rl.Readline()
		switch {
		case errors.Is(err, readline.ErrInterrupt):
			continue // Ctrl-C clears the line
		case errors.Is(err, io.EOF):
			return 0
		case err != nil:
			fmt.Fprintln(r.out, "error: reading commands:", err)
			return 1
		}
		if r.exec(line) {
			return 0
		}
	}
}

// exec runs one line and reports whether the session ends.
func (r *repl) exec(line string) (quit bool) {
	// Notes that came between two commands (a crash armed for a step that
	// came after the last command's answer) first, then this one's.
	r.flushNotes()
	defer r.flushNotes()
	fields := strings.Fields(line)
	// A comment runs from a word starting with # to the end of the line.
	for i, f := range fields {
		if strings.HasPrefix(f, "#") {
			fields = fields[:i]
			break
		}
	}
	if len(fields) == 0 {
		return false
	}
	name, args := fields[0], fields[1:]
	if name == "exit" {
		name = "quit"
	}
	cmd, ok := commandsByName[name]
	if !ok {
		fmt.Fprintf(r.out, "error: unknown command %q (help lists the commands)\n", name)
		return false
	}
	// A transaction command's count is checked once its `via` is taken off.
	if cmd.tx == nil {
		if err := cmd.check(args); err != nil {
			fmt.Fprintln(r.out, "error:", err)
			return false
		}
	}
	if cmd.run == nil { // quit
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx = ctx
	r.running(cancel)
	defer func() {
		r.running(nil)
		cancel()
	}()
	if err := cmd.run(r, args); err != nil {
		r.flushNotes()
		fmt.Fprintln(r.out, "error:", err)
	}
	return false
}

// note queues a line said by the cluster itself (from an actor's
// goroutine); it is printed before the current command's own output ends.
func (r *repl) note(s string) {
	r.notesMu.Lock()
	r.notes = append(r.notes, s)
	r.notesMu.Unlock()
}

func (r *repl) flushNotes() {
	r.notesMu.Lock()
	notes := r.notes
	r.notes = nil
	r.notesMu.Unlock()
	for _, n := range notes {
		fmt.Fprintln(r.out, n)
	}
}

// remember keeps a transaction id for completion of `trace` and `resolve`.
func (r *repl) remember(tx string) { r.recent.add(tx) }

// recentTxs are the transaction ids printed lately, the latest first.
func (r *repl) recentTxs() []string { return r.recent.list(false) }

// recentWords keeps the last maxRecent distinct words given to add.
type recentWords struct {
	mu    sync.Mutex
	words []string // oldest first
}

const maxRecent = 50

func (w *recentWords) add(word string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, x := range w.words {
		if x == word {
			w.words = append(w.words[:i], w.words[i+1:]...)
			break
		}
	}
	w.words = append(w.words, word)
	if len(w.words) > maxRecent {
		w.words = append([]string(nil), w.words[len(w.words)-maxRecent:]...)
	}
}

// list returns the words, the latest first; withValue puts the key
// `value`, which every node holds, first if it is not there.
func (w *recentWords) list(withValue bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	if withValue && !slices.Contains(w.words, messages.EverywhereKey) {
		out = append(out, messages.EverywhereKey)
	}
	for i := len(w.words) - 1; i >= 0; i-- {
		out = append(out, w.words[i])
	}
	return out
}

// switchWriter is the log's output: stderr, or the line editor's stderr
// while a prompt is open.
type switchWriter struct {
	mu      sync.Mutex
	w       io.Writer
	initial io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	if s.initial == nil {
		s.initial = s.w
	}
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
