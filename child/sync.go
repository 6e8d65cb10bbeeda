// Package child is the data plane of a flash endpoint: it keeps this
// endpoint's copy of the manifest in step with the mothership (Sync), decides
// where each call runs (Router), makes remote calls (Invoker: sending and
// retries in send.go, the choice of replica in replicas.go, circuit breakers
// in breaker.go) and owns a call from route to answer, following a function
// that moved (Caller).
//
// Nothing on the call path waits on the mothership or on disk: routing reads
// an immutable table through one atomic pointer, and the manifest it comes
// from is swapped in whole by the sync loop, backed by a last-known-good file.
package child

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// Defaults and limits of the sync loop (SPEC §5.1, §9).
const (
	DefaultTTL      = 300 * time.Second // re-read period when the mothership does not hold long polls
	DefaultPollWait = 60 * time.Second  // long-poll wait asked for
	MaxPollWait     = 300 * time.Second // the mothership's cap on wait
	MaxManifestSize = 64 << 20          // largest manifest answer read
)

const (
	backoffBase  = 500 * time.Millisecond
	backoffCap   = 30 * time.Second
	notFoundCap  = 5 * time.Second  // "no manifest yet" is expected at first boot: retry sooner
	fetchTimeout = 30 * time.Second // an immediate fetch; a long poll gets its wait on top
	maxReasonLen = 200
)

// ErrAlreadyRunning is returned by Run when another Run of the same Sync is active.
var ErrAlreadyRunning = errors.New("child: manifest sync already running")

// Config configures a Sync. Zero values mean defaults.
type Config struct {
	// Identity is the resource this endpoint serves (X-Flash-Resource).
	Identity string
	// Instance names this process among the resource's replicas
	// (X-Flash-Instance); default host-pid.
	Instance string
	// MothershipURL is the mothership's base URL, already resolved (see
	// MothershipURL). Required. Several motherships sharing one store may be
	// listed, comma-separated: the child long-polls one (chosen from its
	// instance name, so that children spread) and moves on to another when
	// it fails.
	MothershipURL string
	// APIKey is sent as Authorization: Bearer.
	APIKey string
	// CacheDir holds the last-known-good manifest; "" disables the cache.
	CacheDir string
	// TTL is the re-read period when the mothership does not hold long polls.
	TTL time.Duration
	// PollWait is the long-poll wait asked for (capped at MaxPollWait).
	PollWait time.Duration
	// HTTPClient makes the requests; nil → a client on wire.NewTransport().
	HTTPClient *http.Client
	// Logger receives the loop's logs; nil → slog.Default().
	Logger *slog.Logger
	// OnApply, when set, is called after each manifest is applied (and
	// persisted), from one goroutine at a time.
	OnApply func(m *manifest.Manifest, version int64)
	// Tracer, when not nil, makes a span of each manifest apply.
	Tracer *telemetry.Tracer
	// Metrics, when not nil, records the applied version and sync errors.
	Metrics *telemetry.Metrics
}

// MothershipURL resolves the mothership's base URL by the seed's rule:
// FLASH_MOTHERSHIP_URL (url) wins; else FLASH_MOTHERSHIP_ID (id) gives
// https://{id}.api.runpod.ai; else "" (no mothership).
func MothershipURL(url, id string) string {
	if u := strings.TrimSpace(url); u != "" {
		return strings.TrimRight(u, "/")
	}
	if id = strings.TrimSpace(id); id != "" {
		return "https://" + id + ".api.runpod.ai"
	}
	return ""
}

// parseMotherships splits a comma-separated list of mothership base URLs.
func parseMotherships(list string) ([]string, error) {
	var bases []string
	for part := range strings.SplitSeq(list, ",") {
		base := strings.TrimRight(strings.TrimSpace(part), "/")
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("child: mothership URL %q: want http(s)://host[:port], several separated by commas", part)
		}
		bases = append(bases, base)
	}
	return bases, nil
}

// spread picks where a child starts among n motherships from its name, so
// that a fleet's long polls spread evenly and the same child comes back to
// the same mothership.
func spread(name string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % uint32(n))
}

