package gateway

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/config"
	"edgegw/gateway/admin"
	"edgegw/gateway/auth"
	"edgegw/internal/counter"
)

// Configuration reload (SIGHUP, `edgegw reload`, POST /api/v1/reload): the
// file is read and checked as at start-up, compared with the running
// configuration section by section (config.Config.Changed), and each changed
// section is handed to the runtime part that owns it:
//
//   - auth, and the listeners' allow_anonymous and cert_username: the auth
//     hook's policy (auth.Hook.SetPolicy); connected clients are judged by it
//     at their next PUBLISH or SUBSCRIBE, their subscriptions the rules no
//     longer allow are removed now, and a client whose user was removed (or
//     an anonymous one where anonymous clients are no longer allowed) is
//     disconnected (auth.Hook.Recheck);
//   - sessions (profiles, limits): session.Engine.SetOptions, for the next
//     CONNECT, message or SUBSCRIBE; sweep_interval and ram_budget need a restart;
//   - mqtt: max_topic_length, max_topic_levels, max_keepalive and
//     connection_rate (limitsHook.setLive); the other keys need a restart;
//   - log.level (the process logger's level variable); log.format needs a restart;
//   - bridges: bridges.apply (added, removed, changed: reconnect, outbox kept);
//   - meters: meters.apply (only the ports whose settings, meters or meter
//     types changed reopen);
//   - data_dir, store, site_id, memory, admin, the listeners' other keys:
//     reported as needing a restart; their running values stay.
//
// TLS listener files are re-read on every reload, as before this existed.
// An invalid file changes nothing. Reloads are serialized: a second one waits
// for the first, then reads the file again.

// reloader is the gateway's reload state.
type reloader struct {
	mu       sync.Mutex // one reload at a time
	file     string     // the configuration file; "" = the built-in default
	level    *slog.LevelVar
	reloads  atomic.Int64
	failures atomic.Int64
	setLevel bool       // applyConfig changed log.level: set newLevel once the reload is logged
	newLevel slog.Level // guarded by mu
}

// register names the reload counters for $SYS, the admin API and /metrics.
func (r *reloader) register(set *counter.Set) {
	set.Add("reloads", "config/reloads", "Configuration reloads (SIGHUP, edgegw reload) that read a valid file.", &r.reloads)
	set.Add("reload_failures", "config/reload_failures", "Configuration reloads refused: the file was invalid or could not be read (nothing changed).", &r.failures)
}

// SetConfigFile names the file ReloadConfig reads, and the level variable of
// the process logger that log.level sets (nil: log.level needs a restart).
// Call before Start.
func (g *Gateway) SetConfigFile(file string, level *slog.LevelVar) {
	if abs, err := filepath.Abs(file); err == nil && file != "" {
		file = abs // the report names the file whatever the caller's directory
	}
	g.reload.file, g.reload.level = file, level
}

// ReloadConfig reads the configuration file again and applies what changed
// (see above). An invalid or unreadable file returns an *admin.ReloadError
// whose lines name file, line and key, and changes nothing.
func (g *Gateway) ReloadConfig() (admin.ReloadReport, error) {
	r := &g.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := admin.ReloadReport{File: r.file, Applied: []string{}, NeedsRestart: []string{}}
	_ = g.ReloadTLS() // logged per listener
	if r.file == "" {
		r.failures.Add(1)
		err := &admin.ReloadError{Lines: []string{"edgegw runs on the built-in default configuration (no -c FILE): there is no file to reload; TLS files were re-read"}}
		g.log.Error("configuration not reloaded", slog.String("reason", err.Lines[0]))
		return rep, err
	}
	next, err := LoadConfig(r.file)
	if fi, serr := os.Stat(r.file); serr == nil && fi.Size() == 0 && err == nil {
		// Valid (every default), but far more likely a file being written or
		// emptied by mistake: reloading it would drop every user and bridge.
		err = fmt.Errorf("%s: the file is empty; not reloaded (an empty configuration needs a restart)", r.file)
	}
	if err == nil {
		err = checkTLSFiles(r.file, next)
	}
	if err != nil {
		r.failures.Add(1)
		re := &admin.ReloadError{Lines: strings.Split(err.Error(), "\n")}
		g.log.Error("configuration not reloaded: the file is invalid; the running configuration stays",
			slog.String("file", r.file), slog.Int("errors", len(re.Lines)))
		for _, l := range re.Lines {
			g.log.Error("config error", slog.String("error", l))
		}
		return rep, re
	}
	next.Version = g.cfg.Version
	run, err := g.applyConfig(next, &rep)
	if err != nil { // nothing was applied
		r.failures.Add(1)
		g.log.Error("configuration not reloaded; the running configuration stays", slog.Any("error", err))
		return rep, &admin.ReloadError{Lines: []string{err.Error()}}
	}
	g.cfg = run
	r.reloads.Add(1)
	if len(rep.Applied) == 0 && len(rep.NeedsRestart) == 0 && len(rep.Failed) == 0 {
		g.log.Info("configuration reloaded: nothing changed", slog.String("file", r.file))
	} else {
		g.log.Info("configuration reloaded", slog.String("file", r.file), slog.Int("applied", len(rep.Applied)),
			slog.Int("needs_restart", len(rep.NeedsRestart)), slog.Int("failed", len(rep.Failed)))
	}
	if r.setLevel { // last: this reload's own lines were logged at the old level
		r.level.Set(r.newLevel)
		r.setLevel = false
	}
	return rep, nil
}

