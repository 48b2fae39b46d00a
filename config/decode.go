package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/internal/suggest"
	"edgegw/internal/topic"
)

// Limits shared by several sections.
const (
	// MaxCount is the largest count: counts fit an int on 32-bit ARM too.
	MaxCount = math.MaxInt32
	// MaxExpiry is the longest session expiry: the v5 Session Expiry Interval is
	// a 4-byte integer of seconds.
	MaxExpiry = time.Duration(math.MaxUint32) * time.Second
)

// Error is one problem in a configuration file.
type Error struct {
	File string // the name of the file, as given to NewDecoder
	Line int    // 1-based; 0 when unknown
	Key  string // key path such as "sessions.profiles[1].clean_start"; empty for the whole file
	Msg  string
}

// Error formats the problem as "file:line: key: message", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Setter decodes the value node n found at the key path key, such as
// "listeners[0].address".
type Setter = func(n *yaml.Node, key string)

// Decoder walks a yaml.Node tree, collecting every problem rather than stopping
// at the first. Key paths look like "listeners[0].address". It implements
// hardware.Decoder. Not safe for concurrent use.
type Decoder struct {
	file  string
	errs  []*Error
	lines map[string]int // key path -> line of its value, for every key present in the file
}

// NewDecoder returns a decoder for the file named file (used in messages).
func NewDecoder(file string) *Decoder {
	return &Decoder{file: file, lines: map[string]int{}}
}

// Document parses data, which must hold at most one YAML document, and returns
// its top node (nil when there is none: an empty file or only comments). A
// syntax error is returned as an *Error at once; problems found later are
// collected and returned by Err.
func (d *Decoder) Document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, nil
	case err != nil:
		return nil, d.syntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, d.syntaxError(err)
	default:
		return nil, &Error{File: d.file, Line: extra.Line, Msg: "a configuration file holds one YAML document, found another"}
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return nil, nil
}

