// Package line reads line-framed meters: LoRa UART modems and plain serial
// meters that send one newline-terminated frame per uplink, as JSON or as
// key=value pairs, carrying the meter's id and an optional checksum.
//
// Downlink follows LoRaWAN class A: a sleeping meter listens only right after
// it has sent, so a queued command is written to the port immediately after
// that meter's next uplink, one command per uplink.
package line

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Format is how frames are written.
type Format string

const (
	Auto Format = "auto" // a line starting with "{" is JSON, any other is key=value
	JSON Format = "json"
	KV   Format = "kv"
)

// ChecksumMode says what to do with the checksum suffix.
type ChecksumMode string

const (
	// ChecksumOptional verifies a checksum when the line has one.
	ChecksumOptional ChecksumMode = "optional"
	// ChecksumRequired refuses lines without a valid checksum and adds one to
	// downlink lines.
	ChecksumRequired ChecksumMode = "required"
	// ChecksumNone never looks for one: "*1F" at the end is part of the data.
	ChecksumNone ChecksumMode = "none"
)

// Limits of one frame.
const (
	MaxFields   = 64
	MaxKeyLen   = 64
	MaxValueLen = 256
)

// Errors of Parse.
var (
	ErrEmpty      = errors.New("empty line")
	ErrChecksum   = errors.New("checksum mismatch")
	ErrNoChecksum = errors.New("checksum required but missing")
	ErrNoID       = errors.New("frame carries no meter id")
)

// Field is a numeric field of a frame.
type Field struct {
	Name  string
	Value float64
}

// Frame is one parsed uplink.
type Frame struct {
	ID       string
	Values   []Field           // numeric fields, in line order (JSON: key order)
	Text     map[string]string // other scalar fields
	Checksum bool              // a checksum was present and correct
	JSON     bool              // the frame was JSON
}

// Parser parses lines.
type Parser struct {
	Format   Format
	IDKey    string // the field holding the meter id; "" means "id"
	Checksum ChecksumMode
}

