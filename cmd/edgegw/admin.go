package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"edgegw/bridge"
	"edgegw/gateway"
	"edgegw/gateway/admin"
)

// The operations commands (status, sessions, meters, bridge) are clients of the
// admin API on the gateway's Unix socket (gateway/admin).

// packagedConfig is the configuration the packaged service runs with; the
// commands read it when no -c or --socket is given and it exists.
const packagedConfig = "/etc/edgegw/edgegw.yaml"

// adminFlags are the flags every operations command takes.
type adminFlags struct {
	config, socket, tokenFile string
	json                      bool
	// lenient: a configuration with errors still names the socket (reload: the
	// gateway reads the file and reports its errors itself).
	lenient bool
}

func newAdminFlags(name string, usageLine string) (*flag.FlagSet, *adminFlags, func(io.Writer)) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := &adminFlags{}
	fs.StringVar(&f.config, "config", "", "configuration `FILE` naming the admin socket (default: "+packagedConfig+" if it exists, else the built-in default)")
	fs.StringVar(&f.config, "c", "", shorthandOf("config"))
	fs.StringVar(&f.socket, "socket", "", "admin socket `PATH` (overrides the configuration)")
	fs.StringVar(&f.tokenFile, "token-file", "", "`FILE` holding the admin token, for kick, purge, meters scan and read when not the gateway's user or root")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON instead of text")
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "usage: %s\nflags (anywhere on the line):\n", usageLine)
		printFlags(w, fs)
	}
	return fs, f, usage
}

// parseAnywhere parses flags placed before, between or after the positional
// arguments, and returns the positional ones.
func parseAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// client resolves the socket: --socket, else -c FILE's admin.socket, else the
// packaged configuration's, else the built-in default's (./data/admin.sock).
// A token comes from --token-file, else from the configuration's token_file.
// from says where the socket path came from, for the "not running" hint.
//
// A configuration whose only problems are files this user may not read (the
// 0600 password file, the 0640 token file, for a member of the socket's
// group) still names the socket: then only data_dir and admin.socket are read
// from it, and there is no token (reading needs none on the socket).
func (f *adminFlags) client() (c *admin.Client, from string, err error) {
	socket, token := f.socket, ""
	from = "--socket"
	if socket == "" || f.tokenFile == "" {
		cfg := gateway.DefaultConfig()
		path := f.config
		if path == "" && f.socket == "" {
			if _, err := os.Stat(packagedConfig); err == nil {
				path = packagedConfig
			}
		}
		if path != "" {
			var err error
			if cfg, err = gateway.LoadConfig(path); err != nil {
				if !onlyUnreadable(err) && !f.lenient {
					return nil, "", err
				}
				var serr error
				if cfg, serr = socketOnly(path); serr != nil {
					if !f.lenient || f.socket == "" {
						return nil, "", err // the file's own errors (reload: the gateway was not asked)
					}
					cfg = gateway.DefaultConfig() // reload --socket: the gateway reports the errors
				}
			}
		}
		if socket == "" {
			if socket = cfg.AdminSocketPath(); socket == "" {
				return nil, "", fmt.Errorf("admin.socket is turned off in %s; give --socket PATH", path)
			}
			from = "the built-in default (no -c FILE given, no " + packagedConfig + ")"
			if path != "" {
				from = "data_dir and admin.socket of " + path
			}
		}
		token = cfg.Admin.Token
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return admin.NewClient(socket, token), from, nil
}

// onlyUnreadable reports whether every problem in a configuration error is a
// file that could not be read for lack of permission.
func onlyUnreadable(err error) bool {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var ce *gateway.ConfigError
		if !errors.As(e, &ce) || !strings.Contains(ce.Msg, unix.EACCES.Error()) {
			return false
		}
	}
	return len(errs) > 0
}

// socketOnly reads data_dir and admin.socket from the configuration file at
// path over the defaults, and nothing else.
func socketOnly(path string) (gateway.Config, error) {
	cfg := gateway.DefaultConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("load config: %w", err)
	}
	var part struct {
		DataDir *string `yaml:"data_dir"`
		Admin   struct {
			Socket *string `yaml:"socket"`
		} `yaml:"admin"`
	}
	if err := yaml.Unmarshal(data, &part); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	if part.DataDir != nil {
		cfg.DataDir = *part.DataDir
	}
	if part.Admin.Socket != nil {
		cfg.Admin.Socket = *part.Admin.Socket
	}
	return cfg, nil
}