// Err returns the problems reported so far, one *Error each ordered by line and
// joined (errors.Join), or nil.
func (d *Decoder) Err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return a.Line - b.Line })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *Decoder) syntaxError(err error) error {
	e := &Error{File: d.file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLineError.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	return e
}

// Add reports a problem found elsewhere (in another file the configuration names).
func (d *Decoder) Add(e *Error) { d.errs = append(d.errs, e) }

// FailLine reports a problem at line.
func (d *Decoder) FailLine(line int, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// FailNode reports a problem with the node n at key.
func (d *Decoder) FailNode(n *yaml.Node, key, format string, args ...any) {
	d.FailLine(n.Line, key, format, args...)
}

// Fail reports a problem found after decoding, at the line of key or of its
// nearest ancestor present in the file.
func (d *Decoder) Fail(key, format string, args ...any) {
	d.FailLine(d.lineOf(key), key, format, args...)
}

func (d *Decoder) lineOf(key string) int {
	for key != "" {
		if line, ok := d.lines[key]; ok {
			return line
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// Failed reports whether a problem was already reported for key.
func (d *Decoder) Failed(key string) bool {
	return slices.ContainsFunc(d.errs, func(e *Error) bool { return e.Key == key })
}

// Present reports whether key is in the file.
func (d *Decoder) Present(key string) bool {
	_, ok := d.lines[key]
	return ok
}

// Resolve follows aliases to the node they refer to.
func Resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is the null scalar.
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Describe names a value for "got ..." in messages.
func Describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case IsNull(n):
		return "nothing (null)"
	default:
		return strconv.Quote(n.Value)
	}
}

// Mapping decodes the mapping n with one setter per known key, in document order.
// Unknown and repeated keys are errors. A null value counts as an empty mapping, so
// a section whose keys are all commented out keeps its defaults.
func (d *Decoder) Mapping(n *yaml.Node, key string, fields map[string]Setter) {
	n = Resolve(n)
	if IsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.FailNode(n, key, "must be a mapping, got %s", Describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Resolve(n.Content[i]), Resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.FailNode(k, key, "keys must be names, got %s", Describe(k))
			continue
		}
		sub := k.Value
		if key != "" {
			sub = key + "." + k.Value
		}
		if first, ok := seen[k.Value]; ok {
			d.FailNode(k, sub, "repeated key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		set, ok := fields[k.Value]
		if !ok {
			known := slices.Sorted(maps.Keys(fields))
			hint := ""
			if n := suggest.Nearest(k.Value, known); n != "" {
				hint = "; did you mean " + n + "?"
			}
			d.FailNode(k, sub, "unknown key (known keys here: %s)%s", strings.Join(known, ", "), hint)
			continue
		}
		d.lines[sub] = v.Line
		set(v, sub)
	}
}

// List decodes the sequence n item by item (key paths "key[i]") and reports
// whether n is a sequence.
func (d *Decoder) List(n *yaml.Node, key string, item Setter) bool {
	if n.Kind != yaml.SequenceNode {
		d.FailNode(n, key, "must be a list, got %s (write [] for an empty list)", Describe(n))
		return false
	}
	for i, c := range n.Content {
		sub := fmt.Sprintf("%s[%d]", key, i)
		d.lines[sub] = c.Line
		item(Resolve(c), sub)
	}
	return true
}

// Scalar reports whether n is a scalar other than null; if not, it reports that
// key must be want.
func (d *Decoder) Scalar(n *yaml.Node, key, want string) bool {
	if n.Kind != yaml.ScalarNode || IsNull(n) {
		d.FailNode(n, key, "must be %s, got %s", want, Describe(n))
		return false
	}
	return true
}

// Str accepts any scalar: `name: 1` is the string "1".
func (d *Decoder) Str(dst *string) Setter {
	return func(n *yaml.Node, key string) {
		if d.Scalar(n, key, "a string") {
			*dst = n.Value
		}
	}
}

// Strings accepts a list of strings.
func (d *Decoder) Strings(dst *[]string) Setter {
	return func(n *yaml.Node, key string) {
		out := []string{}
		if d.List(n, key, func(n *yaml.Node, key string) {
			if d.Scalar(n, key, "a string") {
				out = append(out, n.Value)
			}
		}) {
			*dst = out
		}
	}
}

// Enum accepts one of values.
func (d *Decoder) Enum(dst *string, values ...string) Setter {
	return func(n *yaml.Node, key string) {
		want := "one of " + strings.Join(values, ", ")
		if !d.Scalar(n, key, want) {
			return
		}
		if !slices.Contains(values, n.Value) {
			d.FailNode(n, key, "must be %s, got %q", want, n.Value)
			return
		}
		*dst = n.Value
	}
}

// Glob accepts a path.Match pattern (topic.CheckGlob).
func (d *Decoder) Glob(dst *string) Setter {
	return func(n *yaml.Node, key string) {
		if !d.Scalar(n, key, "a glob pattern") {
			return
		}
		if err := topic.CheckGlob(n.Value); err != nil {
			d.FailNode(n, key, "%v", err)
			return
		}
		*dst = n.Value
	}
}

// Bool accepts true or false.
func (d *Decoder) Bool(dst *bool) Setter {
	return func(n *yaml.Node, key string) {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.FailNode(n, key, "must be true or false, got %s", Describe(n))
			return
		}
		if err := n.Decode(dst); err != nil {
			d.FailNode(n, key, "must be true or false, got %s", Describe(n))
		}
	}
}

// Int decodes an integer in [lo, hi]. Quoted numbers are strings, not integers.
func (d *Decoder) Int(n *yaml.Node, key string, lo, hi int64) (int64, bool) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.FailNode(n, key, "must be an integer, got %s", Describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		d.FailNode(n, key, "must be between %d and %d, got %d", lo, hi, v)
		return 0, false
	}
	return v, true
}

// Int64 accepts an integer in [lo, hi].
func (d *Decoder) Int64(dst *int64, lo, hi int64) Setter {
	return func(n *yaml.Node, key string) {
		if v, ok := d.Int(n, key, lo, hi); ok {
			*dst = v
		}
	}
}

// Bytes accepts a byte count, 0-2^40 (0 = no limit).
func (d *Decoder) Bytes(dst *int64) Setter { return d.Int64(dst, 0, 1<<40) }

// Count accepts an integer in [lo, hi].
func (d *Decoder) Count(dst *int, lo, hi int64) Setter {
	return func(n *yaml.Node, key string) {
		if v, ok := d.Int(n, key, lo, hi); ok {
			*dst = int(v)
		}
	}
}

// Duration accepts a Go duration string ("500ms", "10s") in [lo, hi]. A plain
// number is refused (time.ParseDuration wants a unit), except 0.
func (d *Decoder) Duration(dst *time.Duration, lo, hi time.Duration) Setter {
	return d.duration(dst, lo, hi, false)
}

// Seconds is Duration in whole seconds.
func (d *Decoder) Seconds(dst *time.Duration, lo, hi time.Duration) Setter {
	return d.duration(dst, lo, hi, true)
}

func (d *Decoder) duration(dst *time.Duration, lo, hi time.Duration, whole bool) Setter {
	return func(n *yaml.Node, key string) {
		const want = `a duration such as "10s" or "24h" (a number needs a unit)`
		if !d.Scalar(n, key, want) {
			return
		}
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			d.FailNode(n, key, "must be %s, got %q", want, n.Value)
			return
		}
		switch {
		case v < lo && lo == 1 && hi == math.MaxInt64:
			d.FailNode(n, key, "must be more than 0s, got %s", n.Value)
		case v < lo && hi == math.MaxInt64:
			d.FailNode(n, key, "must be at least %s, got %s", fmtDuration(lo), n.Value)
		case v < lo || v > hi:
			d.FailNode(n, key, "must be between %s and %s, got %s", fmtDuration(lo), fmtDuration(hi), n.Value)
		case whole && v%time.Second != 0:
			d.FailNode(n, key, "must be whole seconds, got %s", n.Value)
		default:
			*dst = v
		}
	}
}

// fmtDuration writes limits the way the documentation does: 0s, 1ns, 1s, 4294967295s.
func fmtDuration(v time.Duration) string {
	if v != 0 && v%time.Second == 0 {
		return fmt.Sprintf("%ds", v/time.Second)
	}
	return v.String()
}

// Scale accepts a finite number other than 0 (integer or float).
func (d *Decoder) Scale(dst *float64) Setter {
	return func(n *yaml.Node, key string) {
		var v float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&v) != nil {
			d.FailNode(n, key, "must be a number, got %s", Describe(n))
			return
		}
		if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			d.FailNode(n, key, "must be a finite number other than 0, got %s", n.Value)
			return
		}
		*dst = v
	}
}