var (
	validKey = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	decimal  = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
	validID  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// CRC16 returns the CRC-16/MODBUS of b (the 4-hex-digit checksum).
func CRC16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// XOR8 returns the XOR of the bytes of b (the 2-hex-digit, NMEA-style checksum).
func XOR8(b []byte) byte {
	var x byte
	for _, c := range b {
		x ^= c
	}
	return x
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// splitChecksum finds a "*HH" or "*HHHH" suffix. It returns the body, whether
// there was one, and whether it matched.
func splitChecksum(line []byte) (body []byte, present, ok bool) {
	star := bytes.LastIndexByte(line, '*')
	if star < 0 {
		return line, false, false
	}
	sum := line[star+1:]
	if (len(sum) != 2 && len(sum) != 4) || !isHex(sum) {
		return line, false, false
	}
	body = line[:star]
	want, _ := strconv.ParseUint(string(sum), 16, 16)
	if len(sum) == 2 {
		return body, true, uint64(XOR8(body)) == want
	}
	return body, true, uint64(CRC16(body)) == want
}

// Parse parses one line (without its newline). It never retains line.
func (p Parser) Parse(line []byte) (Frame, error) {
	line = bytes.TrimRight(line, "\r \t")
	line = bytes.TrimLeft(line, " \t")
	if len(line) == 0 {
		return Frame{}, ErrEmpty
	}
	var f Frame
	if p.Checksum != ChecksumNone {
		body, present, ok := splitChecksum(line)
		switch {
		case present && !ok:
			return Frame{}, ErrChecksum
		case !present && p.Checksum == ChecksumRequired:
			return Frame{}, ErrNoChecksum
		}
		line, f.Checksum = bytes.TrimRight(body, " \t,;"), present
	}
	line = bytes.Trim(line, " \t,;")
	if len(line) == 0 {
		return Frame{}, ErrEmpty
	}
	if !utf8.Valid(line) {
		return Frame{}, errors.New("not UTF-8 text")
	}
	idKey := p.IDKey
	if idKey == "" {
		idKey = "id"
	}
	var err error
	switch {
	case p.Format == JSON || (p.Format != KV && line[0] == '{'):
		f.JSON = true
		err = parseJSON(line, idKey, &f)
	default:
		err = parseKV(line, idKey, &f)
	}
	if err != nil {
		return Frame{}, err
	}
	if f.ID == "" {
		return Frame{}, ErrNoID
	}
	if !validID.MatchString(f.ID) {
		return Frame{}, fmt.Errorf("meter id %q is not 1-64 characters of A-Z a-z 0-9 _ . -", truncate(f.ID))
	}
	return f, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// add records one field: the id, a number or text.
func (f *Frame) add(key, idKey, raw string, quoted bool) error {
	if len(key) > MaxKeyLen || !validKey.MatchString(key) {
		return fmt.Errorf("field name %q: 1-%d characters of A-Z a-z 0-9 _ . -", truncate(key), MaxKeyLen)
	}
	if len(raw) > MaxValueLen {
		return fmt.Errorf("field %s: value longer than %d bytes", key, MaxValueLen)
	}
	if len(f.Values)+len(f.Text) >= MaxFields {
		return fmt.Errorf("more than %d fields", MaxFields)
	}
	if key == idKey {
		f.ID = raw
		return nil
	}
	if !quoted && decimal.MatchString(raw) {
		if v, err := strconv.ParseFloat(raw, 64); err == nil && !math.IsInf(v, 0) {
			for i := range f.Values {
				if f.Values[i].Name == key {
					f.Values[i].Value = v
					return nil
				}
			}
			f.Values = append(f.Values, Field{Name: key, Value: v})
			return nil
		}
	}
	if f.Text == nil {
		f.Text = map[string]string{}
	}
	f.Text[key] = raw
	return nil
}

// parseKV parses `key=value` pairs separated by spaces, tabs, commas or
// semicolons; a value may be "double quoted" (no escapes) to hold separators.
func parseKV(line []byte, idKey string, f *Frame) error {
	s := string(line)
	for {
		s = strings.TrimLeft(s, " \t,;")
		if s == "" {
			return nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \t,;\"") {
			end := strings.IndexAny(s, " \t,;")
			if end < 0 {
				end = len(s)
			}
			return fmt.Errorf("%q is not key=value", truncate(s[:end]))
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		quoted := strings.HasPrefix(s, `"`)
		if quoted {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return fmt.Errorf("field %s: unterminated quote", truncate(key))
			}
			val, s = s[1:1+end], s[2+end:]
			if s != "" && !strings.ContainsAny(s[:1], " \t,;") {
				return fmt.Errorf("field %s: text after the closing quote", truncate(key))
			}
		} else {
			end := strings.IndexAny(s, " \t,;")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		if err := f.add(key, idKey, val, quoted); err != nil {
			return err
		}
	}
}

// parseJSON parses one JSON object. Numbers are values, strings and booleans
// text; the id may be a string or a number; null, arrays and objects are
// ignored.
func parseJSON(line []byte, idKey string, f *Frame) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return fmt.Errorf("bad JSON: %v", err)
		}
		key, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("bad JSON: %v", err)
		}
		switch raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("bad JSON: %v", err)
			}
			err = f.add(key, idKey, s, true)
		case 't', 'f':
			err = f.add(key, idKey, string(raw), true)
		case 'n', '[', '{':
			continue
		default: // a number
			err = f.add(key, idKey, string(raw), false)
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// FormatCommand builds the downlink line for a command (with its newline):
//
//	JSON ports:     {"<id_key>":"<id>","cmd":<payload>}   payload as JSON if it is JSON, else as a string
//	key=value ports: <id_key>=<id> <payload>              payload must be one line of printable text
//
// With withChecksum a "*HHHH" CRC-16 suffix is added. The line must fit in
// maxLine bytes.
func FormatCommand(idKey, id string, payload []byte, asJSON, withChecksum bool, maxLine int) ([]byte, error) {
	if idKey == "" {
		idKey = "id"
	}
	var b []byte
	if asJSON {
		var cmd bytes.Buffer
		if json.Valid(payload) {
			if err := json.Compact(&cmd, payload); err != nil {
				return nil, err
			}
		} else {
			if !utf8.Valid(payload) {
				return nil, errors.New("command is neither JSON nor UTF-8 text")
			}
			s, _ := json.Marshal(string(payload))
			cmd.Write(s)
		}
		k, _ := json.Marshal(idKey)
		v, _ := json.Marshal(id)
		b = fmt.Appendf(nil, `{%s:%s,"cmd":%s}`, k, v, cmd.Bytes())
	} else {
		p := bytes.TrimSpace(payload)
		if len(p) == 0 {
			return nil, errors.New("empty command")
		}
		if !utf8.Valid(p) {
			return nil, errors.New("command is not UTF-8 text")
		}
		for _, r := range string(p) {
			if r < 0x20 || r == 0x7f {
				return nil, errors.New("command must be one line of printable text")
			}
		}
		b = fmt.Appendf(nil, "%s=%s %s", idKey, id, p)
	}
	if withChecksum {
		b = fmt.Appendf(b, "*%04X", CRC16(b))
	}
	b = append(b, '\n')
	if len(b) > maxLine {
		return nil, fmt.Errorf("command line of %d bytes is longer than max_line %d", len(b), maxLine)
	}
	return b, nil
}

// Splitter cuts a byte stream into lines of at most Max bytes (without the
// newline). Longer lines are discarded up to their newline. Its memory is
// bounded by Max.
type Splitter struct {
	Max      int
	buf      []byte
	skipping bool
}

// Feed adds received bytes and calls line for every complete line, without
// its "\n". line must not retain its argument; an error from line stops Feed
// and is returned. oversized counts the lines discarded for their length.
func (s *Splitter) Feed(chunk []byte, line func([]byte) error) (oversized int, err error) {
	for len(chunk) > 0 {
		nl := bytes.IndexByte(chunk, '\n')
		if s.skipping {
			if nl < 0 {
				return oversized, nil
			}
			s.skipping = false
			chunk = chunk[nl+1:]
			continue
		}
		if nl < 0 {
			if len(s.buf)+len(chunk) > s.Max {
				oversized++
				s.skipping, s.buf = true, s.buf[:0]
				return oversized, nil
			}
			s.buf = append(s.buf, chunk...)
			return oversized, nil
		}
		part := chunk[:nl]
		chunk = chunk[nl+1:]
		if len(s.buf)+len(part) > s.Max {
			oversized++
			s.buf = s.buf[:0]
			continue
		}
		l := part
		if len(s.buf) > 0 {
			s.buf = append(s.buf, part...)
			l = s.buf
		}
		err := line(l)
		s.buf = s.buf[:0]
		if err != nil {
			return oversized, err
		}
	}
	return oversized, nil
}