// moveOn polls another mothership after a failure, chosen at random among
// the others so that the children of a mothership that died do not all
// land on the same one. The caller holds fetchMu.
func (s *Sync) moveOn() {
	if n := len(s.bases); n > 1 {
		s.at = (s.at + 1 + rand.N(n-1)) % n
		s.log.Info("moving to another mothership", "url", s.bases[s.at])
	}
}

// snapshot is one applied manifest; it is replaced whole, never changed.
type snapshot struct {
	m       *manifest.Manifest
	version int64  // 0 for a mothership that does not number versions
	body    []byte // the JSON as served, to spot unchanged re-reads
}

// Sync keeps this endpoint's copy of the manifest: loaded from the cache at
// construction, then kept current by Run. Readers never block.
type Sync struct {
	cfg       Config
	bases     []string // the motherships; bases[at] is polled (at guarded by fetchMu)
	at        int
	client    *http.Client
	log       *slog.Logger
	cachePath string
	pollWait  time.Duration
	ttl       time.Duration

	cur       atomic.Pointer[snapshot]
	ready     chan struct{} // closed once some manifest is known
	readyOnce sync.Once
	running   atomic.Bool
	boot      singleflight.Group            // shares the first fetch among every waiter
	nudge     chan struct{}                 // Nudge: fetch now instead of waiting out a backoff
	changed   atomic.Pointer[chan struct{}] // closed and replaced at each apply (Changed)

	applyMu   sync.Mutex // orders applies against subscribe
	listeners []func(*manifest.Manifest, int64)

	fetchMu    sync.Mutex // one fetch at a time; guards the fields below
	attempt    int        // consecutive failures, for backoff
	failing    bool       // a failure streak was logged
	ttlMode    bool       // the mothership does not number versions
	seen       int64      // newest version seen, applied or rejected (?version=)
	rejVersion int64      // last rejected version, reported until a valid one applies
	rejReason  string
	rejBody    []byte

	// Test hooks: full jitter by default.
	jitter func(time.Duration) time.Duration
}

// NewSync returns a Sync for cfg. It loads and applies the last-known-good
// manifest from cfg.CacheDir (when present and valid) before returning, so
// Ready may already be true.
func NewSync(cfg Config) (*Sync, error) {
	bases, err := parseMotherships(cfg.MothershipURL)
	if err != nil {
		return nil, err
	}
	s := &Sync{
		cfg:      cfg,
		bases:    bases,
		client:   cfg.HTTPClient,
		log:      cfg.Logger,
		pollWait: cfg.PollWait,
		ttl:      cfg.TTL,
		ready:    make(chan struct{}),
		nudge:    make(chan struct{}, 1),
		jitter:   fullJitter,
	}
	changed := make(chan struct{})
	s.changed.Store(&changed)
	if s.client == nil {
		s.client = &http.Client{Transport: wire.NewTransport()}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "manifest-sync", "mothership", strings.Join(bases, ","))
	if s.pollWait <= 0 {
		s.pollWait = DefaultPollWait
	}
	s.pollWait = min(s.pollWait, MaxPollWait)
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.cfg.Instance == "" {
		host, _ := os.Hostname()
		s.cfg.Instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	s.at = spread(s.cfg.Identity+"/"+s.cfg.Instance, len(bases))
	if cfg.CacheDir != "" {
		s.cachePath = cachePath(cfg.CacheDir, cfg.Identity)
		s.loadCache()
	}
	return s, nil
}

// Current returns the manifest in use, or nil when none is known yet. It
// never blocks.
func (s *Sync) Current() *manifest.Manifest {
	if sn := s.cur.Load(); sn != nil {
		return sn.m
	}
	return nil
}

// Version returns the version of the manifest in use (0 when none, or when
// the mothership does not number versions).
func (s *Sync) Version() int64 {
	if sn := s.cur.Load(); sn != nil {
		return sn.version
	}
	return 0
}

// Changed returns a channel that is closed when a manifest is applied after
// this call: take it, then read what you need (Current, a route), then wait
// on it, and no change can slip in between.
func (s *Sync) Changed() <-chan struct{} { return *s.changed.Load() }

// Ready reports whether some manifest is known (GET /ping answers 200 then).
func (s *Sync) Ready() bool { return s.cur.Load() != nil }

// WaitReady returns once some manifest is known, or with ctx's error. While
// Run is active it only waits; otherwise the waiters share one fetch at a
// time, so any number of them cause one request upstream.
func (s *Sync) WaitReady(ctx context.Context) error {
	for {
		select {
		case <-s.ready: // closed once the first apply has run to its end
			return nil
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var retry *time.Timer
		var retryC <-chan time.Time
		if !s.running.Load() {
			d := s.bootFetch(ctx)
			if d <= 0 {
				continue
			}
			retry = time.NewTimer(d)
			retryC = retry.C
		}
		select {
		case <-s.ready:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-retryC:
		}
		if retry != nil {
			retry.Stop()
		}
	}
}

// Run keeps the manifest current until ctx ends: a fetch first, then long
// polls (or TTL re-reads against a mothership without versions). It returns
// nil when ctx ends, ErrAlreadyRunning if another Run is active.
func (s *Sync) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer s.running.Store(false)
	for ctx.Err() == nil {
		var d time.Duration
		if s.Ready() {
			d = s.fetch(ctx)
		} else {
			d = s.bootFetch(ctx)
		}
		if d > 0 && !s.sleep(ctx, d) {
			break
		}
	}
	return nil
}

// nudgeGap is the least time between fetches that nudges can cause, so that
// a burst of failing calls does not become a burst of fetches.
const nudgeGap = 200 * time.Millisecond

// Nudge asks for a fetch now rather than after the current backoff: a call
// found its endpoint gone, so the manifest may have moved on while the
// mothership was unreachable. It never blocks; nudges coalesce, and fetches
// they cause are nudgeGap apart at least.
func (s *Sync) Nudge() {
	select {
	case s.nudge <- struct{}{}:
	default:
	}
}

// sleep waits d, or less after a Nudge; false when ctx ended.
func (s *Sync) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		case <-s.nudge:
			t.Reset(min(d, nudgeGap))
		}
	}
}