// Number accepts a finite number (integer or float) in [lo, hi]; hi
// math.MaxFloat64 means no upper bound.
func (d *Decoder) Number(dst *float64, lo, hi float64) Setter {
	return func(n *yaml.Node, key string) {
		var v float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&v) != nil ||
			math.IsNaN(v) || math.IsInf(v, 0) {
			d.FailNode(n, key, "must be a finite number, got %s", Describe(n))
			return
		}
		switch {
		case v < lo && hi == math.MaxFloat64:
			d.FailNode(n, key, "must be at least %g, got %s", lo, n.Value)
		case v < lo || v > hi:
			d.FailNode(n, key, "must be between %g and %g, got %s", lo, hi, n.Value)
		default:
			*dst = v
		}
	}
}

// checkAddress checks a listening address: host:port with a numeric port 0-65535.
func checkAddress(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", port)
	}
	return nil
}

// profileKey matches the "sessions.profiles[i] (name)." prefix of session.Options.Validate.
var profileKey = regexp.MustCompile(`^(sessions\.profiles\[\d+\]) \(.*?\)\.`)

// splitKey splits a "key: message" error text of a runtime package's check;
// key is empty when there is none.
func splitKey(s string) (key, msg string) {
	s = profileKey.ReplaceAllString(s, "$1.")
	key, msg, ok := strings.Cut(s, ": ")
	if !ok || strings.ContainsAny(key, " \"") {
		return "", s
	}
	return key, msg
}
