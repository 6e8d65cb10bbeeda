package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// served is what a bare manifest handler answers with.
type served struct {
	body    []byte
	version string
	etag    string
}

// bareManifestHandler serves the same bytes and headers as the mothership,
// checking the key like it, and nothing else.
func bareManifestHandler(cur *atomic.Pointer[served]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(wire.HeaderAuthorization) != "Bearer "+apiKey {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		s := cur.Load()
		h := w.Header()
		h.Set(wire.HeaderManifestVersion, s.version)
		h.Set("Etag", s.etag)
		h.Set("Cache-Control", "no-cache")
		wire.WriteRawJSON(w, http.StatusOK, s.body)
	})
}

// getManifest is one child-like GET /manifest: key and report headers,
// body read to the end.
func getManifest(ctx context.Context, client *http.Client, base string, worker int) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/manifest", nil)
	if err != nil {
		return nil, nil, err
	}
	h := req.Header
	h.Set(wire.HeaderAuthorization, "Bearer "+apiKey)
	h.Set("Accept", wire.ContentTypeJSON)
	h.Set(wire.HeaderResource, "res0")
	h.Set(wire.HeaderInstance, "bench-"+strconv.Itoa(worker))
	h.Set(wire.HeaderAppliedVersion, "1")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s/manifest: %d %s", base, resp.StatusCode, body)
	}
	return body, resp.Header, nil
}

// manifestGet measures GET /manifest on a real mothership against a bare
// handler serving the same bytes (same client, same concurrency), then
// parse + validate + hash and GET latency against manifest size.
func (r *runner) manifestGet(ctx context.Context) error {
	dir := filepath.Join(r.tmp, "manifest")
	ms, err := startMothership(ctx, dir, r.log)
	if err != nil {
		return err
	}
	defer ms.stop()
	client, closeIdle := newClient()
	defer closeIdle()
	var cur atomic.Pointer[served]
	bare, err := startServer(ctx, bareManifestHandler(&cur))
	if err != nil {
		return err
	}
	defer bare.stop()

	// publish installs m on the mothership and the same bytes on the bare handler.
	publish := func(m *manifest.Manifest) (int, error) {
		if _, err := ms.ms.Publish(ctx, m); err != nil {
			return 0, err
		}
		body, h, err := getManifest(ctx, client, ms.url, 0)
		if err != nil {
			return 0, err
		}
		cur.Store(&served{body: body, version: h.Get(wire.HeaderManifestVersion), etag: h.Get("Etag")})
		return len(body), nil
	}
	get := func(base string, size int) func(ctx context.Context, w int) error {
		return func(ctx context.Context, w int) error {
			body, _, err := getManifest(ctx, client, base, w)
			if err == nil && len(body) != size {
				err = fmt.Errorf("GET %s/manifest: %d bytes, want %d", base, len(body), size)
			}
			return err
		}
	}

	_, m, err := genManifest(100)
	if err != nil {
		return err
	}
	size, err := publish(m)
	if err != nil {
		return err
	}
	c := r.p.getConc
	measure := func(base string) func(context.Context) (loadResult, error) {
		return func(ctx context.Context) (loadResult, error) { return runLoad(ctx, c, r.p.window, get(base, size)) }
	}
	for _, base := range []string{ms.url, bare.url} { // warm up
		if _, err := runLoad(ctx, c, r.p.window/2, get(base, size)); err != nil {
			return err
		}
	}
	msRes, bareRes, err := interleave(ctx, r.p.rounds, measure(ms.url), measure(bare.url))
	if err != nil {
		return err
	}
	about := fmt.Sprintf("%d concurrent clients, %d-function manifest (%d bytes)", c, 100, size)
	sfx := "_inproc"
	if wrk, err := exec.LookPath("wrk"); err != nil {
		sfx = ""
		r.note("manifest_get_*: wrk not found on PATH, so the load generator runs in this process")
	} else if err := r.wrkFigures(ctx, wrk, ms.url, bare.url); err != nil {
		return err
	}
	r.figure("manifest_get_rps"+sfx, medianOf(msRes, loadResult.rps), "req/s", "GET /manifest on a real mothership (auth, ids, logs, metrics, child reports), Go client in this process, "+about)
	r.figure("raw_get_rps"+sfx, medianOf(bareRes, loadResult.rps), "req/s", "the same bytes from a bare handler, same client (baseline), "+about)
	r.figure("manifest_get_ratio"+sfx, Median(ratios(msRes, bareRes, loadResult.rps)), "×", "manifest_get_rps / raw_get_rps, median of the per-round ratios")

	return r.manifestSizes(ctx, publish, get, ms.url, bare.url)
}