// adminCmd runs one operations command: parse, call, print.
func adminCmd(name, usageLine string, args []string, stdout, stderr io.Writer,
	run func(c *admin.Client, pos []string, f *adminFlags, out *printer) error, nargs ...int) int {
	return adminCmdWith(nil, name, usageLine, args, stdout, stderr, run, nargs...)
}

// adminCmdWith is adminCmd with set, if not nil, adjusting the flags after parsing.
func adminCmdWith(set func(*adminFlags), name, usageLine string, args []string, stdout, stderr io.Writer,
	run func(c *admin.Client, pos []string, f *adminFlags, out *printer) error, nargs ...int) int {
	fs, f, usage := newAdminFlags("edgegw "+name, usageLine)
	if set != nil {
		set(f)
	}
	pos, code, done := parseFlags(fs, name, args, stdout, stderr, usage, func(a []string) ([]string, error) { return parseAnywhere(fs, a) })
	if done {
		return code
	}
	if len(nargs) == 2 && (len(pos) < nargs[0] || len(pos) > nargs[1]) {
		fmt.Fprintf(stderr, "edgegw %s: wrong arguments\nusage: %s\n", name, usageLine)
		return exitUsage
	}
	c, from, err := f.client()
	if err != nil {
		return configError(stderr, err)
	}
	out := newPrinter(stdout)
	if err := run(c, pos, f, out); err != nil {
		var ue usageErr
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "edgegw %s: %s\nusage: %s\n", name, ue, usageLine)
			return exitUsage
		}
		fmt.Fprintf(stderr, "edgegw: %v\n", err)
		if ae := (*admin.APIError)(nil); errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity {
			return exitUsage // an invalid configuration, as config check
		}
		if errors.Is(err, admin.ErrNotRunning) {
			fmt.Fprintf(stderr, "edgegw: the socket path came from %s;\n"+
				"  point elsewhere with -c FILE (its data_dir and admin.socket) or --socket PATH\n", from)
		}
		return exitRuntime
	}
	return out.flush()
}

type usageErr string

func (e usageErr) Error() string { return string(e) }

// getJSON fetches path; with --json it prints the answer as it came.
func getJSON(c *admin.Client, path string, f *adminFlags, out *printer, v any) (printed bool, err error) {
	if f.json {
		var raw json.RawMessage
		if err := c.Get(path, &raw); err != nil {
			return false, err
		}
		out.raw(raw)
		return true, nil
	}
	return false, c.Get(path, v)
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	return adminCmd("status", "edgegw status [-c FILE | --socket PATH] [--json]", args, stdout, stderr,
		func(c *admin.Client, _ []string, f *adminFlags, out *printer) error {
			var st admin.Status
			if done, err := getJSON(c, "/api/v1/status", f, out, &st); done || err != nil {
				return err
			}
			printStatus(out, st)
			return nil
		}, 0, 0)
}

func metersCmd(args []string, stdout, stderr io.Writer) int {
	return adminCmd("meters", metersUsageLine, args, stdout, stderr,
		func(c *admin.Client, _ []string, f *adminFlags, out *printer) error {
			var st admin.Status
			if f.json {
				var raw struct {
					Meters json.RawMessage `json:"meters"`
					Ports  json.RawMessage `json:"ports"`
				}
				if err := c.Get("/api/v1/status", &raw); err != nil {
					return err
				}
				b, _ := json.Marshal(raw)
				out.raw(b)
				return nil
			}
			if err := c.Get("/api/v1/status", &st); err != nil {
				return err
			}
			printMeters(out, st, true)
			return nil
		}, 0, 0)
}

func bridgeCmd(args []string, stdout, stderr io.Writer) int {
	return adminCmd("bridge", "edgegw bridge [-c FILE | --socket PATH] [--json]", args, stdout, stderr,
		func(c *admin.Client, _ []string, f *adminFlags, out *printer) error {
			var bs []bridge.Status
			if done, err := getJSON(c, "/api/v1/bridges", f, out, &bs); done || err != nil {
				return err
			}
			if len(bs) == 0 {
				out.line("no bridge configured")
				return nil
			}
			for i, b := range bs {
				if i > 0 {
					out.line("")
				}
				printBridgeDetail(out, b)
			}
			return nil
		}, 0, 0)
}