// bootFetch makes the fetch that brings the first manifest, shared by every
// caller that arrives while it is in flight.
func (s *Sync) bootFetch(ctx context.Context) time.Duration {
	v, _, _ := s.boot.Do("boot", func() (any, error) {
		if s.Ready() { // it arrived while this caller was getting here
			return time.Duration(0), nil
		}
		return s.fetch(ctx), nil
	})
	return v.(time.Duration)
}

// fetch makes one request, handles the answer and says how long to wait
// before the next one.
func (s *Sync) fetch(ctx context.Context) time.Duration {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()

	long := s.seen > 0 && !s.ttlMode
	timeout := fetchTimeout
	target := s.bases[s.at] + "/manifest"
	if long {
		timeout += s.pollWait
		target += "?version=" + strconv.FormatInt(s.seen, 10) +
			"&wait=" + strconv.FormatInt(int64(s.pollWait/time.Second), 10)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, target, nil)
	if err != nil {
		return s.fail(backoffCap, slog.LevelError, "build manifest request", err)
	}
	h := req.Header
	if s.cfg.APIKey != "" {
		h.Set(wire.HeaderAuthorization, "Bearer "+s.cfg.APIKey)
	}
	h.Set("Accept", wire.ContentTypeJSON)
	h.Set(wire.HeaderResource, s.cfg.Identity)
	h.Set(wire.HeaderInstance, s.cfg.Instance)
	h.Set(wire.HeaderAppliedVersion, strconv.FormatInt(s.Version(), 10))
	if s.rejVersion > 0 {
		h.Set(wire.HeaderRejectedVersion, strconv.FormatInt(s.rejVersion, 10))
		h.Set(wire.HeaderRejectedReason, s.rejReason)
	}

	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0 // stopping, or a waiter sharing this fetch gave up
		}
		s.moveOn()
		return s.fail(backoffCap, slog.LevelWarn, "fetch manifest", err)
	}
	body, err := readBounded(resp.Body, MaxManifestSize, resp.ContentLength)
	resp.Body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		s.moveOn()
		return s.fail(backoffCap, slog.LevelWarn, "read manifest answer", err)
	}
	if resp.StatusCode >= 500 {
		s.moveOn()
	}
	return s.handle(resp.StatusCode, resp.Header, body, time.Since(start))
}

