package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"edgegw/gateway"
)

// `edgegw config import-mosquitto mosquitto.conf` writes an edgegw.yaml for
// what a mosquitto configuration sets that edgegw has: listeners (TCP,
// WebSocket, TLS), queue and packet limits, the password file (mosquitto's
// hashes are accepted as they are), the ACL file (translated into auth.acl
// rules) and bridges (addresses, credentials, TLS, topic lines with direction,
// QoS and prefixes). Every directive it does not carry over is listed, with its
// file and line, as a comment at the top of the output and on standard error.
// The output is checked as `edgegw config check` would (files it names must
// exist where it runs); problems are reported on standard error.

// mqListener is one `listener` (or the default `port`) block.
type mqListener struct {
	port, addr         string
	websocket          bool
	cert, key, ca      string
	requireCert, ident bool
	minTLS             string
	anon               *bool
}

// mqBridge is one `connection` block.
type mqBridge struct {
	name                     string
	addresses                []string
	clientID, user, password string
	version                  string
	keepalive                string
	ca, cert, key            string
	insecure                 bool
	topics                   []mqTopic
}

type mqTopic struct {
	pattern, dir, local, remote string
	qos                         int
}

// mqImport is what was read.
type mqImport struct {
	file        string
	listeners   []*mqListener
	bridges     []*mqBridge
	anon        *bool  // global allow_anonymous
	perListener bool   // per_listener_settings true
	top         []kv   // top-level and section keys: "sessions.max_queued" -> YAML value
	passwd, acl string // files
	skipped     []string
}

type kv struct{ key, val string }

func importMosquittoCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		return cmdUsageError(stderr, "config", "config import-mosquitto needs exactly one FILE (mosquitto.conf)")
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "edgegw: %v\n", err)
		return exitRuntime
	}
	defer f.Close()
	im, err := readMosquitto(args[0], f)
	if err != nil {
		fmt.Fprintf(stderr, "edgegw: %v\n", err)
		return exitRuntime
	}
	var acl []aclRule
	if im.acl != "" {
		if acl, err = readMosquittoACL(im.acl, im); err != nil {
			im.skipped = append(im.skipped, fmt.Sprintf("acl_file %s: %v: write auth.acl rules by hand (docs/security.md)", im.acl, err))
		}
	}
	out := im.yaml(acl)
	if _, err := io.WriteString(stdout, out); err != nil {
		fmt.Fprintf(stderr, "edgegw: %v\n", err)
		return exitRuntime
	}
	for _, s := range im.skipped {
		fmt.Fprintf(stderr, "not carried over: %s\n", s)
	}
	if _, err := gateway.ParseConfig("imported configuration", []byte(out)); err != nil {
		fmt.Fprintf(stderr, "edgegw: the imported configuration does not pass config check yet (fix it, or run the import where its files are):\n%v\n", err)
	}
	return exitOK
}

// listenerFields and bridgeFields are the directives that set one string of
// the current listener or connection block.
var (
	listenerFields = map[string]func(*mqListener) *string{
		"bind_address": func(l *mqListener) *string { return &l.addr },
		"certfile":     func(l *mqListener) *string { return &l.cert },
		"keyfile":      func(l *mqListener) *string { return &l.key },
		"cafile":       func(l *mqListener) *string { return &l.ca },
	}
	bridgeFields = map[string]func(*mqBridge) *string{
		"remote_clientid": func(b *mqBridge) *string { return &b.clientID },
		"clientid":        func(b *mqBridge) *string { return &b.clientID },
		"remote_username": func(b *mqBridge) *string { return &b.user },
		"username":        func(b *mqBridge) *string { return &b.user },
		"remote_password": func(b *mqBridge) *string { return &b.password },
		"password":        func(b *mqBridge) *string { return &b.password },
		"bridge_cafile":   func(b *mqBridge) *string { return &b.ca },
		"bridge_certfile": func(b *mqBridge) *string { return &b.cert },
		"bridge_keyfile":  func(b *mqBridge) *string { return &b.key },
	}
)

// directives calls f with the fields of each directive line of r (name in
// messages), and a skip function that records the line as not carried over
// with the reason.
func (im *mqImport) directives(name string, r io.Reader, f func(fields []string, skip func(why string))) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f(strings.Fields(line), func(why string) {
			im.skipped = append(im.skipped, fmt.Sprintf("%s:%d: %s: %s", filepath.Base(name), n, line, why))
		})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