func sessionsCmd(args []string, stdout, stderr io.Writer) int {
	const usageLine = "edgegw sessions [list | show ID | kick ID | purge ID] [-c FILE | --socket PATH] [--token-file FILE] [--json]"
	return adminCmd("sessions", usageLine, args, stdout, stderr,
		func(c *admin.Client, pos []string, f *adminFlags, out *printer) error {
			sub := "list"
			if len(pos) > 0 {
				sub = pos[0]
			}
			switch {
			case sub == "list" && len(pos) <= 1:
				var list []admin.Session
				if done, err := getJSON(c, "/api/v1/sessions", f, out, &list); done || err != nil {
					return err
				}
				printSessions(out, list)
			case sub == "show" && len(pos) == 2:
				var s admin.Session
				if done, err := getJSON(c, admin.SessionPath(pos[1], ""), f, out, &s); done || err != nil {
					return err
				}
				printSession(out, s)
			case (sub == "kick" || sub == "purge") && len(pos) == 2:
				var r admin.Result
				if err := c.Post(admin.SessionPath(pos[1], "/"+sub), &r); err != nil {
					return err
				}
				if f.json {
					b, _ := json.Marshal(r)
					out.raw(b)
					return nil
				}
				switch sub {
				case "kick":
					out.line(fmt.Sprintf("kicked %s: disconnected; the session stays as its expiry says", r.ID))
				default:
					out.line(fmt.Sprintf("purged %s: session, subscriptions and queued messages deleted", r.ID))
				}
			default:
				return usageErr(fmt.Sprintf("unknown or incomplete subcommand %q%s", strings.Join(pos, " "),
					didYouMean(pos[0], sessionsSubs)))
			}
			return nil
		}, 0, 2)
}

// reloadCmd asks the running gateway to reload its configuration file and
// prints what changed, what needs a restart and what failed.
func reloadCmd(args []string, stdout, stderr io.Writer) int {
	return adminCmdWith(func(f *adminFlags) { f.lenient = true }, "reload", "edgegw reload [-c FILE | --socket PATH] [--token-file FILE] [--json]", args, stdout, stderr,
		func(c *admin.Client, _ []string, f *adminFlags, out *printer) error {
			var rep admin.ReloadReport
			if f.json {
				var raw json.RawMessage
				if err := c.Post("/api/v1/reload", &raw); err != nil {
					return err
				}
				out.raw(raw)
				return nil
			}
			if err := c.Post("/api/v1/reload", &rep); err != nil {
				return err
			}
			printReload(out, rep)
			return nil
		}, 0, 0)
}

// printReload prints a reload's report.
func printReload(out *printer, rep admin.ReloadReport) {
	if len(rep.Applied)+len(rep.NeedsRestart)+len(rep.Failed) == 0 {
		out.line(fmt.Sprintf("reloaded %s: nothing changed", rep.File))
		return
	}
	out.line(fmt.Sprintf("reloaded %s", rep.File))
	list := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		out.line(title)
		for _, l := range lines {
			out.line("  " + l)
		}
	}
	list("applied:", rep.Applied)
	list("needs restart (changed in the file; the running value stays until edgegw restarts):", rep.NeedsRestart)
	list("failed (these parts run as before):", rep.Failed)
}

// ---- text output ----

// printer buffers lines; tables are aligned with tabwriter, colour is used only
// when stdout is a terminal and NO_COLOR is unset.
type printer struct {
	w     io.Writer
	tw    *tabwriter.Writer
	color bool
	label int // width of a row's first cell; 0: as tabwriter aligns it
	err   error
}

func newPrinter(w io.Writer) *printer {
	p := &printer{w: w, tw: tabwriter.NewWriter(w, 8, 0, 2, ' ', 0)}
	p.color = os.Getenv("NO_COLOR") == "" && isTerminal(w)
	return p
}

const (
	green = "\x1b[32m"
	red   = "\x1b[31m"
	amber = "\x1b[33m"
	bold  = "\x1b[1m"
	reset = "\x1b[0m"
)

