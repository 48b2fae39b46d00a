package gateway_test

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// A strict checker of the Prometheus text exposition format 0.0.4, for the
// /metrics test: rather than a test dependency on prometheus/common/expfmt, it
// enforces what that parser accepts and a little more:
//   - every line is "# HELP name text", "# TYPE name counter|gauge", or a sample
//     "name{label="value",...} value" ending in "\n"; no blank lines;
//   - HELP and TYPE come once per family, before its samples, and a family's
//     samples are contiguous; counters end in _total; a summary's samples are
//     name{quantile="..."}, then name_sum and name_count;
//   - metric and label names match the format's grammar; label values use only
//     the escapes \\ \" \n; no label name repeats in a sample; no series twice;
//   - values parse as Go floats (NaN, +Inf, -Inf allowed), counters are >= 0.

type exposition struct {
	types   map[string]string  // family -> type
	samples map[string]float64 // series as written (name{labels}) -> value
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func parseExposition(text string) (*exposition, error) {
	e := &exposition{types: map[string]string{}, samples: map[string]float64{}}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("output does not end in a newline")
	}
	help := map[string]bool{}
	done := map[string]bool{} // families whose samples have ended
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		switch {
		case line == "":
			return nil, fmt.Errorf("line %d: blank line", n)
		case strings.HasPrefix(line, "# HELP "):
			name, _, ok := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if !ok || !metricName.MatchString(name) || help[name] || e.types[name] != "" {
				return nil, fmt.Errorf("line %d: bad or repeated HELP (HELP must come first): %q", n, line)
			}
			if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(line, `\\`, ""), `\n`, ""), `\`) {
				return nil, fmt.Errorf("line %d: bad escape in HELP", n)
			}
			help[name] = true
			if current != "" {
				done[current] = true
			}
			current = name
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			if len(f) != 2 || f[0] != current || e.types[f[0]] != "" || (f[1] != "counter" && f[1] != "gauge" && f[1] != "summary") {
				return nil, fmt.Errorf("line %d: bad TYPE (must follow its HELP): %q", n, line)
			}
			if f[1] == "counter" && !strings.HasSuffix(f[0], "_total") {
				return nil, fmt.Errorf("line %d: counter %s does not end in _total", n, f[0])
			}
			e.types[f[0]] = f[1]
		case strings.HasPrefix(line, "#"):
			return nil, fmt.Errorf("line %d: unexpected comment %q", n, line)
		default:
			series, value, err := parseSample(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v: %q", n, err, line)
			}
			name, _, _ := strings.Cut(series, "{")
			if e.types[current] == "summary" && (series == current+"_sum" || series == current+"_count") {
				name = current
			}
			if name != current || e.types[name] == "" || done[name] {
				return nil, fmt.Errorf("line %d: sample of %s outside its family (current %s)", n, name, current)
			}
			if _, dup := e.samples[series]; dup {
				return nil, fmt.Errorf("line %d: series %s twice", n, series)
			}
			if e.types[name] == "counter" && (value < 0 || math.IsNaN(value)) {
				return nil, fmt.Errorf("line %d: counter %s = %v", n, series, value)
			}
			e.samples[series] = value
		}
	}
	for name := range e.types {
		found := false
		for s := range e.samples {
			if s == name || strings.HasPrefix(s, name+"{") {
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("family %s has no sample", name)
		}
	}
	return e, nil
}

// parseSample splits `name{a="x",b="y"} value` and checks its syntax.
func parseSample(line string) (series string, value float64, err error) {
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 {
		return "", 0, fmt.Errorf("no value")
	}
	series, v := line[:sp], line[sp+1:]
	if value, err = strconv.ParseFloat(v, 64); err != nil {
		return "", 0, fmt.Errorf("value %q", v)
	}
	name, rest, hasLabels := strings.Cut(series, "{")
	if !metricName.MatchString(name) {
		return "", 0, fmt.Errorf("metric name %q", name)
	}
	if !hasLabels {
		return series, value, nil
	}
	if !strings.HasSuffix(rest, "}") {
		return "", 0, fmt.Errorf("labels not closed")
	}
	rest = strings.TrimSuffix(rest, "}")
	seen := map[string]bool{}
	for rest != "" {
		ln, after, ok := strings.Cut(rest, `="`)
		if !ok || !labelName.MatchString(ln) || seen[ln] {
			return "", 0, fmt.Errorf("label name %q", ln)
		}
		seen[ln] = true
		i, closed := 0, false
		for i < len(after) {
			c := after[i]
			if c == '\\' {
				if i+1 >= len(after) || !strings.ContainsRune(`\"n`, rune(after[i+1])) {
					return "", 0, fmt.Errorf("bad escape in label %s", ln)
				}
				i += 2
				continue
			}
			if c == '\n' {
				return "", 0, fmt.Errorf("raw newline in label %s", ln)
			}
			if c == '"' {
				closed = true
				break
			}
			i++
		}
		if !closed {
			return "", 0, fmt.Errorf("label %s not closed", ln)
		}
		rest = after[i+1:]
		if rest != "" {
			if rest[0] != ',' {
				return "", 0, fmt.Errorf("expected , after label %s", ln)
			}
			rest = rest[1:]
		}
	}
	return series, value, nil
}
