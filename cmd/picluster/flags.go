package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// errHelp is what a command returns when its command line asked for help,
// which parse has printed: run returns nil, and the program exits 0.
var errHelp = errors.New("help requested")

// usageError is a mistake on the command line. main prints it, then one
// line on where to look, and exits 2; the usage itself goes out only on -h.
type usageError struct {
	cmd string // whose -h to read; "" for picluster's list of commands
	err error  // nil when the mistake has been explained already
}

func (u *usageError) Error() string {
	if u.err == nil {
		return "usage"
	}
	return u.err.Error()
}

func (u *usageError) Unwrap() error { return u.err }

// badFlag returns a usage error of the running command (run names it).
func badFlag(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// asUsage marks err, which a flag's value caused, as a usage error.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err: err}
}

// explain prints err for a person on w and returns the exit code: 2 for a
// usage error, followed by where to look, 1 for anything else.
func explain(w io.Writer, err error) int {
	var u *usageError
	if !errors.As(err, &u) {
		fmt.Fprintln(w, "picluster:", err)
		return 1
	}
	if u.err == nil {
		return 2
	}
	fmt.Fprintln(w, "picluster:", err)
	if u.cmd == "" {
		fmt.Fprintln(w, `Run "picluster help" for the commands.`)
	} else {
		fmt.Fprintf(w, "Run \"picluster %s -h\" for its flags.\n", u.cmd)
	}
	return 2
}

// parse parses args into fs. The flag parser recognises -h, -help and
// --help where a flag may stand (not as the value of one): parse prints the
// help on stdout and returns errHelp. Any mistake is a usageError that
// names the flag as it was typed and the form it wants.
func (e *env) parse(fs *flag.FlagSet, summary string, args []string) error {
	fs.SetOutput(io.Discard) // parse explains the errors itself
	fs.Usage = func() {}
	err := fs.Parse(args)
	consumed := args[:len(args)-len(fs.Args())]
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(e.stdout, fs, summary)
		return errHelp
	case err != nil && len(fs.Args()) > 0 && strings.HasPrefix(err.Error(), "bad flag syntax"):
		// The one mistake the parser refuses before consuming it: ---x, -=x.
		return &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: bad flag syntax; write --name value or --name=value", fs.Arg(0))}
	case err != nil:
		return &usageError{cmd: fs.Name(), err: flagMistake(fs, consumed, err)}
	case fs.NArg() > 0:
		return &usageError{cmd: fs.Name(), err: fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	if err := valueLikeFlag(fs, consumed); err != nil {
		return &usageError{cmd: fs.Name(), err: err}
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d < 0 && bad == nil {
			bad = fmt.Errorf("--%s %s: want a duration ≥ 0, like 30s or 5m", f.Name, f.Value)
		}
	})
	if bad != nil {
		return &usageError{cmd: fs.Name(), err: bad}
	}
	return nil
}

// flagToken is one flag on the command line as typed: the flag, and its value
// when that is the next argument.
type flagToken struct {
	typed []string // "--duration", "5"; or "--duration=5"
	name  string
	value string
	has   bool // whether a value was given
}

// tokens splits the arguments the flag parser consumed into flags, by the
// flag package's rules: -name or --name, then =value, or the next argument
// unless the flag is a boolean.
func tokens(fs *flag.FlagSet, consumed []string) []flagToken {
	var out []flagToken
	for i := 0; i < len(consumed); {
		t := flagToken{typed: consumed[i : i+1]}
		t.name, t.value, t.has = strings.Cut(strings.TrimPrefix(strings.TrimPrefix(consumed[i], "-"), "-"), "=")
		i++
		if f := fs.Lookup(t.name); f != nil && !t.has && !isBool(f) && i < len(consumed) {
			t.typed, t.value, t.has = consumed[i-1:i+1], consumed[i], true
			i++
		}
		out = append(out, t)
	}
	return out
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// flagMistake explains the flag parser's err: the last flag consumed is
// the one it refused.
func flagMistake(fs *flag.FlagSet, consumed []string, err error) error {
	ts := tokens(fs, consumed)
	if len(ts) == 0 {
		return err
	}
	t := ts[len(ts)-1]
	typed := strings.Join(t.typed, " ")
	f := fs.Lookup(t.name)
	switch {
	case f == nil:
		if near := nearest(fs, t.name); near != "" {
			return fmt.Errorf("unknown flag %s; did you mean --%s?", typed, near)
		}
		return fmt.Errorf("unknown flag %s", typed)
	case !t.has:
		return fmt.Errorf("%s: missing value (%s)", typed, wantOf(f))
	}
	return fmt.Errorf("%s: want %s", typed, wantOf(f))
}

// wantOf describes the values f takes.
func wantOf(f *flag.Flag) string {
	name, _ := flag.UnquoteUsage(f)
	switch f.Value.(flag.Getter).Get().(type) {
	case time.Duration:
		return "a duration like 30s or 5m"
	case bool:
		return "true or false"
	case int:
		return "an integer"
	case uint64, uint:
		return "a whole number like 1000000"
	case float64:
		return "a number like 0.5 or 1e-6"
	}
	if name == "" || name == "value" {
		return "a value"
	}
	return name
}

// valueLikeFlag refuses a string flag whose value, given as the next
// argument, is a flag itself: in "worker --id -h" the -h is a mistake, not
// an id. "--id=-h" says it is meant.
func valueLikeFlag(fs *flag.FlagSet, consumed []string) error {
	for _, t := range tokens(fs, consumed) {
		f := fs.Lookup(t.name)
		if len(t.typed) != 2 || f == nil || !strings.HasPrefix(t.value, "-") {
			continue
		}
		if _, ok := f.Value.(flag.Getter).Get().(string); !ok {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(t.value, "-"), "-"), "=")
		if v == "h" || v == "help" || fs.Lookup(v) != nil {
			return fmt.Errorf("%s %s: missing value (%s is a flag); to mean it as the value, write %s=%s",
				t.typed[0], t.value, t.value, t.typed[0], t.value)
		}
	}
	return nil
}

// nearest returns the flag of fs closest to name, within two edits, or "".
func nearest(fs *flag.FlagSet, name string) string {
	best, dist := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		if d := edits(name, f.Name); d < dist {
			best, dist = f.Name, d
		}
	})
	return best
}

// edits is the Levenshtein distance between a and b.
func edits(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// printHelp prints a command's help: what it does, then its flags in
// alphabetical order, written as --name.
func printHelp(w io.Writer, fs *flag.FlagSet, summary string) {
	fmt.Fprintf(w, "Usage: picluster %s [flags]\n\n%s\n", fs.Name(), summary)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprint(w, "\nFlags:\n")
			first = false
		}
		name, usage := flag.UnquoteUsage(f)
		if isBool(f) {
			name = ""
		}
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		usage = strings.ReplaceAll(usage, "\n", "\n        ")
		switch f.Value.(flag.Getter).Get().(type) {
		case string:
			if f.DefValue != "" {
				usage += fmt.Sprintf(" (default %q)", f.DefValue)
			}
		default:
			if d := f.DefValue; d != "0" && d != "0s" && d != "false" && d != "" {
				usage += " (default " + d + ")"
			}
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, usage)
	})
}