// paint colours s for a terminal. Table cells must not be painted (tabwriter
// would count the escapes as width), except the last cell of a row.
func (p *printer) paint(code, s string) string {
	if !p.color {
		return s
	}
	return code + s + reset
}

func (p *printer) stateColor(s string) string {
	switch s {
	case "ok", "online", "connected", "open":
		return p.paint(green, s)
	case "degraded", "offline", "disconnected", "closed":
		return p.paint(red, s)
	}
	return p.paint(amber, s)
}

func (p *printer) line(s string) {
	p.flushTable()
	if p.err == nil {
		_, p.err = fmt.Fprintln(p.w, s)
	}
}

func (p *printer) row(cells ...string) {
	if p.label > 0 && len(cells) > 0 {
		cells[0] = fmt.Sprintf("%-*s", p.label, cells[0])
	}
	if p.err == nil {
		_, p.err = fmt.Fprintln(p.tw, strings.Join(cells, "\t"))
	}
}

func (p *printer) flushTable() {
	if p.err == nil {
		p.err = p.tw.Flush()
	}
}

func (p *printer) raw(b []byte) {
	p.line(strings.TrimSpace(string(b)))
}

func (p *printer) flush() int {
	p.flushTable()
	if p.err != nil {
		return exitRuntime
	}
	return exitOK
}

func printStatus(p *printer, st admin.Status) {
	// One width for the first column of every section, so that they line up.
	p.label = len("sessions")
	for _, b := range st.Bridges {
		p.label = max(p.label, len("bridge "+b.Bridge))
	}
	for _, m := range st.Meters {
		p.label = max(p.label, len("meter "+m.Meter))
	}
	if len(st.Store.MovedAside) > 0 {
		p.label = max(p.label, len("moved aside"))
	}
	where := "host " + st.Process.Hostname
	if st.SiteID != "" {
		where = "site " + st.SiteID + ", " + where
	}
	p.line(fmt.Sprintf("%s %s, up %s, %s (%s)", p.paint(bold, "edgegw"), st.Version.Version,
		fmtSeconds(st.Uptime.Seconds), p.stateColor(st.Health.Status), where))
	for _, pr := range st.Health.Problems {
		p.line("  " + p.paint(red, "! "+pr))
	}
	p.line("")
	if len(st.Bridges) == 0 {
		p.row("bridge", "none configured")
	}
	for _, b := range st.Bridges {
		state := "connected"
		if !b.Connected {
			state = "disconnected"
		}
		oldest := "-"
		if b.OutboxDepth > 0 {
			oldest = fmtSeconds(int64(b.OutboxOldestAge))
		}
		if b.Connected && b.Fallback {
			state += " (fall-back)"
		}
		p.row("bridge "+b.Bridge, state, "since "+b.Since.Local().Format("15:04:05"),
			fmt.Sprintf("outbox %d (%s)", b.OutboxDepth, fmtBytes(b.OutboxBytes)), "oldest "+oldest, fmt.Sprintf("dropped %d", b.OutboxDropped))
	}
	p.flushTable()
	p.line("")
	printMeters(p, st, false)
	ss := st.Sessions
	p.row("sessions", fmt.Sprintf("%d online, %d offline", ss.Online, ss.Offline),
		fmt.Sprintf("quota %d of %d", ss.Online+ss.Offline, ss.Max), fmt.Sprintf("%d queued", ss.Queued),
		fmt.Sprintf("%d shared groups", len(st.Groups)))
	s := st.Store
	capacity := "no cap"
	if s.MaxBytes > 0 {
		capacity = fmt.Sprintf("%.0f%% of %s", 100*float64(s.UsedBytes)/float64(s.MaxBytes), fmtBytes(s.MaxBytes))
	}
	wpm := "-"
	if s.MessagesWritten > 0 {
		wpm = fmtBytes(s.BytesWrittenPerMessage)
	}
	p.row("store", "in use "+fmtBytes(s.UsedBytes), capacity, "file "+fmtBytes(s.FileBytes),
		fmt.Sprintf("%d free pages", s.FreePages), fmt.Sprintf("%d commits", s.Commits), wpm+" written/message")
	for _, f := range s.MovedAside { // damaged files moved aside: a technician decides
		p.row("moved aside", p.paint(red, f.Path), fmtBytes(f.Bytes), f.Time.Local().Format("2006-01-02 15:04:05"))
	}
	p.row("commits", fmt.Sprintf("p50 %s", fmtDuration(s.CommitP50Seconds)), fmt.Sprintf("p99 %s", fmtDuration(s.CommitP99Seconds)),
		fmt.Sprintf("max %s", fmtDuration(s.CommitMaxSeconds)), fmt.Sprintf("unsynced max %s", fmtDuration(s.UnsyncedMaxSeconds)),
		fmt.Sprintf("%d acks held %s", s.AckWaits, fmtDuration(s.AckWaitSeconds)))
	retained := fmt.Sprintf("%d retained, %s", s.RetainedMessages, fmtBytes(s.RetainedBytes))
	if s.MaxRetainedBytes > 0 {
		retained += " of " + fmtBytes(s.MaxRetainedBytes)
	}
	p.row("retained", retained, fmt.Sprintf("limit %d messages", s.MaxRetained))
	var drops []string
	if s.MessagesDropped != 0 {
		drops = append(drops, fmt.Sprintf("store_messages_dropped %d", s.MessagesDropped))
	}
	for _, c := range st.Counters {
		if c.Value != 0 && c.Name != "wills_published" && c.Name != "sessions_expired" {
			drops = append(drops, fmt.Sprintf("%s %d", c.Name, c.Value))
		}
	}
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	p.row("drops", strings.Join(drops, ", "))
	p.row("clock", clockText(st.Clock))
	p.flushTable()
}

