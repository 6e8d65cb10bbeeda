package mothership

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// longPoll is a parsed ?version=N&wait=S.
type longPoll struct {
	version    int64         // -1 when absent
	wait       time.Duration // 0: answer at once
	hasVersion bool
}

// maxWaitParam bounds a wait value before capping, so that parsing never
// overflows whatever the input.
const maxWaitParam = 24 * time.Hour

// maxParamLen bounds the length of a long-poll parameter: longer ones are
// refused unparsed and not echoed (a version has at most 19 digits).
const maxParamLen = 32

// parseLongPoll reads the version and wait query parameters. wait is a number
// of seconds ("30", "2.5") or a Go duration ("30s"); both must be >= 0.
func parseLongPoll(q url.Values) (longPoll, error) {
	lp := longPoll{version: -1}
	var errs []error
	if vs, ok := q["version"]; ok {
		s := firstOf(vs)
		if len(s) > maxParamLen {
			errs = append(errs, fmt.Errorf("version: %d characters, want an integer >= 0", len(s)))
		} else if v, err := strconv.ParseInt(s, 10, 64); err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("version %q: want an integer >= 0", s))
		} else {
			lp.version, lp.hasVersion = v, true
		}
	}
	if ws, ok := q["wait"]; ok {
		w, err := parseWait(firstOf(ws))
		if err != nil {
			errs = append(errs, err)
		} else {
			lp.wait = w
		}
	}
	return lp, errors.Join(errs...)
}

func firstOf(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func parseWait(s string) (time.Duration, error) {
	if len(s) > maxParamLen {
		return 0, fmt.Errorf("wait: %d characters, want seconds >= 0 (e.g. 30) or a duration (e.g. 30s)", len(s))
	}
	bad := fmt.Errorf("wait %q: want seconds >= 0 (e.g. 30) or a duration (e.g. 30s)", s)
	if s == "" {
		return 0, bad
	}
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f != f || f < 0 { // NaN or negative
			return 0, bad
		}
		if f > maxWaitParam.Seconds() {
			return maxWaitParam, nil
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		pd, err := time.ParseDuration(s)
		if err != nil || pd < 0 {
			return 0, bad
		}
		d = min(pd, maxWaitParam)
	}
	return d, nil
}

// herdWait caps a requested wait at MaxWait and shortens it by a random
// 0–10%, so that children that polled together do not all come back together.
func (m *Mothership) herdWait(w time.Duration) time.Duration {
	w = min(w, m.cfg.MaxWait)
	cut := time.Duration(float64(w) * 0.1 * m.cfg.Rand())
	return w - min(max(cut, 0), w/10)
}

// serveManifest answers GET /manifest (SPEC §4.1). It never touches storage:
// the answer comes from the current snapshot, parked polls wait on the
// snapshot's changed channel.
func (m *Mothership) serveManifest(w http.ResponseWriter, r *http.Request) {
	var lp longPoll
	if r.URL.RawQuery != "" { // most reads carry no query: skip the map
		var err error
		if lp, err = parseLongPoll(r.URL.Query()); err != nil {
			m.inst.record(r, m.cfg.Now, 0)
			wire.WriteError(w, http.StatusBadRequest, "invalid long-poll parameters", "detail", err.Error())
			return
		}
	}
	m.inst.record(r, m.cfg.Now, min(lp.wait, m.cfg.MaxWait))
	s := m.snap.Load()
	if lp.hasVersion && lp.wait > 0 && s.version == lp.version {
		timer := time.NewTimer(m.herdWait(lp.wait))
		defer timer.Stop()
		m.parked.Add(1)
		defer m.parked.Add(-1)
		defer m.cfg.Metrics.Park()()
	park:
		for s.version == lp.version {
			select {
			case <-s.changed:
				s = m.snap.Load()
			case <-timer.C:
				break park
			case <-r.Context().Done():
				return
			case <-m.stop:
				break park
			}
		}
		if s.version == lp.version {
			m.notModified(w, s)
			return
		}
	}
	h := w.Header()
	if s.version > 0 || s.mf != nil {
		h.Set(wire.HeaderManifestVersion, s.verStr)
	}
	if !s.servable {
		detail := "no manifest has been published yet"
		if s.mf != nil {
			detail = "the published manifest has no resources"
		}
		wire.WriteError(w, http.StatusNotFound, "Manifest not found", "detail", detail)
		return
	}
	h.Set("Etag", s.etag)
	if etagMatch(r.Header.Get("If-None-Match"), s.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Cache-Control", "no-cache")
	wire.WriteRawJSON(w, http.StatusOK, s.served)
}

func (m *Mothership) notModified(w http.ResponseWriter, s *snapshot) {
	h := w.Header()
	h.Set(wire.HeaderManifestVersion, s.verStr)
	if s.servable {
		h.Set("Etag", s.etag)
	}
	w.WriteHeader(http.StatusNotModified)
}

// etagMatch implements If-None-Match's weak comparison: a list of entity
// tags, W/ prefixes ignored, or "*".
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for part := range strings.SplitSeq(header, ",") {
		t := strings.TrimSpace(part)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// serveInvalidate answers POST /flash/invalidate: re-read the store, answer
// the served version.
func (m *Mothership) serveInvalidate(w http.ResponseWriter, r *http.Request) {
	if err := m.Invalidate(r.Context()); err != nil {
		wire.WriteError(w, http.StatusServiceUnavailable, "cannot read the state store", "detail", err.Error(),
			"version", m.snap.Load().version)
		return
	}
	wire.WriteJSON(w, http.StatusOK, map[string]int64{"version": m.snap.Load().version})
}
