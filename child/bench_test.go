package child

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// benchHandler does what a QB endpoint does per call: decode the envelope,
// run a trivial function, encode the job answer.
func benchHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			Input struct {
				FunctionName string            `json:"function_name"`
				Args         []json.RawMessage `json:"args"`
			} `json:"input"`
		}
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil || len(env.Input.Args) != 1 {
			wire.WriteError(w, 400, "bad envelope")
			return
		}
		var in embedIn
		if err := json.Unmarshal(env.Input.Args[0], &in); err != nil {
			wire.WriteError(w, 400, err.Error())
			return
		}
		wire.WriteJSON(w, 200, map[string]any{"id": "j", "status": "COMPLETED",
			"output": map[string]any{"success": true, "json_result": embedOut{Vector: []float64{float64(len(in.Text)), 1, 2}}}})
	})
}

// rawCall is the baseline: the same JSON posted with a plain net/http
// client, the answer decoded the same way, nothing else.
func rawCall(client *http.Client, url string, in embedIn, out *embedOut) error {
	body, err := json.Marshal(map[string]any{"input": map[string]any{"function_name": "embed",
		"execution_type": "function", "args": []any{in}, "kwargs": map[string]any{}, "serialization_format": "json"}})
	if err != nil {
		return err
	}
	resp, err := client.Post(url+"/runsync", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var job struct {
		Status string `json:"status"`
		Output struct {
			JSONResult json.RawMessage `json:"json_result"`
		} `json:"output"`
	}
	if err := json.Unmarshal(data, &job); err != nil {
		return err
	}
	return json.Unmarshal(job.Output.JSONResult, out)
}

func BenchmarkRemoteQB(b *testing.B) {
	srv, client := startServer(b, benchHandler())
	iv := NewInvoker(InvokerConfig{APIKey: "k", Client: client, Logger: quietLogger()})
	tg := &Target{Function: "embed", Resource: "embedder", URLs: []string{srv.URL}, qbHead: wire.JobRequestHead("embed")}
	in := embedIn{Text: "the quick brown fox"}
	ctx := context.Background()

	rawTr := wire.NewTransport()
	raw := &http.Client{Transport: rawTr}
	defTr := &http.Transport{} // Go's defaults: 2 idle connections per host
	def := &http.Client{Transport: defTr}
	b.Cleanup(func() { rawTr.CloseIdleConnections(); defTr.CloseIdleConnections() })

	invoke := func(b *testing.B) {
		var out embedOut
		if err := iv.Invoke(ctx, tg, in, &out); err != nil {
			b.Fatal(err)
		}
	}
	rawFn := func(c *http.Client) func(b *testing.B) {
		return func(b *testing.B) {
			var out embedOut
			if err := rawCall(c, srv.URL, in, &out); err != nil {
				b.Fatal(err)
			}
		}
	}
	cases := []struct {
		name string
		call func(b *testing.B)
	}{
		{"invoker", invoke},
		{"raw-tuned-transport", rawFn(raw)},
		{"raw-default-transport", rawFn(def)},
	}
	for _, c := range cases {
		b.Run("c1/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.call(b)
			}
		})
	}
	for _, c := range cases {
		b.Run("c64/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/runtimeProcs()))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.call(b)
				}
			})
		})
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkSyncApply is a child's cost of one new manifest version in which
// only a top-level value changed (what the propagation figure publishes):
// 30 functions on 3 resources, handled as the answer of a long poll.
func BenchmarkSyncApply(b *testing.B) {
	m, err := manifest.Parse(benchManifest(30))
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewSync(Config{Identity: "res0", Instance: "bench", MothershipURL: "http://127.0.0.1:1", Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i], _ = m.WithTop("generated_at", strconv.Itoa(i)).MarshalJSON()
	}
	b.ReportAllocs()
	v := int64(1)
	for b.Loop() {
		h := http.Header{wire.HeaderManifestVersion: {strconv.FormatInt(v, 10)}}
		s.handle(http.StatusOK, h, bodies[v%int64(len(bodies))], 0)
		v++
	}
	if s.Version() != v-1 {
		b.Fatalf("applied version %d, want %d", s.Version(), v-1)
	}
}

// benchManifest is a valid manifest of n functions, ten per resource.
func benchManifest(n int) []byte {
	resources := map[string]any{}
	registry := map[string]string{}
	for i := range n {
		rn := "res" + strconv.Itoa(i/10)
		r, ok := resources[rn].(map[string]any)
		if !ok {
			r = map[string]any{"resource_type": "LiveServerless", "workersMax": 3, "env": map[string]string{"LOG_LEVEL": "info"},
				"functions": []any{}}
			resources[rn] = r
		}
		fn := "fn_" + strconv.Itoa(i)
		r["functions"] = append(r["functions"].([]any), map[string]any{"name": fn, "module": "example.com/app", "is_async": false, "is_class": false})
		registry[fn] = rn
	}
	data, _ := json.Marshal(map[string]any{"version": "1.0", "project_name": "bench", "generated_at": "0",
		"resources": resources, "function_registry": registry})
	return data
}