// clockText is the clock row of status: the sync state, the last wall-clock
// jump, and how the down time was counted at start-up.
func clockText(c admin.Clock) string {
	out := c.State
	if c.State != "synced" {
		out += " (readings flagged clock_unsynced)"
	}
	if j := c.LastJump; j != nil {
		out += fmt.Sprintf(", last jump %+.0fs at %s", j.BySeconds, j.At.Local().Format(time.DateTime))
	} else {
		out += ", no jump seen"
	}
	if c.ResumeRule != "" {
		out += fmt.Sprintf(", down time counted %s (%s)", fmtSeconds(int64(c.ResumeDownSeconds)), c.ResumeRule)
	}
	return out
}

// printMeters prints a row per meter; ports adds the ports with their error
// counters.
func printMeters(p *printer, st admin.Status, ports bool) {
	if len(st.Meters) == 0 {
		p.row("meters", "none configured")
	}
	now := st.Time
	for _, m := range st.Meters {
		seen := "never"
		if m.LastSeen != nil {
			seen = fmtSeconds(int64(now.Sub(*m.LastSeen).Seconds())) + " ago"
		}
		reading := readingText(m.Reading)
		if m.Suppressed > 0 { // report by exception: the reading shown is the last published
			reading += fmt.Sprintf("  (%d of %d readings suppressed)", m.Suppressed, m.Readings+m.Suppressed)
		}
		p.row("meter "+m.Meter, m.State, seen, m.Port, reading)
	}
	p.flushTable()
	if !ports {
		return
	}
	p.line("")
	for _, pt := range st.Ports {
		state := "open"
		if !pt.Open {
			state = "closed"
		}
		var errs []string
		for _, k := range slices.Sorted(maps.Keys(pt.Counters)) {
			if k != "frames" && k != "readings" && pt.Counters[k] != 0 {
				errs = append(errs, fmt.Sprintf("%s %d", k, pt.Counters[k]))
			}
		}
		if len(errs) == 0 {
			errs = []string{"no errors"}
		}
		where := pt.Device
		if pt.Address != "" {
			where = "tcp " + pt.Address
		}
		p.row("port "+pt.Port, state, where, pt.Protocol, fmt.Sprintf("frames %d", pt.Counters["frames"]), strings.Join(errs, ", "))
		if pt.LastError != "" && !pt.Open {
			p.row("", "", "last error: "+pt.LastError)
		}
	}
	p.flushTable()
}