// wrkResult is one wrk run.
type wrkResult struct{ rps, p99MS float64 }

// wrkFigures measures GET /manifest with wrk (2 threads, 32 connections, a
// separate process) on the mothership and on the bare handler, interleaved.
func (r *runner) wrkFigures(ctx context.Context, wrk, msURL, bareURL string) error {
	window := max(time.Second, r.p.window.Round(time.Second))
	run := func(base string) func(context.Context) (wrkResult, error) {
		return func(ctx context.Context) (wrkResult, error) { return runWrk(ctx, wrk, base, window) }
	}
	ms, bare, err := interleave(ctx, r.p.rounds, run(msURL), run(bareURL))
	if err != nil {
		return err
	}
	rps := func(w wrkResult) float64 { return w.rps }
	p99 := func(w wrkResult) float64 { return w.p99MS }
	per := func(f func(wrkResult) float64) float64 {
		rs := make([]float64, len(ms))
		for i := range ms {
			rs[i] = f(ms[i]) / f(bare[i])
		}
		return Median(rs)
	}
	about := "wrk -t2 -c32, a separate process, 100-function manifest"
	r.figure("manifest_get_rps", medianOf(ms, rps), "req/s", "GET /manifest on a real mothership, "+about)
	r.figure("raw_get_rps", medianOf(bare, rps), "req/s", "the same bytes from a bare net/http handler (baseline), "+about)
	r.figure("manifest_get_ratio", per(rps), "×", "manifest_get_rps / raw_get_rps, median of the per-round ratios")
	r.figure("manifest_get_p99_ms", medianOf(ms, p99), "ms", "wrk's p99 latency of GET /manifest on the mothership")
	r.figure("raw_get_p99_ms", medianOf(bare, p99), "ms", "the same on the bare handler (baseline)")
	r.figure("manifest_get_p99_ratio", per(p99), "×", "manifest_get_p99_ms / raw_get_p99_ms, median of the per-round ratios")
	return nil
}

// runWrk runs wrk against base/manifest with the child headers and reads
// its requests/s and p99 latency.
func runWrk(ctx context.Context, wrk, base string, d time.Duration) (wrkResult, error) {
	out, err := exec.CommandContext(ctx, wrk, "-t2", "-c32", "-d"+strconv.Itoa(int(d.Seconds()))+"s", "--latency",
		"-H", wire.HeaderAuthorization+": Bearer "+apiKey, "-H", "Accept: "+wire.ContentTypeJSON,
		"-H", wire.HeaderResource+": res0", "-H", wire.HeaderInstance+": bench-wrk", "-H", wire.HeaderAppliedVersion+": 1",
		base+"/manifest").CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads "Requests/sec: N" and the "99% T" latency line of wrk's
// output; a run with non-2xx answers is an error.
func parseWrk(out string) (wrkResult, error) {
	var res wrkResult
	var haveRPS, haveP99 bool
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			res.rps, haveRPS = v, err == nil
		case len(f) >= 2 && f[0] == "99%":
			ms, ok := wrkMillis(f[1])
			res.p99MS, haveP99 = ms, ok
		case len(f) > 0 && f[0] == "Non-2xx":
			return res, fmt.Errorf("wrk: %s", strings.TrimSpace(line))
		}
	}
	if !haveRPS || !haveP99 {
		return res, fmt.Errorf("wrk: no requests/s or p99 in its output: %.400s", out)
	}
	return res, nil
}