// handle acts on one answer of the mothership. It trusts nothing in it: a
// manifest is applied only when it parses and validates.
func (s *Sync) handle(status int, h http.Header, body []byte, elapsed time.Duration) time.Duration {
	switch {
	case status == http.StatusOK:
		return s.handleManifest(h, body, elapsed)
	case status == http.StatusNotModified:
		if s.fastAnswer(elapsed) {
			return s.quiet()
		}
		s.succeed()
		return s.next()
	case status == http.StatusNotFound && bytes.Contains(body, []byte("Manifest not found")):
		if !s.failing {
			s.log.Info("the mothership has no manifest yet; waiting")
		}
		s.failing = true
		return s.backoff(notFoundCap)
	case status == http.StatusUnauthorized || status == http.StatusNotFound ||
		status == http.StatusRequestTimeout:
		return s.fail(backoffCap, slog.LevelWarn, "fetch manifest", answerErr(status, body))
	case status == http.StatusTooManyRequests:
		d := s.fail(backoffCap, slog.LevelWarn, "fetch manifest", answerErr(status, body))
		if ra, err := strconv.Atoi(h.Get(wire.HeaderRetryAfter)); err == nil && ra > 0 {
			d = max(d, min(time.Duration(ra)*time.Second, backoffCap))
		}
		return d
	case status >= 400 && status < 500:
		// A request the mothership will never accept as it stands: say so
		// loudly, and do not hammer it.
		s.fail(backoffCap, slog.LevelError, "manifest request refused; check the URL, key and versions", answerErr(status, body))
		return backoffCap
	default:
		return s.fail(backoffCap, slog.LevelWarn, "fetch manifest", answerErr(status, body))
	}
}

func (s *Sync) handleManifest(h http.Header, body []byte, elapsed time.Duration) time.Duration {
	var version int64
	vs := h.Get(wire.HeaderManifestVersion)
	if vs != "" {
		v, err := strconv.ParseInt(vs, 10, 64)
		if err != nil || v < 0 {
			return s.fail(backoffCap, slog.LevelError, "manifest answer",
				fmt.Errorf("bad %s %q", wire.HeaderManifestVersion, truncate(vs, 40)))
		}
		version = v
	}
	if s.ttlMode != (vs == "") {
		s.ttlMode = vs == ""
		if s.ttlMode {
			s.log.Info("the mothership does not hold long polls; re-reading the manifest periodically", "ttl", s.ttl)
		}
	}
	cur := s.cur.Load()
	unchanged := cur != nil && cur.version == version && sameJSON(cur.body, body)
	rejectedAgain := s.rejVersion != 0 && s.rejVersion == version && sameJSON(s.rejBody, body)
	if unchanged || rejectedAgain {
		if s.fastAnswer(elapsed) {
			return s.quiet()
		}
		s.succeed()
		return s.next()
	}
	var prev *manifest.Manifest
	if cur != nil {
		prev = cur.m
	}
	m, err := manifest.ParseNext(prev, body) // unchanged resources are reused, not parsed again
	if err != nil {
		s.succeed() // the mothership answered; the manifest is what is wrong
		s.log.Error("rejected an invalid manifest; keeping the one in use",
			"version", version, "applied_version", s.Version(), "err", err)
		if version > 0 {
			s.rejVersion, s.rejReason, s.rejBody = version, rejectReason(err), body
			s.seen = version // park on it, so the long poll does not return it again at once
		}
		return s.next()
	}
	s.succeed()
	s.rejVersion, s.rejReason, s.rejBody = 0, "", nil
	s.seen = version
	s.apply(&snapshot{m: m, version: version, body: body}, true)
	s.log.Info("applied manifest", "version", version, "resources", len(m.Resources))
	return s.next()
}

// next is the wait after a good answer: none in long-poll mode, TTL otherwise.
func (s *Sync) next() time.Duration {
	switch {
	case s.ttlMode:
		return s.ttl
	case s.seen == 0:
		// Version 0: the mothership serves its local file because its store
		// is unreachable; look again soon for the first real version.
		return fallbackRecheck
	}
	return 0
}

// fallbackRecheck is the re-read period of a manifest served as version 0.
const fallbackRecheck = 5 * time.Second

// fastAnswer reports an answer that brought nothing new too soon for a held
// long poll: a mothership that does not park requests must not make us spin.
func (s *Sync) fastAnswer(elapsed time.Duration) bool {
	return !s.ttlMode && s.seen > 0 && elapsed < s.pollWait/10
}

