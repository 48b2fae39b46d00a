package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"edgegw/internal/suggest"
)

// A command line that guides: -h/--help and -V/--version everywhere, flag help
// in the double-dash form the documentation uses, and the nearest known name
// for an unknown command or flag.

// command is a top-level command of the command line.
type command struct {
	names []string // the name, then aliases
	run   func(args []string, stdout, stderr io.Writer) int
	subs  []string // the subcommands its dispatcher knows, for suggestions
}

// Subcommands, each the one list its dispatcher suggests from.
var (
	configSubs   = []string{"default", "check", "import-mosquitto"}
	storeSubs    = []string{"check"}
	serviceSubs  = []string{"install", "uninstall", "start", "stop", "restart", "status", "unit"}
	sessionsSubs = []string{"list", "show", "kick", "purge"}
	metersSubs   = []string{"scan", "read"}
)

// commandTable is every top-level command: cli dispatches through it and
// suggests from it, and TestUsageListsEveryCommand checks that usage names
// each command and subcommand, so a command cannot be missing from -h.
func commandTable() []command {
	return []command{
		{[]string{"run"}, runCmd, nil},
		{[]string{"config"}, configCmd, configSubs},
		{[]string{"version"}, func(args []string, stdout, stderr io.Writer) int {
			if len(args) != 0 {
				return cmdUsageError(stderr, "version", "version takes no arguments")
			}
			return versionCmd(stdout)
		}, nil},
		{[]string{"service"}, serviceCmd, serviceSubs},
		{[]string{"store"}, storeCmd, storeSubs},
		{[]string{"passwd"}, func(args []string, stdout, stderr io.Writer) int {
			return passwdCmd(args, os.Stdin, stdout, stderr)
		}, nil},
		{[]string{"status"}, statusCmd, nil},
		{[]string{"sessions"}, sessionsCmd, sessionsSubs},
		{[]string{"meters"}, metersDispatch, metersSubs},
		{[]string{"bridge", "bridges"}, bridgeCmd, nil},
		{[]string{"reload"}, reloadCmd, nil},
		{[]string{"help", "-h", "-help", "--help"}, func(_ []string, stdout, _ io.Writer) int {
			fmt.Fprint(stdout, usage)
			return exitOK
		}, nil},
	}
}

// lookupCommand returns the command called name, and the names to suggest
// from when there is none.
func lookupCommand(name string) (cmd command, ok bool, names []string) {
	for _, c := range commandTable() {
		if slices.Contains(c.names, name) {
			return c, true, nil
		}
		names = append(names, c.names[0])
	}
	return command{}, false, names
}

var (
	helpFlags    = []string{"-h", "-help", "--help"}
	versionFlags = []string{"-V", "--version"}
)

// hasArg reports whether args, up to a "--", hold one of names.
func hasArg(args []string, names ...string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		for _, n := range names {
			if a == n {
				return true
			}
		}
	}
	return false
}

// didYouMean is " (did you mean X?)" for the nearest candidate, or "".
func didYouMean(word string, cands []string) string {
	if n := suggest.Nearest(word, cands); n != "" {
		return " (did you mean " + n + "?)"
	}
	return ""
}

// flagsOf returns the flags of command cmd among those that take no flag set
// (config, version, store, passwd, service): passwd's -D, none for the others.
func flagsOf(cmd string) []string {
	if cmd == "passwd" {
		return []string{"-D"}
	}
	return nil
}

// strayFlag returns the first argument of args, up to a "--", that is written
// as a flag and is not one of known ("" if none), with " (did you mean X?)"
// for the known flag nearest to it: the same letters in another case (-d for
// -D) or within suggest.Nearest's distance.
func strayFlag(args []string, known ...string) (bad, near string) {
	for _, a := range args {
		if a == "--" {
			return "", ""
		}
		if len(a) < 2 || a[0] != '-' || slices.Contains(known, a) {
			continue
		}
		for _, k := range known {
			if strings.EqualFold(a, k) {
				return a, " (did you mean " + k + "?)"
			}
		}
		return a, didYouMean(a, known)
	}
	return "", ""
}

// dashed is a flag's name as the documentation writes it: -c, --config.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// shorthandOf is the usage text of a one-letter alias of the flag long.
func shorthandOf(long string) string { return "shorthand for --" + long }

// printFlags writes fs's flags in the double-dash form, a one-letter alias
// (usage "shorthand for --NAME") on its long flag's line.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, "shorthand for --"); ok {
			short[long] = f.Name
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "shorthand for --") {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		names := dashed(f.Name)
		if s, ok := short[f.Name]; ok {
			names = dashed(s) + ", " + names
		}
		if arg != "" && arg != "value" {
			names += " " + arg
		}
		fmt.Fprintf(w, "  %s\n      %s\n", names, usage)
	})
}

// flagError reports a parse error of command name's flags: an unknown flag
// with the nearest known one, then the usage; the exit status is exitUsage.
func flagError(stderr io.Writer, name string, fs *flag.FlagSet, err error, usage func(io.Writer)) int {
	msg := err.Error()
	if bad, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		bad = "--" + strings.TrimLeft(bad, "-")
		var known []string
		fs.VisitAll(func(f *flag.Flag) { known = append(known, dashed(f.Name)) })
		msg = "unknown flag " + bad + didYouMean(bad, known)
	}
	fmt.Fprintf(stderr, "edgegw %s: %s\n", name, msg)
	usage(stderr)
	return exitUsage
}

// parseFlags parses args with fs for command name: -h/--help prints the usage
// on stdout (done, exit 0); a bad flag is reported by flagError (done, exit 2).
func parseFlags(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer,
	usage func(io.Writer), parse func([]string) ([]string, error)) (pos []string, code int, done bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if hasArg(args, helpFlags...) {
		usage(stdout)
		return nil, exitOK, true
	}
	pos, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return nil, exitOK, true
	}
	if err != nil {
		return nil, flagError(stderr, name, fs, err, usage), true
	}
	return pos, exitOK, false
}

// commandUsage returns usage's lines for command cmd (with their continuation
// lines), or all of usage when cmd has none.
func commandUsage(cmd string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  edgegw "+cmd+" ") || strings.TrimRight(line, "\n") == "  edgegw "+cmd:
			in = true
		case strings.HasPrefix(line, "      "): // a continuation keeps the state
		default:
			in = false
		}
		if in {
			b.WriteString(line)
		}
	}
	if b.Len() == 0 {
		return usage
	}
	return "usage:\n" + b.String()
}