// readMosquitto reads a mosquitto.conf, and the files of its include_dir
// directives where they stand, as mosquitto does: every file ending in .conf,
// in mosquitto's order (mosquittoFileOrder), each starting outside any
// listener or connection block; include_dir only in the main file.
func readMosquitto(name string, r io.Reader) (*mqImport, error) {
	im := &mqImport{file: name}
	var l *mqListener
	var b *mqBridge
	included := false // reading a file of an include_dir
	var directive func(f []string, skip func(string))
	directive = func(f []string, skip func(string)) {
		key, vals := f[0], f[1:]
		val := strings.Join(vals, " ")
		set := func(k, v string) { // a directive given again wins, as in mosquitto
			if i := slices.IndexFunc(im.top, func(e kv) bool { return e.key == k }); i >= 0 {
				im.top[i].val = v
				return
			}
			im.top = append(im.top, kv{k, v})
		}
		count := func(k string, min int64) {
			v, err := strconv.ParseInt(val, 10, 64)
			switch {
			case err != nil:
				skip("not a number")
			case v < min:
				skip(fmt.Sprintf("%d (no limit in mosquitto) has no edgegw equivalent; edgegw's default applies", v))
			default:
				set(k, strconv.FormatInt(v, 10))
			}
		}
		boolean := func() (bool, bool) {
			switch val {
			case "true":
				return true, true
			case "false":
				return false, true
			}
			skip("want true or false")
			return false, false
		}
		inListener := func() bool {
			if l == nil {
				skip("outside a listener block")
				return false
			}
			return true
		}
		inBridge := func() bool {
			if b == nil {
				skip("outside a connection block")
				return false
			}
			return true
		}
		if field, ok := listenerFields[key]; ok {
			if inListener() {
				*field(l) = val
			}
			return
		}
		if field, ok := bridgeFields[key]; ok {
			if inBridge() {
				*field(b) = val
			}
			return
		}
		switch key {
		case "listener", "port":
			b = nil
			if len(vals) == 0 {
				skip("no port")
				return
			}
			if key == "listener" && len(vals) > 1 && strings.HasPrefix(vals[1], "/") {
				skip("Unix socket listeners: edgegw listens on TCP only")
				l = nil
				return
			}
			l = &mqListener{port: vals[0]}
			if key == "listener" && len(vals) > 1 {
				l.addr = vals[1]
			}
			im.listeners = append(im.listeners, l)
		case "protocol":
			if inListener() {
				switch val {
				case "websockets":
					l.websocket = true
				case "mqtt":
				default:
					skip("unknown protocol")
				}
			}
		case "require_certificate":
			if v, ok := boolean(); ok && inListener() {
				l.requireCert = v
			}
		case "use_identity_as_username":
			if v, ok := boolean(); ok && inListener() {
				l.ident = v
			}
		case "tls_version":
			if inListener() {
				switch val {
				case "tlsv1.3":
					l.minTLS = "1.3"
				case "tlsv1.2":
					l.minTLS = "1.2"
				default:
					skip("edgegw accepts TLS 1.2 and 1.3 only")
				}
			}
		case "allow_anonymous":
			if v, ok := boolean(); ok {
				if im.perListener && l != nil {
					l.anon = &v
				} else {
					im.anon = &v
				}
			}
		case "per_listener_settings":
			if v, ok := boolean(); ok {
				im.perListener = v
			}
		case "password_file":
			im.passwd = val
		case "acl_file":
			im.acl = val
		case "persistence":
			if v, ok := boolean(); ok && !v {
				skip("edgegw always keeps sessions, queues and retained messages in its store (data_dir)")
			}
		case "persistence_location", "persistence_file", "autosave_interval", "autosave_on_changes":
			skip("edgegw keeps its own store in data_dir (commits every store.commit_interval); mosquitto.db is not converted: sessions and retained messages start empty")
		case "max_queued_messages":
			count("sessions.max_queued", 1)
		case "max_queued_bytes":
			count("sessions.max_queued_bytes", 1)
		case "max_inflight_messages":
			count("sessions.inflight_window", 1)
		case "message_size_limit", "max_packet_size":
			count("mqtt.max_packet_size", 1)
		case "queue_qos0_messages":
			if v, ok := boolean(); ok {
				set("sessions.queue_qos0", strconv.FormatBool(v))
			}
		case "max_keepalive":
			if _, err := strconv.Atoi(val); err != nil {
				skip("not a number of seconds")
			} else {
				set("mqtt.max_keepalive", val+"s")
			}
		case "sys_interval":
			if v, err := strconv.Atoi(val); err != nil || v < 1 {
				skip("edgegw publishes $SYS every mqtt.sys_interval, at least 1s")
			} else {
				set("mqtt.sys_interval", val+"s")
			}
		case "persistent_client_expiration":
			if d, ok := mosquittoDuration(val); ok {
				set("sessions.max_expiry", d)
			} else {
				skip("only h, d and w units carry over")
			}
		case "connection":
			l = nil
			b = &mqBridge{name: val, version: "3.1.1"} // mosquitto's default bridge_protocol_version
			im.bridges = append(im.bridges, b)
		case "address", "addresses":
			if inBridge() {
				b.addresses = append(b.addresses, vals...)
			}
		case "bridge_protocol_version":
			if inBridge() {
				switch val {
				case "mqttv50":
					b.version = "5"
				case "mqttv311":
					b.version = "3.1.1"
				default:
					skip("edgegw bridges speak MQTT 5 or 3.1.1")
				}
			}
		case "keepalive_interval":
			if inBridge() {
				b.keepalive = val + "s"
			}
		case "bridge_insecure":
			if v, ok := boolean(); ok && inBridge() {
				b.insecure = v
			}
		case "cleansession":
			if v, ok := boolean(); ok && v {
				skip("edgegw's upstream session is always persistent (downlink waits for it)")
			}
		case "topic":
			if inBridge() {
				t, err := parseMosquittoTopic(vals)
				if err != "" {
					skip(err)
					return
				}
				if t.qos > 1 {
					skip("QoS 2 is bridged as QoS 1 by edgegw; carried over with qos 1")
					t.qos = 1
				}
				b.topics = append(b.topics, t)
			}
		case "include_dir":
			if included {
				skip("mosquitto reads include_dir in the main file only")
				return
			}
			files, err := mosquittoConfDir(val)
			if err != nil {
				skip(err.Error())
				return
			}
			mainL, mainB := l, b
			included = true
			for _, file := range files {
				l, b = nil, nil
				if err := im.readFile(file, directive); err != nil {
					skip(err.Error())
				}
			}
			l, b, included = mainL, mainB, false
		default:
			skip("no edgegw equivalent")
		}
	}
	if err := im.directives(name, r, directive); err != nil {
		return nil, err
	}
	return im, nil
}