// applyConfig applies next over the running configuration and returns the
// configuration that now runs: next's values for what was applied, the
// running ones for what needs a restart. An error (the password file no
// longer loads) comes before anything was applied.
func (g *Gateway) applyConfig(next Config, rep *admin.ReloadReport) (Config, error) {
	cur := g.cfg
	run := cur
	restart := func(key, why string) {
		rep.NeedsRestart = append(rep.NeedsRestart, key)
		g.log.Warn("configuration changed; needs a restart to apply", slog.String("key", key), slog.String("why", why))
	}
	applied := func(section, line string) {
		rep.Applied = append(rep.Applied, line)
		g.log.Info("configuration applied", slog.String("section", section), slog.String("change", line))
	}
	failed := func(section string, err error) {
		for _, l := range strings.Split(err.Error(), "\n") {
			rep.Failed = append(rep.Failed, l)
			g.log.Error("configuration change not applied; that part runs as before", slog.String("section", section),
				slog.String("error", l))
		}
	}
	changed := next.Changed(cur)
	setLevel := false
	// The auth policy is built first: it reads the password file, and a file
	// that no longer loads must change nothing.
	listeners, listenerChanges := listenerAuth(cur.Listeners, next.Listeners)
	authChanged := slices.Contains(changed, "auth") || slices.Contains(changed, "sessions") || len(listenerChanges) > 0
	var policy auth.Policy
	passwordFileChanged := false
	if !authChanged && cur.Auth.PasswordFile != "" {
		// The password file is read on every reload, as mosquitto does, also
		// when the configuration file did not change.
		users := g.auth.Policy().Users
		fileChanged, err := users.Refresh()
		if err != nil {
			return cur, err
		}
		if fileChanged {
			authChanged, passwordFileChanged = true, true
		}
	}
	if authChanged {
		pre := cur
		pre.Auth, pre.Listeners, pre.Sessions = next.Auth, listeners, next.Sessions
		sameUsers := reflect.DeepEqual(cur.Auth.Users, next.Auth.Users) && cur.Auth.PasswordFile == next.Auth.PasswordFile
		var users *auth.Users
		if sameUsers {
			users = g.auth.Policy().Users
			if _, err := users.Refresh(); err != nil { // nil when there are no users: a no-op
				return cur, err
			}
		}
		o, err := authOptions(pre, g.log.With(slog.String("component", "auth")), users)
		if err != nil {
			return cur, err
		}
		policy = o.Policy()
	}
	for _, sec := range changed {
		switch sec {
		case "data_dir":
			restart("data_dir", "the store and the lock live there")
		case "store":
			restart("store", "the store file is open")
		case "site_id":
			restart("site_id", "bridges and the status page were built with it")
		case "memory":
			restart("memory", "the Go runtime was tuned at start-up")
		case "admin":
			restart("admin", "the admin socket and listener are open")
		case "log":
			if next.Log.Level != cur.Log.Level {
				if g.reload.level == nil {
					restart("log.level", "the logger was built at start-up")
				} else {
					setLevel = true // last, so that this reload's lines are logged at the old level
					run.Log.Level = next.Log.Level
					applied("log", fmt.Sprintf("log.level: %s -> %s", cur.Log.Level, next.Log.Level))
				}
			}
			if next.Log.Format != cur.Log.Format {
				restart("log.format", "the logger was built at start-up")
			}
		case "listeners":
			if len(listenerChanges) > 0 {
				run.Listeners = listeners
				applied("listeners", strings.Join(listenerChanges, "; "))
			}
			if !reflect.DeepEqual(run.Listeners, next.Listeners) {
				restart("listeners", "addresses, types and TLS settings are bound at start-up (TLS files are re-read)")
			}
		case "mqtt":
			m := cur.MQTT
			m.MaxTopicLength, m.MaxTopicLevels = next.MQTT.MaxTopicLength, next.MQTT.MaxTopicLevels
			m.MaxKeepalive, m.ConnectionRate = next.MQTT.MaxKeepalive, next.MQTT.ConnectionRate
			if !reflect.DeepEqual(m, cur.MQTT) {
				g.limitsHook.setLive(m, g.clock.Now)
				run.MQTT = m
				applied("mqtt", "mqtt limits (max_topic_length, max_topic_levels, max_keepalive, connection_rate) apply to new packets and connections")
			}
			for _, k := range fixedMQTTKeys(m, next.MQTT) {
				restart("mqtt."+k, "mochi's capabilities and the listeners hold it")
			}
		case "sessions":
			s := next.SessionOptions()
			s.SweepInterval, s.RAMBudget = cur.Sessions.SweepInterval, cur.Sessions.RAMBudget
			if !reflect.DeepEqual(s, cur.Sessions) {
				if err := g.engine.SetOptions(s); err != nil {
					failed("sessions", err)
				} else {
					run.Sessions = s
					applied("sessions", "sessions: profiles and limits apply to new connections and the next messages")
					// The meters' command queues take their limits from these
					// keys too (a bridge's outbox has its own, outbox.max_messages).
					if h := g.meters.Load(); h != nil && (s.MaxQueued != cur.Sessions.MaxQueued || s.Overflow != cur.Sessions.Overflow) {
						h.SetCommandLimits(s.MaxQueued, s.Overflow)
						applied("meters", fmt.Sprintf("meter command queues: at most %d commands each, then %s (sessions.max_queued, queue_overflow)", s.MaxQueued, s.Overflow))
					}
				}
			}
			if next.Sessions.SweepInterval != cur.Sessions.SweepInterval {
				restart("sessions.sweep_interval", "the sweeper runs at the start-up interval")
			}
			if next.Sessions.RAMBudget != cur.Sessions.RAMBudget {
				restart("sessions.ram_budget", "the RAM budget is fixed at start-up")
			}
		case "auth":
			run.Auth = next.Auth
		}
	}
	if authChanged {
		// The ACL's profile names are the sessions' profiles: when the sessions
		// section failed to apply, the policy still matches the file's.
		g.auth.SetPolicy(policy)
		n := 0
		for _, cl := range g.auth.Recheck(slices.Collect(maps.Values(g.srv.Clients.GetAll()))) {
			_ = g.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
			n++
		}
		// Only the profiles changed: the policy follows them, nothing to report
		// beyond the sessions line.
		if authReported := slices.Contains(changed, "auth") || len(listenerChanges) > 0 || passwordFileChanged; authReported || n > 0 {
			line := "auth: users, password file, ACL and listener policies apply to new connections and to connected clients' next PUBLISH and SUBSCRIBE"
			if n > 0 {
				line += fmt.Sprintf("; %d client(s) no longer admitted were disconnected", n)
			}
			applied("auth", line)
		}
	}
	if slices.Contains(changed, "bridges") {
		b := run
		b.Bridges = next.Bridges
		lines, err := g.bridges.apply(b)
		for _, l := range lines {
			applied("bridges", l)
		}
		if err != nil {
			failed("bridges", err)
		}
		run.Bridges = g.bridges.configs(next.Bridges) // a bridge that failed keeps its running settings
	}
	if slices.Contains(changed, "meters") {
		m := run
		m.Meters = next.Meters
		lines, err := g.applyMeters(m)
		for _, l := range lines {
			applied("meters", l)
		}
		if err != nil {
			failed("meters", err)
		}
		if err == nil {
			run.Meters = next.Meters // also without a hub: the section holds no port
		} else {
			run.Meters = cur.Meters
		}
		if h := g.meters.Load(); h != nil {
			run.Meters = h.Config() // a port that failed is compared again, and retried, at the next reload
		}
	}
	if setLevel {
		g.reload.newLevel = next.Log.SlogLevel()
		g.reload.setLevel = true
	}
	return run, nil
}

