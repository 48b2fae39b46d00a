package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The command line guides: -V/--version anywhere, -h/--help after any command
// (on stdout, exit 0, flags in the --name form the documentation uses), and an
// unknown command, subcommand or flag names the nearest known one (exit 2),
// also for the commands that have no flag set (config, store, passwd, service).
func TestCLIGuides(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		status int
		stdout []string // each must be in stdout
		stderr []string // each must be in stderr
	}{
		{[]string{"--version"}, 0, []string{"edgegw " + testVersion + " ("}, nil},
		{[]string{"-V"}, 0, []string{"edgegw " + testVersion + " ("}, nil},
		{[]string{"status", "--socket", "/nonexistent", "-V"}, 0, []string{"edgegw " + testVersion + " ("}, nil},
		{[]string{"--help"}, 0, []string{"usage:", "edgegw status", "-V, --version"}, nil},
		{[]string{"-h"}, 0, []string{"usage:", "edgegw run [-c FILE]"}, nil},
		{[]string{"status", "--help"}, 0, []string{"usage: edgegw status", "  -c, --config FILE\n", "  --socket PATH\n", "  --json\n", "  --token-file FILE\n"}, nil},
		{[]string{"sessions", "kick", "x", "-h"}, 0, []string{"usage: edgegw sessions", "  -c, --config FILE\n"}, nil},
		{[]string{"run", "-h"}, 0, []string{"usage: edgegw run [-c FILE]", "  -c, --config FILE\n"}, nil},
		{[]string{"config", "--help"}, 0, []string{"edgegw config default", "edgegw config check FILE"}, nil},
		{[]string{"passwd", "-h"}, 0, []string{"edgegw passwd FILE USER", "edgegw passwd -D FILE USER"}, nil},
		{[]string{"service", "--help"}, 0, []string{"usage: edgegw service COMMAND"}, nil},
		{[]string{"-h"}, 0, []string{"\n  edgegw store check FILE "}, nil},
		{[]string{"store", "-h"}, 0, []string{"usage:\n  edgegw store check FILE "}, nil},
		{[]string{"store", "chek", "x"}, 2, nil, []string{`store: unknown subcommand "chek" (did you mean check?)`, "usage:\n  edgegw store check FILE "}},
		{[]string{"store", "check"}, 2, nil, []string{"store: needs check FILE"}},
		{[]string{"store", "check", "--jsn", "x"}, 2, nil, []string{"store check: unknown flag --jsn\n", "usage:\n  edgegw store check FILE "}},
		// The commands without a flag set name a stray flag too: -d is passwd's -D in the wrong case.
		{[]string{"passwd", "-d", "f", "u"}, 2, nil, []string{"passwd: unknown flag -d (did you mean -D?)", "edgegw passwd -D FILE USER"}},
		{[]string{"passwd", "f", "-odd"}, 2, nil, []string{"passwd: unknown flag -odd\n"}},
		{[]string{"config", "check", "--jsn", "f"}, 2, nil, []string{"config check: unknown flag --jsn\n", "edgegw config check FILE"}},
		{[]string{"config", "import-mosquitto", "--output", "f"}, 2, nil, []string{"config import-mosquitto: unknown flag --output\n"}},
		{[]string{"service", "install", "--user"}, 2, nil, []string{"service install: unknown flag --user\n"}},
		{[]string{"stauts"}, 2, nil, []string{`unknown command "stauts" (did you mean status?)`, "usage:"}},
		{[]string{"sesions"}, 2, nil, []string{`(did you mean sessions?)`}},
		{[]string{"xyzzy"}, 2, nil, []string{`unknown command "xyzzy"` + "\n"}}, // nothing near: no guess
		{[]string{"status", "--jsn"}, 2, nil, []string{"edgegw status: unknown flag --jsn (did you mean --json?)", "  --socket PATH\n"}},
		{[]string{"meters", "--sokcet", "x"}, 2, nil, []string{"unknown flag --sokcet (did you mean --socket?)"}},
		{[]string{"run", "--confg", "x"}, 2, nil, []string{"edgegw run: unknown flag --confg (did you mean --config?)", "usage: edgegw run"}},
		{[]string{"config", "chek", "x"}, 2, nil, []string{`unknown subcommand "chek" (did you mean check?)`, "edgegw config check FILE"}},
		{[]string{"sessions", "kik", "x", "--socket", "/nonexistent"}, 2, nil, []string{`"kik x" (did you mean kick?)`}},
		{[]string{"service", "strat"}, 2, nil, []string{`unknown command "strat" (did you mean start?)`}},
	} {
		r := edgegw(t, tt.args...)
		if r.status != tt.status {
			t.Errorf("edgegw %q: status %d, want %d (stdout %q, stderr %q)", tt.args, r.status, tt.status, r.stdout, r.stderr)
			continue
		}
		for _, w := range tt.stdout {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("edgegw %q: stdout lacks %q:\n%s", tt.args, w, r.stdout)
			}
		}
		for _, w := range tt.stderr {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("edgegw %q: stderr lacks %q:\n%s", tt.args, w, r.stderr)
			}
		}
		if strings.Contains(r.stdout+r.stderr, "\n  -config") || strings.Contains(r.stdout+r.stderr, "\n  -socket") {
			t.Errorf("edgegw %q: a flag in the single-dash form:\n%s%s", tt.args, r.stdout, r.stderr)
		}
	}
}

// The usage (edgegw -h) names every command of the command table, and each
// subcommand its dispatcher knows on one of that command's lines, so that a
// command added to the table cannot be missing from -h ("store check" was).
func TestUsageListsEveryCommand(t *testing.T) {
	lines := strings.Split(usage, "\n")
	for _, c := range commandTable() {
		name := c.names[0]
		if name == "help" {
			if !strings.Contains(usage, "-h, --help") {
				t.Errorf("usage does not say -h, --help")
			}
			continue
		}
		var own []string // the lines of command name, continuation lines left out
		for _, l := range lines {
			if strings.HasPrefix(l, "  edgegw "+name+" ") || l == "  edgegw "+name {
				own = append(own, l)
			}
		}
		if len(own) == 0 {
			t.Errorf("usage has no line for edgegw %s:\n%s", name, usage)
			continue
		}
		for _, sub := range c.subs {
			word := regexp.MustCompile(`[\s\[|]` + regexp.QuoteMeta(sub) + `([\s\]|]|$)`)
			if !slices.ContainsFunc(own, word.MatchString) {
				t.Errorf("usage lines of edgegw %s do not name its subcommand %s:\n%s", name, sub, strings.Join(own, "\n"))
			}
		}
	}
}