// quiet backs off after a fast empty answer without calling it a failure.
func (s *Sync) quiet() time.Duration { return s.backoff(backoffCap) }

func (s *Sync) succeed() {
	if s.failing {
		s.log.Info("manifest service reachable again")
	}
	s.attempt, s.failing = 0, false
}

// fail logs a failure (the first of a streak at level, later ones at Debug,
// except Error which is always logged) and returns the backoff.
func (s *Sync) fail(cap time.Duration, level slog.Level, what string, err error) time.Duration {
	if !s.failing || level >= slog.LevelError {
		s.log.Log(context.Background(), level, what+" failed; keeping the manifest in use",
			"err", err, "applied_version", s.Version())
	} else {
		s.log.Debug(what+" failed", "err", err, "attempt", s.attempt)
	}
	s.failing = true
	s.cfg.Metrics.SyncError()
	return s.backoff(cap)
}

// backoff returns the next exponential backoff with full jitter, from
// backoffBase up to cap.
func (s *Sync) backoff(cap time.Duration) time.Duration {
	d := cap
	if s.attempt < 16 {
		d = min(backoffBase<<s.attempt, cap)
	}
	s.attempt++
	return s.jitter(d)
}

func fullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// apply makes sn the manifest in use: one pointer swap, then the router
// listeners, the wake-up of Changed, the cache file, OnApply, and last the
// wake-up of WaitReady.
func (s *Sync) apply(sn *snapshot, persist bool) {
	_, span := s.cfg.Tracer.Start(context.Background(), "manifest apply", telemetry.AttrVersion.Int64(sn.version))
	defer span.End()
	s.cfg.Metrics.Applied(sn.version)
	s.applyMu.Lock()
	s.cur.Store(sn)
	for _, fn := range s.listeners {
		fn(sn.m, sn.version)
	}
	next := make(chan struct{})
	close(*s.changed.Swap(&next))
	s.applyMu.Unlock()
	if persist && s.cachePath != "" {
		if err := saveCache(s.cachePath, sn.m, sn.version); err != nil {
			s.log.Warn("could not write the last-known-good manifest", "err", err)
		}
	}
	if s.cfg.OnApply != nil {
		s.cfg.OnApply(sn.m, sn.version)
	}
	s.readyOnce.Do(func() { close(s.ready) })
}

// subscribe calls fn with every manifest applied from now on, and at once
// with the one in use, if any.
func (s *Sync) subscribe(fn func(*manifest.Manifest, int64)) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.listeners = append(s.listeners, fn)
	if sn := s.cur.Load(); sn != nil {
		fn(sn.m, sn.version)
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

var errTooLarge = errors.New("answer too large")

// readBounded reads at most limit bytes of r; more is an error. size, the
// length announced (an answer's Content-Length; -1 or 0 when unknown), sizes
// the buffer once instead of growing it from 512 bytes.
func readBounded(r io.Reader, limit, size int64) ([]byte, error) {
	n := int64(512)
	if size > 0 && size <= limit {
		n = size + 1 // +1: the read that meets the end needs room
	}
	b := make([]byte, 0, n)
	r = io.LimitReader(r, limit+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w (over %d bytes)", errTooLarge, limit)
	}
	return b, nil
}

// answerErr describes a non-success answer by its status and error text.
func answerErr(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := http.StatusText(status)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return fmt.Errorf("mothership answered %d: %s", status, truncate(msg, maxReasonLen))
}

// sameJSON reports whether a and b are the same bytes, or the same JSON once
// insignificant space is removed (the same manifest served pretty and
// compact). It is asked only when the version did not change.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

// rejectReason makes a header-safe one-line summary of a validation error.
func rejectReason(err error) string {
	msg := err.Error()
	var inv *manifest.InvalidError
	if errors.As(err, &inv) && len(inv.Problems) > 0 {
		msg = inv.Problems[0].String()
		if n := len(inv.Problems) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more)", n)
		}
	}
	return truncate(msg, maxReasonLen)
}

// truncate keeps at most n bytes of printable ASCII, replacing anything else,
// so the result is safe in a header or a log line.
func truncate(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}
