package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// remote measures cross-endpoint calls: Func.Call on a child serving
// "caller", routed by its manifest to a real child serving "worker" on
// loopback (talking HTTP), against a plain net/http POST of the same job
// JSON to a bare handler that decodes it, runs the same function and
// encodes the answer. Both clients pool connections alike; both servers run
// in the same http.Server settings, in this process. By default the callers
// (the caller child and the raw client) run in a helper process, so the
// servers run as they will; the same figures with the callers in this
// process follow with the suffix _inproc.
func (r *runner) remote(ctx context.Context) error {
	dir := filepath.Join(r.tmp, "remote")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	wApp, _ := benchApp()
	m, err := wApp.Manifest()
	if err != nil {
		return err
	}
	wPath := filepath.Join(dir, "worker.json")
	if err := manifest.Save(wPath, m, 0o644); err != nil {
		return err
	}
	worker, err := runApp(ctx, wApp, flash.Config{Role: flash.Child, Resource: "worker", ManifestPath: wPath, APIKey: apiKey, Logger: r.log})
	if err != nil {
		return err
	}
	defer worker.stop()
	bare, err := startServer(ctx, bareWorkHandler())
	if err != nil {
		return err
	}
	defer bare.stop()

	// Out of process: a helper runs both callers, one window per command.
	lg, err := r.startLoadHelper(worker.url, bare.url)
	if err != nil {
		return err
	}
	defer lg.stop()
	if err := r.remoteFigures(ctx, "", lg.load("flash"), lg.load("raw"), lg.load("rawspec")); err != nil {
		return err
	}
	if err := r.jobFigures(ctx, lg.load("job"), lg.load("raw")); err != nil {
		return err
	}

	viaFlash, raw, _, stop, err := remoteCallers(ctx, dir, worker.url, bare.url, r.log)
	defer stop()
	if err != nil {
		return err
	}
	inproc := func(call func(context.Context, int) error) loadFunc {
		return func(ctx context.Context, c int, window time.Duration) (loadResult, error) {
			return runLoad(ctx, c, window, call)
		}
	}
	return r.remoteFigures(ctx, "_inproc", inproc(viaFlash), inproc(raw), nil)
}

// loadFunc runs one window of closed-loop load with conc callers.
type loadFunc func(ctx context.Context, conc int, window time.Duration) (loadResult, error)

// remoteFigures measures flash against raw at each concurrency and reports
// the figures, their names ending in sfx, with the curves. specLoad, when
// not nil, is measured too at 1 and 64 callers: the raw client sending the
// call headers SPEC §5.3 requires (remote_protocol_ratio).
func (r *runner) remoteFigures(ctx context.Context, sfx0 string, flashLoad, rawLoad, specLoad loadFunc) error {
	concs := r.p.concurrencies
	rpsF, rpsR := make([]float64, len(concs)), make([]float64, len(concs))
	p99F, p99R := make([]float64, len(concs)), make([]float64, len(concs))
	where := map[string]string{"": "callers in a helper process", "_inproc": "callers in this process"}[sfx0]
	for i, c := range concs {
		r.progress("remote calls at concurrency %d, %s", c, where)
		measure := func(load loadFunc) func(context.Context) (loadResult, error) {
			return func(ctx context.Context) (loadResult, error) { return load(ctx, c, r.p.window) }
		}
		loads := []loadFunc{flashLoad, rawLoad}
		if specLoad != nil && (c == 1 || c == 64) {
			loads = append(loads, specLoad)
		}
		fns := make([]func(context.Context) (loadResult, error), len(loads))
		for j, load := range loads {
			if _, err := load(ctx, c, r.p.window/2); err != nil { // warm-up
				return fmt.Errorf("remote calls (%s): %w", []string{"through flash", "raw", "raw with the call headers"}[j], err)
			}
			fns[j] = measure(load)
		}
		all, err := rotate(ctx, r.p.rounds, fns...)
		if err != nil {
			return err
		}
		fs, rs := all[0], all[1]
		rpsF[i], rpsR[i] = medianOf(fs, loadResult.rps), medianOf(rs, loadResult.rps)
		p99F[i] = medianOf(fs, func(l loadResult) float64 { return l.pctMS(99) })
		p99R[i] = medianOf(rs, func(l loadResult) float64 { return l.pctMS(99) })
		if c == 1 || c == 64 {
			sfx := sfx0 + "_c" + strconv.Itoa(c)
			r.figure("remote_call_us"+sfx, medianOf(fs, loadResult.meanUS), "µs/call",
				fmt.Sprintf("mean latency of Func.Call to a real child over loopback, %d callers, %s", c, where))
			r.figure("raw_http_us"+sfx, medianOf(rs, loadResult.meanUS), "µs/call",
				fmt.Sprintf("mean latency of a raw net/http POST of the same JSON to a bare handler, %d callers (baseline)", c))
			r.figure("remote_overhead_ratio"+sfx, Median(ratios(fs, rs, loadResult.meanUS)), "×",
				"remote_call_us / raw_http_us, median of the per-round ratios")
			r.figure("remote_rps"+sfx, rpsF[i], "calls/s", "throughput of Func.Call at this concurrency")
			r.figure("raw_http_rps"+sfx, rpsR[i], "calls/s", "throughput of the raw baseline at this concurrency")
			if len(all) > 2 {
				r.figure("raw_spec_http_us"+sfx, medianOf(all[2], loadResult.meanUS), "µs/call",
					"mean latency of the raw POST carrying the call headers SPEC §5.3 requires (X-Request-Id, traceparent, X-Flash-Hops, X-Flash-Timeout) to the bare handler, which honours X-Flash-Timeout as its deadline")
				r.figure("remote_protocol_ratio"+sfx, Median(ratios(fs, all[2], loadResult.meanUS)), "×",
					"remote_call_us / raw_spec_http_us: flash's cost beyond what the protocol's own headers cost any client and server")
			}
		}
	}
	x := make([]float64, len(concs))
	for i, c := range concs {
		x[i] = float64(c)
	}
	r.curve(Curve{Name: "remote_throughput" + sfx0, Title: "Remote call throughput vs concurrency, " + where,
		XLabel: "concurrent callers", YLabel: "calls/s", LogX: true, X: x,
		Series: []Series{{"flash Func.Call", rpsF}, {"raw net/http + bare handler", rpsR}}})
	r.curve(Curve{Name: "remote_p99" + sfx0, Title: "Remote call p99 latency vs concurrency, " + where,
		XLabel: "concurrent callers", YLabel: "p99 latency (ms)", LogX: true, LogY: true, X: x,
		Series: []Series{{"flash Func.Call", p99F}, {"raw net/http + bare handler", p99R}}})
	return nil
}

