package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
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
	r.figure("manifest_get_rps", medianOf(msRes, loadResult.rps), "req/s", "GET /manifest on a real mothership (auth, ids, logs, metrics, child reports), "+about)
	r.figure("raw_get_rps", medianOf(bareRes, loadResult.rps), "req/s", "the same bytes from a bare handler, same client (baseline), "+about)
	r.figure("manifest_get_ratio", Median(ratios(msRes, bareRes, loadResult.rps)), "×", "manifest_get_rps / raw_get_rps, median of the per-round ratios")

	return r.manifestSizes(ctx, publish, get, ms.url, bare.url)
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