// readFile reads the directives of the file at path.
func (im *mqImport) readFile(path string, f func(fields []string, skip func(why string))) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	return im.directives(path, file, f)
}

// mosquittoConfDir returns the files of dir ending in .conf, in the order
// mosquitto loads them.
func mosquittoConfDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".conf") && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	slices.SortFunc(names, mosquittoFileOrder)
	for i, n := range names {
		names[i] = filepath.Join(dir, n)
	}
	return names, nil
}

// mosquittoFileOrder is mosquitto's order of an include_dir's files (its
// conf.c scmp_p): letters compared without case first, then upper case
// before lower case of the same letter (00.conf, A.conf, a.conf, B.conf).
func mosquittoFileOrder(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if d := int(upper(a[i])) - int(upper(b[i])); d != 0 {
			return d
		}
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return len(a) - len(b)
}

// upper is C's toupper for ASCII.
func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// parseMosquittoTopic parses a bridge `topic` line's values: pattern
// [[[out | in | both] qos-level] local-prefix remote-prefix]. A prefix of ""
// is written as two double quotes.
func parseMosquittoTopic(v []string) (mqTopic, string) {
	t := mqTopic{dir: "out"}
	if len(v) == 0 || len(v) > 5 {
		return t, "want: topic PATTERN [out|in|both [QOS [LOCAL REMOTE]]]"
	}
	t.pattern = v[0]
	if len(v) > 1 {
		t.dir = v[1]
		if t.dir != "out" && t.dir != "in" && t.dir != "both" {
			return t, "direction must be out, in or both"
		}
	}
	if len(v) > 2 {
		q, err := strconv.Atoi(v[2])
		if err != nil || q < 0 || q > 2 {
			return t, "QoS must be 0, 1 or 2"
		}
		t.qos = q
	}
	unq := func(s string) string {
		if s == `""` {
			return ""
		}
		return s
	}
	if len(v) > 3 {
		t.local = unq(v[3])
	}
	if len(v) > 4 {
		t.remote = unq(v[4])
	}
	if t.pattern == `""` { // the pattern comes from the prefixes alone
		t.pattern = ""
	}
	return t, ""
}