// remoteCallers starts, in this process, the caller child routed to the
// worker at workerURL, and returns the calls measured: through flash, and
// raw to the bare handler at bareURL, without and with the call headers of
// SPEC §5.3. stop is never nil.
func remoteCallers(ctx context.Context, dir, workerURL, bareURL string, log *slog.Logger) (viaFlash, raw, rawSpec func(context.Context, int) error, stop func(), err error) {
	stop = func() {}
	cApp, fn := benchApp()
	m, err := cApp.Manifest()
	if err != nil {
		return nil, nil, nil, stop, err
	}
	cPath := filepath.Join(dir, "caller.json")
	routed := m.WithRuntime("worker", manifest.Runtime{EndpointURLs: []string{workerURL}, Status: manifest.StatusDeployed})
	if err := manifest.Save(cPath, routed, 0o644); err != nil {
		return nil, nil, nil, stop, err
	}
	caller, err := runApp(ctx, cApp, flash.Config{Role: flash.Child, Resource: "caller", ManifestPath: cPath, APIKey: apiKey, Logger: log})
	if err != nil {
		return nil, nil, nil, stop, err
	}
	client, closeIdle := newClient()
	stop = func() { closeIdle(); caller.stop() }
	in := benchInput
	viaFlash = func(ctx context.Context, _ int) error {
		out, err := fn.Call(ctx, in)
		if err != nil {
			return err
		}
		return checkOut(out, in)
	}
	rawCall := func(spec bool) func(context.Context, int) error {
		return func(ctx context.Context, _ int) error {
			out, err := rawPost(ctx, client, bareURL, in, spec)
			if err != nil {
				return err
			}
			return checkOut(out, in)
		}
	}
	raw, rawSpec = rawCall(false), rawCall(true)
	if err := viaFlash(ctx, 0); err != nil {
		return nil, nil, nil, stop, fmt.Errorf("remote call through flash: %w", err)
	}
	return viaFlash, raw, rawSpec, stop, nil
}

// rawEnvelope is the /runsync job body flash sends, written with encoding/json.
type rawEnvelope struct {
	Input struct {
		FunctionName        string   `json:"function_name"`
		ExecutionType       string   `json:"execution_type"`
		Args                []workIn `json:"args"`
		Kwargs              struct{} `json:"kwargs"`
		SerializationFormat string   `json:"serialization_format"`
	} `json:"input"`
}

type rawAnswer struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Output struct {
		Success    bool    `json:"success"`
		JSONResult workOut `json:"json_result"`
	} `json:"output"`
}

