package mothership

import (
	"context"
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

// parseLongPoll reads the version and wait parameters of a raw query
// (the first of each, as url.Values.Get; without building the map). wait is
// a number of seconds ("30", "2.5") or a Go duration ("30s"); both must be
// >= 0.
func parseLongPoll(rawQuery string) (longPoll, error) {
	lp := longPoll{version: -1}
	var errs []error
	if s, ok := queryParam(rawQuery, "version"); ok {
		if len(s) > maxParamLen {
			errs = append(errs, fmt.Errorf("version: %d characters, want an integer >= 0", len(s)))
		} else if v, err := strconv.ParseInt(s, 10, 64); err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("version %q: want an integer >= 0", s))
		} else {
			lp.version, lp.hasVersion = v, true
		}
	}
	if s, ok := queryParam(rawQuery, "wait"); ok {
		w, err := parseWait(s)
		if err != nil {
			errs = append(errs, err)
		} else {
			lp.wait = w
		}
	}
	return lp, errors.Join(errs...)
}

// queryParam returns the first value of name in a raw query, as
// url.ParseQuery reads it: pairs holding ";" or that do not unescape are
// skipped. It unescapes (and allocates) only a pair that needs it.
func queryParam(query, name string) (string, bool) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, ok := unescapeQuery(k)
		if !ok || k != name {
			continue
		}
		if v, ok = unescapeQuery(v); ok {
			return v, true
		}
	}
	return "", false
}

func unescapeQuery(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

func parseWait(s string) (time.Duration, error) {
	if len(s) > maxParamLen {
		return 0, fmt.Errorf("wait: %d characters, want seconds >= 0 (e.g. 30) or a duration (e.g. 30s)", len(s))
	}
	d, ok := waitValue(s)
	if !ok {
		return 0, fmt.Errorf("wait %q: want seconds >= 0 (e.g. 30) or a duration (e.g. 30s)", s)
	}
	return d, nil
}

// waitValue parses a valid wait value; parseWait builds the error, only
// for a bad value (no fmt on every poll).
func waitValue(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	// Whole seconds, as children send it, without ParseFloat: its frame
	// holds a ~800-byte decimal, and that depth alone doubled the stack a
	// parked poll keeps.
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > uint64(maxWaitParam/time.Second) {
			return maxWaitParam, true
		}
		return time.Duration(n) * time.Second, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f != f || f < 0 { // NaN or negative
			return 0, false
		}
		if f > maxWaitParam.Seconds() {
			return maxWaitParam, true
		}
		return time.Duration(f * float64(time.Second)), true
	}
	pd, err := time.ParseDuration(s)
	if err != nil || pd < 0 {
		return 0, false
	}
	return min(pd, maxWaitParam), true
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
// snapshot's changed channel. A parked poll keeps its goroutine's stack as
// large as it ever grew before parking (the runtime halves a stack only
// while less than a quarter is in use), so the path to the wait stays
// shallow: the work before and after it is in functions of their own, and
// nothing on it calls fmt or strconv.ParseFloat for a valid request.
func (m *Mothership) serveManifest(w http.ResponseWriter, r *http.Request) {
	lp, ok := m.pollOf(w, r)
	if !ok {
		return
	}
	s := m.snap.Load()
	if lp.hasVersion && lp.wait > 0 && s.version == lp.version {
		if s, ok = m.park(r.Context(), s, lp); !ok {
			return
		}
		if s.version == lp.version {
			m.notModified(w, s)
			return
		}
	}
	m.answer(w, r, s)
}

// pollOf reads the long-poll parameters and records the child's report; a
// bad query is answered 400 (ok false).
//
//go:noinline
func (m *Mothership) pollOf(w http.ResponseWriter, r *http.Request) (_ longPoll, ok bool) {
	var lp longPoll
	if r.URL.RawQuery != "" {
		var err error
		if lp, err = parseLongPoll(r.URL.RawQuery); err != nil {
			m.inst.record(r, m.cfg.Now, 0)
			wire.WriteError(w, http.StatusBadRequest, "invalid long-poll parameters", "detail", err.Error())
			return lp, false
		}
	} else {
		lp.version = -1
	}
	m.inst.record(r, m.cfg.Now, min(lp.wait, m.cfg.MaxWait))
	return lp, true
}

// park waits until a snapshot newer than s is installed, the poll's wait
// passes or the mothership stops, and returns the snapshot to answer with;
// ok is false when the client went away.
//
//go:noinline
func (m *Mothership) park(ctx context.Context, s *snapshot, lp longPoll) (_ *snapshot, ok bool) {
	due := m.due.after(time.Now(), m.herdWait(lp.wait))
	m.parked.Add(1)
	m.cfg.Metrics.Parked(1)
	defer func() {
		m.parked.Add(-1)
		m.cfg.Metrics.Parked(-1)
	}()
	for s.version == lp.version {
		select {
		case <-s.changed:
			s = m.snap.Load()
		case <-due:
			return s, true
		case <-ctx.Done():
			return s, false
		case <-m.stop:
			return s, true
		}
	}
	return s, true
}

// answer writes snapshot s: 200 with the manifest, 304 when the client
// has it, 404 when there is none.
//
//go:noinline
func (m *Mothership) answer(w http.ResponseWriter, r *http.Request, s *snapshot) {
	h := w.Header()
	if s.version > 0 || s.mf != nil {
		h[wire.HeaderManifestVersion] = s.head.version
	}
	if !s.servable {
		detail := "no manifest has been published yet"
		if s.mf != nil {
			detail = "the published manifest has no resources"
		}
		wire.WriteError(w, http.StatusNotFound, "Manifest not found", "detail", detail)
		return
	}
	h["Etag"] = s.head.etag
	if etagMatch(r.Header.Get("If-None-Match"), s.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	// The snapshot's own header values: an answer allocates none.
	h["Cache-Control"] = s.head.cacheControl
	h["Content-Type"] = s.head.contentType
	h["Content-Length"] = s.head.length
	w.WriteHeader(http.StatusOK)
	w.Write(s.served)
}

func (m *Mothership) notModified(w http.ResponseWriter, s *snapshot) {
	h := w.Header()
	h[wire.HeaderManifestVersion] = s.head.version
	if s.servable {
		h["Etag"] = s.head.etag
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