// listenerAuth returns cur with the allow_anonymous and cert_username of the
// listeners of next that have the same name, and a description of each change.
func listenerAuth(cur, next []ListenerConfig) ([]ListenerConfig, []string) {
	out := slices.Clone(cur)
	var what []string
	for i, l := range out {
		for _, n := range next {
			if n.Name != l.Name {
				continue
			}
			if l.AnonymousAllowed() != n.AnonymousAllowed() {
				what = append(what, fmt.Sprintf("listener %s: allow_anonymous %t", l.Name, n.AnonymousAllowed()))
			}
			if l.CertUsername != n.CertUsername {
				what = append(what, fmt.Sprintf("listener %s: cert_username %q", l.Name, n.CertUsername))
			}
			out[i].AllowAnonymous, out[i].CertUsername = n.AllowAnonymous, n.CertUsername
		}
	}
	return out, what
}

// fixedMQTTKeys names the mqtt keys that differ between a and b among those
// only a restart applies.
func fixedMQTTKeys(a, b config.MQTT) []string {
	var keys []string
	if a.MaxPacketSize != b.MaxPacketSize {
		keys = append(keys, "max_packet_size")
	}
	if a.ConnectTimeout != b.ConnectTimeout {
		keys = append(keys, "connect_timeout")
	}
	if a.SysInterval != b.SysInterval {
		keys = append(keys, "sys_interval")
	}
	if a.MaxInflight != b.MaxInflight {
		keys = append(keys, "max_inflight")
	}
	return keys
}
