package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// field is one key=value of a structured log line.
type field struct{ key, value string }

// logRecord is one structured log line of a flash process (slog's text or
// JSON format), its fields in the order written.
type logRecord []field

// get returns the value of key, or "".
func (r logRecord) get(key string) string {
	for _, f := range r {
		if f.key == key {
			return f.value
		}
	}
	return ""
}

// maxLogLine bounds what parseLogLine looks at; longer lines are shown as text.
const maxLogLine = 64 << 10

// parseLogLine reads a line written by slog's text handler (key=value, values
// quoted Go-style when needed) or JSON handler. ok is false for anything else
// (a panic's trace, a line of the app's own), which callers show as it is.
func parseLogLine(line []byte) (rec logRecord, ok bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || len(line) > maxLogLine {
		return nil, false
	}
	if line[0] == '{' {
		return parseJSONLine(line)
	}
	s := string(line)
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return nil, false
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, false
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		if s != "" && s[0] != ' ' {
			return nil, false
		}
		s = strings.TrimLeft(s, " ")
		rec = append(rec, field{key, val})
	}
	if rec.get("level") == "" || rec.get("msg") == "" {
		return nil, false
	}
	return rec, true
}

func parseJSONLine(line []byte) (logRecord, bool) {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return nil, false
	}
	level, _ := m["level"].(string)
	msg, _ := m["msg"].(string)
	if level == "" || msg == "" {
		return nil, false
	}
	rec := logRecord{{"level", level}, {"msg", msg}}
	for k, v := range m {
		if k == "level" || k == "msg" || k == "time" {
			continue
		}
		s, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			s = string(b)
		}
		rec = append(rec, field{k, s})
	}
	return rec, true
}

// level is the record's level; one slog cannot name counts as Info.
func (r logRecord) level() slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(r.get("level"))) != nil {
		return slog.LevelInfo
	}
	return l
}

// important reports a line a person should see without --verbose: a
// warning or an error.
func (r logRecord) important() bool { return r.level() >= slog.LevelWarn }

// short renders a record for a person: level and message first, then the
// fields that the line's prefix (source) does not already say.
func (r logRecord) short(source string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.get("level"), r.get("msg"))
	for _, f := range r {
		switch f.key {
		case "time", "level", "msg", "role", "component", "provider", "app", "identity":
			continue
		}
		if f.value == "" || f.value == "<nil>" || f.value == source {
			continue
		}
		if strings.ContainsAny(f.value, " \"=") {
			fmt.Fprintf(&b, " %s=%q", f.key, f.value)
		} else {
			fmt.Fprintf(&b, " %s=%s", f.key, f.value)
		}
	}
	return b.String()
}

// Log messages of the mothership role that flash run follows. They are the
// runtime's (mothership.go); keep both sides in step.
const (
	msgReconcile       = "reconcile"       // one step of one resource
	msgReconcilePrefix = "reconciliation " // "… done", "… finished with failures", "… failed"
)

// endpointLine turns an event of the local provider (its "endpoint <kind>"
// lines) into flash run's one line for it, or "" for events not worth one
// (adopted; restarted, which the status watch reports with the new address).
func endpointLine(r logRecord) string {
	res, pid := r.get("resource"), r.get("pid")
	switch r.get("msg") {
	case "endpoint gone":
		return fmt.Sprintf("%s: the process an earlier run left (pid %s) is gone; starting a new one", res, pid)
	case "endpoint exited":
		line := fmt.Sprintf("%s exited (pid %s)", res, pid)
		if err := r.get("err"); err != "" && err != "<nil>" {
			line += ": " + err
		}
		return line + "; restarting it"
	}
	return ""
}

// reconcileLine turns a reconcile step into flash run's one line for it, or
// "" for steps not worth a line.
func reconcileLine(r logRecord) string {
	res := r.get("resource")
	switch step := r.get("step"); step {
	case "deployed":
		if r.get("action") == "changed" {
			return res + " updated"
		}
		return res + " up"
	case "unchanged":
		return res + " up (kept running from the previous run)"
	case "failed":
		return res + " failed: " + r.get("err")
	case "undeployed":
		if r.get("action") == "removed" {
			return res + " removed"
		}
	case "orphan":
		return res + ": a leftover endpoint was stopped"
	}
	return ""
}