// wrkMillis converts a wrk duration ("812.00us", "8.20ms", "1.02s") to ms.
func wrkMillis(s string) (float64, bool) {
	for _, u := range []struct {
		sfx string
		ms  float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}} {
		if v, ok := strings.CutSuffix(s, u.sfx); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f * u.ms, err == nil
		}
	}
	return 0, false
}

// manifestSizes is the size curve: parse + validate + hash (manifest.Parse)
// against json.Unmarshal into a map, and GET /manifest latency against the
// bare handler, one caller.
func (r *runner) manifestSizes(ctx context.Context, publish func(*manifest.Manifest) (int, error),
	get func(string, int) func(context.Context, int) error, msURL, bareURL string) error {
	sizes := r.p.sizes
	parseMS, stdMS := make([]float64, len(sizes)), make([]float64, len(sizes))
	getMS, bareMS := make([]float64, len(sizes)), make([]float64, len(sizes))
	for i, n := range sizes {
		r.progress("manifest of %d functions", n)
		data, m, err := genManifest(n)
		if err != nil {
			return err
		}
		timed := func(fn func() error) func(context.Context) (float64, error) {
			return func(ctx context.Context) (float64, error) {
				// Repeat until 20 ms have passed (bounded), for a stable mean.
				start := time.Now()
				k := 0
				for k < 10_000 && (k == 0 || time.Since(start) < 20*time.Millisecond) {
					if err := fn(); err != nil {
						return 0, err
					}
					k++
				}
				return float64(time.Since(start)) / float64(k) / float64(time.Millisecond), nil
			}
		}
		parse := timed(func() error { _, err := manifest.Parse(data); return err })
		std := timed(func() error { var v map[string]any; return json.Unmarshal(data, &v) })
		ps, ss, err := interleave(ctx, r.p.rounds, parse, std)
		if err != nil {
			return err
		}
		parseMS[i], stdMS[i] = Median(ps), Median(ss)
		if n == 1000 {
			r.figure("manifest_parse_ms_f1000", parseMS[i], "ms", "manifest.Parse (decode, validate, config hashes) of a 1,000-function manifest")
			r.figure("json_unmarshal_ms_f1000", stdMS[i], "ms", "encoding/json into map[string]any of the same bytes (baseline)")
			r.figure("manifest_parse_ratio_f1000", Median(perRound(ps, ss)), "×", "manifest_parse / json_unmarshal, median of the per-round ratios")
		}

		size, err := publish(m)
		if err != nil {
			return err
		}
		measure := func(base string) func(context.Context) (loadResult, error) {
			return func(ctx context.Context) (loadResult, error) { return runLoad(ctx, 1, r.p.sizeWindow, get(base, size)) }
		}
		gs, bs, err := interleave(ctx, r.p.rounds, measure(msURL), measure(bareURL))
		if err != nil {
			return err
		}
		med := func(l loadResult) float64 { return l.pctMS(50) }
		getMS[i], bareMS[i] = medianOf(gs, med), medianOf(bs, med)
	}
	x := make([]float64, len(sizes))
	for i, n := range sizes {
		x[i] = float64(n)
	}
	r.curve(Curve{Name: "manifest_size", Title: "Manifest cost vs size", XLabel: "functions in the manifest",
		YLabel: "milliseconds", LogX: true, LogY: true, X: x, Series: []Series{
			{"parse+validate+hash", parseMS}, {"json.Unmarshal (baseline)", stdMS},
			{"GET /manifest, mothership (p50)", getMS}, {"GET, bare handler (p50)", bareMS}}})
	return nil
}

// perRound divides a by b round by round.
func perRound(a, b []float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = a[i] / b[i]
	}
	return out
}