// readingText formats a reading's JSON: "energy=6553.8 kWh power=-10 W".
func readingText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "no reading yet"
	}
	var r struct {
		Values map[string]struct {
			V    *float64 `json:"v"`
			Unit string   `json:"unit"`
		} `json:"values"`
		Quality []string `json:"quality"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return string(raw)
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Values)) {
		v := r.Values[k]
		s := k + "=invalid"
		if v.V != nil {
			s = fmt.Sprintf("%s=%g", k, *v.V)
		}
		if v.Unit != "" {
			s += " " + v.Unit
		}
		parts = append(parts, s)
	}
	if len(r.Quality) > 0 && !(len(r.Quality) == 1 && r.Quality[0] == "ok") {
		parts = append(parts, "["+strings.Join(r.Quality, ",")+"]")
	}
	return strings.Join(parts, "  ")
}

// upstreamRole says whether the bridge uses its primary upstream or a fall-back.
func upstreamRole(b bridge.Status) string {
	if b.Fallback {
		return "fall-back"
	}
	return "primary"
}

func printBridgeDetail(p *printer, b bridge.Status) {
	state := "connected"
	if !b.Connected {
		state = "disconnected"
	}
	p.line(fmt.Sprintf("bridge %s: %s since %s", b.Bridge, p.stateColor(state), b.Since.Local().Format(time.DateTime)))
	oldest := "-"
	if b.OutboxDepth > 0 {
		oldest = fmtSeconds(int64(b.OutboxOldestAge))
	}
	p.row("  address", b.Address+" ("+upstreamRole(b)+")")
	p.row("  outbox", fmt.Sprintf("%d messages, %s", b.OutboxDepth, fmtBytes(b.OutboxBytes)))
	p.row("  oldest", oldest)
	p.row("  dropped", fmt.Sprintf("%d", b.OutboxDropped))
	p.row("  sent", fmt.Sprintf("%d", b.Sent))
	p.row("  received", fmt.Sprintf("%d", b.Received))
	if b.LastError != "" {
		p.row("  last error", b.LastError)
	}
	p.flushTable()
}

func printSessions(p *printer, list []admin.Session) {
	if len(list) == 0 {
		p.line("no sessions")
		return
	}
	p.row("ID", "STATE", "PROFILE", "EXPIRY", "EXPIRES IN", "QUEUED", "SUBSCRIPTIONS")
	for _, s := range list {
		state, left := "online", "-"
		if !s.Online {
			state = "offline"
			left = fmtSeconds(*s.ExpiresIn)
		}
		profile := s.Profile
		if profile == "" {
			profile = "-"
		}
		p.row(s.ID, state, profile, fmtSeconds(s.ExpirySeconds), left, fmt.Sprint(s.Queued), fmt.Sprint(len(s.Subscriptions)))
	}
	p.flushTable()
}

func printSession(p *printer, s admin.Session) {
	state := "online"
	if !s.Online {
		state = "offline"
	}
	p.row("id", s.ID)
	p.row("state", state)
	if s.Online {
		p.row("remote", s.Remote+" on listener "+s.Listener)
		if s.Username != "" {
			p.row("username", s.Username)
		}
	} else {
		p.row("disconnected", s.Disconnected.Local().Format(time.DateTime))
		p.row("expires in", fmtSeconds(*s.ExpiresIn))
	}
	p.row("profile", s.Profile)
	p.row("protocol", map[int]string{4: "MQTT 3.1.1", 5: "MQTT 5"}[s.Version])
	p.row("expiry", fmtSeconds(s.ExpirySeconds))
	p.row("queued", fmt.Sprintf("%d (%d in flight)", s.Queued, s.InFlight))
	if s.WillAt != nil {
		p.row("delayed will", "due "+s.WillAt.Local().Format(time.DateTime))
	}
	if len(s.Subscriptions) == 0 {
		p.row("subscriptions", "none")
	}
	for i, f := range s.Subscriptions {
		label := ""
		if i == 0 {
			label = "subscriptions"
		}
		p.row(label, f)
	}
	p.flushTable()
}

// fmtSeconds formats a duration in seconds for people: 45s, 12m, 3h05m, 2d4h.
func fmtSeconds(s int64) string {
	switch {
	case s < 0:
		return "-"
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}

func fmtBytes(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
}

// fmtDuration prints a duration given in seconds, to 0.1 ms.
func fmtDuration(sec float64) string {
	return time.Duration(sec * float64(time.Second)).Round(time.Millisecond / 10).String()
}