// mosquittoDuration converts persistent_client_expiration's "<n><h|d|w>".
func mosquittoDuration(s string) (string, bool) {
	if len(s) < 2 {
		return "", false
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n < 1 {
		return "", false
	}
	switch s[len(s)-1] {
	case 'h':
		return fmt.Sprintf("%dh", n), true
	case 'd':
		return fmt.Sprintf("%dh", n*24), true
	case 'w':
		return fmt.Sprintf("%dh", n*24*7), true
	}
	return "", false
}

// aclRule is an auth.acl rule.
type aclRule struct {
	name, user                   string
	anyUser                      bool
	publish, subscribe, commands []string
}

// readMosquittoACL translates a mosquitto ACL file: the `topic` lines under a
// `user` line become that user's rule; `pattern` lines (%u, %c as in edgegw)
// apply to every client and go into every rule. mosquitto grants only what is
// listed, so a last rule matching every other client grants the patterns and
// the topics listed before the first `user` line (mosquitto's grants for
// anonymous clients: an edgegw rule cannot single out anonymous clients, so
// they go to every client without a rule of its own, which is noted). "write"
// grants publish and also the command topics among them (edgegw's command
// topics need a commands entry); "read" grants subscribe.
func readMosquittoACL(path string, im *mqImport) ([]aclRule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rules []*aclRule
	var patterns aclRule
	cur := &aclRule{name: "anonymous", user: ""} // before any user line
	rules = append(rules, cur)
	grant := func(r *aclRule, access, topic string) bool {
		switch access {
		case "read":
			r.subscribe = append(r.subscribe, topic)
		case "write":
			r.publish, r.commands = append(r.publish, topic), append(r.commands, topic)
		case "readwrite":
			r.subscribe = append(r.subscribe, topic)
			r.publish, r.commands = append(r.publish, topic), append(r.commands, topic)
		default:
			return false
		}
		return true
	}
	err = im.directives(path, f, func(fs []string, skip func(string)) {
		access, topic := "readwrite", ""
		if len(fs) == 2 {
			topic = fs[1]
		} else if len(fs) == 3 {
			access, topic = fs[1], fs[2]
		}
		switch {
		case fs[0] == "user" && len(fs) == 2:
			cur = &aclRule{name: "user-" + fs[1], user: fs[1]}
			rules = append(rules, cur)
		case fs[0] == "topic" && topic != "":
			if !grant(cur, access, topic) {
				skip("only read, write and readwrite carry over")
			}
		case fs[0] == "pattern" && topic != "":
			if !grant(&patterns, access, topic) {
				skip("only read, write and readwrite carry over")
			}
		default:
			skip("not a user, topic or pattern line edgegw can translate")
		}
	})
	if err != nil {
		return nil, err
	}
	var out []aclRule
	for _, r := range rules[1:] {
		r.publish = append(r.publish, patterns.publish...)
		r.subscribe = append(r.subscribe, patterns.subscribe...)
		r.commands = append(r.commands, patterns.commands...)
		out = append(out, *r)
	}
	anon := rules[0]
	if len(anon.publish)+len(anon.subscribe) > 0 {
		im.skipped = append(im.skipped, fmt.Sprintf("%s: the topics before the first user line (mosquitto: anonymous clients) "+
			"are granted to every client without a user line of its own (rule everyone-else)", filepath.Base(path)))
	}
	out = append(out, aclRule{name: "everyone-else", anyUser: true,
		publish:   append(anon.publish, patterns.publish...),
		subscribe: append(anon.subscribe, patterns.subscribe...),
		commands:  append(anon.commands, patterns.commands...)})
	return out, nil
}

// yaml writes the configuration text.
func (im *mqImport) yaml(acl []aclRule) string {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "# edgegw configuration imported from %s by `edgegw config import-mosquitto`.\n", im.file)
	if len(im.skipped) > 0 {
		b.WriteString("# Not carried over:\n")
		for _, s := range im.skipped {
			fmt.Fprintf(&b, "#   %s\n", s)
		}
	}
	// Sections of the top-level keys, in the order of default.yaml.
	sections := map[string][]kv{}
	var order []string
	for _, e := range im.top {
		sec, k, _ := strings.Cut(e.key, ".")
		if _, ok := sections[sec]; !ok {
			order = append(order, sec)
		}
		sections[sec] = append(sections[sec], kv{k, e.val})
	}
	if len(im.listeners) > 0 {
		b.WriteString("listeners:\n")
		for _, l := range im.listeners {
			addr := l.addr + ":" + l.port
			fmt.Fprintf(&b, "  - name: %s\n    address: %s\n", q("l"+l.port), q(addr))
			if l.websocket {
				b.WriteString("    type: websocket\n")
			}
			anon := false // mosquitto 2's default
			if im.anon != nil {
				anon = *im.anon
			}
			if l.anon != nil {
				anon = *l.anon
			}
			fmt.Fprintf(&b, "    allow_anonymous: %t\n", anon)
			if l.cert != "" || l.key != "" {
				fmt.Fprintf(&b, "    tls:\n      cert_file: %s\n      key_file: %s\n", q(l.cert), q(l.key))
				if l.ca != "" && (l.requireCert || l.ident) {
					fmt.Fprintf(&b, "      client_ca_file: %s\n      client_auth: require\n", q(l.ca))
				}
				if l.minTLS != "" {
					fmt.Fprintf(&b, "      min_version: %s\n", q(l.minTLS))
				}
			}
			if l.ident {
				b.WriteString("    cert_username: cn\n")
			}
		}
	}
	for _, sec := range order {
		fmt.Fprintf(&b, "%s:\n", sec)
		for _, e := range sections[sec] {
			fmt.Fprintf(&b, "  %s: %s\n", e.key, e.val)
		}
	}
	if im.passwd != "" || acl != nil {
		b.WriteString("auth:\n")
		if im.passwd != "" {
			fmt.Fprintf(&b, "  password_file: %s\n", q(im.passwd))
		}
		if acl != nil {
			b.WriteString("  acl:\n")
			list := func(k string, v []string) {
				if len(v) == 0 {
					return
				}
				fmt.Fprintf(&b, "      %s:\n", k)
				for _, s := range v {
					fmt.Fprintf(&b, "        - %s\n", q(s))
				}
			}
			for _, r := range acl {
				fmt.Fprintf(&b, "    - name: %s\n", q(r.name))
				if !r.anyUser {
					fmt.Fprintf(&b, "      user: %s\n", q(r.user))
				}
				list("publish", r.publish)
				list("subscribe", r.subscribe)
				list("commands", r.commands)
			}
		}
	}
	if len(im.bridges) > 0 {
		b.WriteString("bridges:\n")
		for _, br := range im.bridges {
			scheme := "mqtt://"
			if br.ca != "" || br.cert != "" || br.insecure {
				scheme = "mqtts://"
			}
			fmt.Fprintf(&b, "  - name: %s\n    address:\n", q(br.name))
			for _, a := range br.addresses {
				fmt.Fprintf(&b, "      - %s\n", q(scheme+a))
			}
			fmt.Fprintf(&b, "    version: %s\n", q(br.version))
			if br.clientID != "" {
				fmt.Fprintf(&b, "    client_id: %s\n", q(br.clientID))
			}
			if br.user != "" {
				fmt.Fprintf(&b, "    username: %s\n", q(br.user))
			}
			if br.password != "" {
				fmt.Fprintf(&b, "    password: %s\n", q(br.password))
			}
			if br.keepalive != "" {
				fmt.Fprintf(&b, "    keepalive: %s\n", br.keepalive)
			}
			if scheme == "mqtts://" {
				b.WriteString("    tls:\n")
				if br.ca != "" {
					fmt.Fprintf(&b, "      ca_file: %s\n", q(br.ca))
				}
				if br.cert != "" {
					fmt.Fprintf(&b, "      cert_file: %s\n      key_file: %s\n", q(br.cert), q(br.key))
				}
				if br.insecure {
					b.WriteString("      insecure_skip_verify: true\n")
				}
			}
			var fwd, down []string
			for _, t := range br.topics {
				rule := fmt.Sprintf("local: %s, remote: %s, qos: %d", q(t.local+t.pattern), q(t.remote+t.pattern), t.qos)
				if t.dir == "out" || t.dir == "both" {
					fwd = append(fwd, rule)
				}
				if t.dir == "in" || t.dir == "both" {
					down = append(down, rule)
				}
			}
			for _, r := range []struct {
				key   string
				rules []string
			}{{"forward", fwd}, {"downlink", down}} {
				if len(r.rules) == 0 {
					continue
				}
				fmt.Fprintf(&b, "    %s:\n", r.key)
				for _, s := range r.rules {
					fmt.Fprintf(&b, "      - {%s}\n", s)
				}
			}
		}
	}
	return b.String()
}