// rawPost is the baseline client: marshal, POST, read, unmarshal. With
// spec, it also sends the call headers SPEC §5.3 requires of every call,
// made as a caller makes them: a new request id and traceparent, one hop,
// and the remaining time of a 30 s deadline (Func.Call's default).
func rawPost(ctx context.Context, client *http.Client, base string, in workIn, spec bool) (workOut, error) {
	var env rawEnvelope
	env.Input.FunctionName, env.Input.ExecutionType, env.Input.SerializationFormat = "work", "function", "json"
	env.Input.Args = []workIn{in}
	body, err := json.Marshal(env)
	if err != nil {
		return workOut{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/runsync", bytes.NewReader(body))
	if err != nil {
		return workOut{}, err
	}
	req.Header.Set("Content-Type", wire.ContentTypeJSON)
	req.Header.Set(wire.HeaderAuthorization, "Bearer "+apiKey)
	if spec {
		rid, tp := wire.NewRequestIDAndTraceParent()
		req.Header.Set(wire.HeaderRequestID, rid)
		req.Header.Set(wire.HeaderTraceParent, tp)
		req.Header.Set(wire.HeaderHops, "1")
		dl, ok := ctx.Deadline()
		if !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			dl, _ = ctx.Deadline()
			req = req.WithContext(ctx)
		}
		req.Header.Set(wire.HeaderTimeout, wire.FormatTimeout(time.Until(dl)))
	}
	resp, err := client.Do(req)
	if err != nil {
		return workOut{}, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return workOut{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return workOut{}, fmt.Errorf("bare handler answered %d: %s", resp.StatusCode, data)
	}
	var ans rawAnswer
	if err := json.Unmarshal(data, &ans); err != nil {
		return workOut{}, err
	}
	return ans.Output.JSONResult, nil
}

// bareWorkHandler is the baseline server: check the key, take the
// caller's deadline from X-Flash-Timeout when sent (SPEC §5.3), decode the
// job, run work, encode the answer. No pool, ids, logs or metrics.
func bareWorkHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(wire.HeaderAuthorization) != "Bearer "+apiKey {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if d, ok, err := wire.ParseTimeout(r.Header.Get(wire.HeaderTimeout)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		} else if ok {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			r = r.WithContext(ctx)
		}
		var env rawEnvelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil || len(env.Input.Args) != 1 {
			http.Error(w, "bad job", http.StatusBadRequest)
			return
		}
		out, err := work(r.Context(), env.Input.Args[0])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var ans rawAnswer
		ans.ID, ans.Status, ans.Output.Success, ans.Output.JSONResult = "bare", "COMPLETED", true, out
		w.Header().Set("Content-Type", wire.ContentTypeJSON)
		json.NewEncoder(w).Encode(ans)
	})
}

// jobFigures measures async jobs (POST /run, then GET /status/{id} until
// final) against the same function over raw HTTP, at 64 callers in the
// helper process.
func (r *runner) jobFigures(ctx context.Context, jobLoad, rawLoad loadFunc) error {
	const c = 64
	r.progress("/run + /status jobs at concurrency %d", c)
	if _, err := jobLoad(ctx, c, r.p.window/2); err != nil {
		return fmt.Errorf("/run + /status: %w", err)
	}
	measure := func(load loadFunc) func(context.Context) (loadResult, error) {
		return func(ctx context.Context) (loadResult, error) { return load(ctx, c, r.p.window) }
	}
	js, rs, err := interleave(ctx, r.p.rounds, measure(jobLoad), measure(rawLoad))
	if err != nil {
		return err
	}
	r.figure("job_rps_c64", medianOf(js, loadResult.rps), "jobs/s", "POST /run then GET /status/{id} until COMPLETED on a real child, 64 callers in a helper process")
	r.figure("job_raw_ratio_c64", Median(ratios(js, rs, loadResult.rps)), "×", "job_rps / raw_http_rps (the same function over raw HTTP, same callers), median of the per-round ratios")
	return nil
}

// runJob runs one job through /run and polls /status until it is final.
func runJob(ctx context.Context, client *http.Client, base string, in workIn) error {
	arg, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var ref wire.JobRef
	body := wire.AppendJobRequest(nil, "work", arg)
	if err := postJSON(ctx, client, http.MethodPost, base+"/run", body, &ref); err != nil {
		return err
	}
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		var ans wire.JobAnswer
		if err := postJSON(ctx, client, http.MethodGet, base+"/status/"+ref.ID, nil, &ans); err != nil {
			return err
		}
		switch {
		case ans.Status == wire.StatusCompleted:
			return nil
		case wire.FinalStatus(ans.Status):
			return fmt.Errorf("job %s: %s %s", ref.ID, ans.Status, ans.Error)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// postJSON sends body (nil: none) with the bench key and decodes a 200 answer into out.
func postJSON(ctx context.Context, client *http.Client, method, url string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", wire.ContentTypeJSON)
	req.Header.Set(wire.HeaderAuthorization, "Bearer "+apiKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s answered %d: %s", method, url, resp.StatusCode, data)
	}
	return json.Unmarshal(data, out)
}
