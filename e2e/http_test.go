package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	msapi "github.com/flash-go/flash/mothership"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// client makes every request of the suite. Its timeout is a backstop: each
// test bounds its own waits.
var client = &http.Client{Timeout: 30 * time.Second}

// response is an HTTP answer, read whole.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.Code, bytes.TrimSpace(r.Body))
}

// decode unmarshals the body into v, failing the test when it does not fit.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

// send makes one request. body is sent as is when it is a string or []byte,
// JSON-encoded otherwise, nothing when nil; key, when set, goes as a bearer
// token; hdr are "Name: value" pairs.
func send(method, url, key string, body any, hdr ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	return response{Code: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// mustSend is send failing the test on a transport error.
func mustSend(t testing.TB, method, url, key string, body any, hdr ...string) response {
	t.Helper()
	r, err := send(method, url, key, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// waitPing waits until base/ping answers 200.
func waitPing(t testing.TB, base string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, base+"/ping answers 200", func() error {
		r, err := send(http.MethodGet, base+"/ping", "", nil)
		if err != nil {
			return err
		}
		if r.Code != http.StatusOK {
			return errors.New(r.String())
		}
		return nil
	})
}

// envelope is a /run or /runsync body calling fn with in.
func envelope(fn string, in any) map[string]any {
	return map[string]any{"input": map[string]any{"function_name": fn, "args": []any{in}}}
}

// job is a Runpod job answer (/runsync, /status/{id}).
type job struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Output *struct {
		Success    bool            `json:"success"`
		JSONResult json.RawMessage `json:"json_result"`
		Error      string          `json:"error"`
		ErrorType  string          `json:"error_type"`
	} `json:"output"`
}

// result decodes a completed job's json_result into v.
func (j job) result(t testing.TB, v any) {
	t.Helper()
	if j.Status != "COMPLETED" || j.Output == nil {
		t.Fatalf("job %s is %s, not COMPLETED with output: %+v", j.ID, j.Status, j)
	}
	if err := json.Unmarshal(j.Output.JSONResult, v); err != nil {
		t.Fatalf("job %s: decode json_result %s: %v", j.ID, j.Output.JSONResult, err)
	}
}

// runsync calls fn with in at url (a /runsync URL) and returns the job,
// failing the test unless the answer is 200.
func runsync(t testing.TB, url, fn string, in any, hdr ...string) job {
	t.Helper()
	r := mustSend(t, http.MethodPost, url, apiKey, envelope(fn, in), hdr...)
	if r.Code != http.StatusOK {
		t.Fatalf("POST %s %s: %s", url, fn, r)
	}
	var j job
	r.decode(t, &j)
	return j
}

// The pipeline demo's types, as the tests read them.
type (
	textIn struct {
		Text string `json:"text"`
	}
	embedOut struct {
		Vector   []float64 `json:"vector"`
		ServedBy string    `json:"served_by"`
	}
	processOut struct {
		Summary  string            `json:"summary"`
		Words    int               `json:"words"`
		Vector   []float64         `json:"vector"`
		ServedBy map[string]string `json:"served_by"`
	}
)

const sampleText = "The quick brown fox jumps over the lazy dog. It was not amused."

// process calls the pipeline's POST /process on an api endpoint (or a
// standalone process) and returns the result.
func process(base string) (processOut, error) { return processWith(base) }

// mustProcess is process failing the test, and checking who served each step.
func mustProcess(t testing.TB, base string, servedBy map[string]string) {
	t.Helper()
	out, err := process(base)
	if err != nil {
		t.Fatal(err)
	}
	for step, want := range servedBy {
		if got := out.ServedBy[step]; got != want {
			t.Errorf("POST %s/process: %s served by %q, want %q (all: %v)", base, step, got, want, out.ServedBy)
		}
	}
}

// pipelineServedBy is who serves each step of the deployed pipeline.
var pipelineServedBy = map[string]string{"process": "api", "embed": "embedder", "summarize": "summarizer", "count_words": "summarizer"}

// status is GET /flash/status (SPEC §4.4).
type status = msapi.Status

// instanceOf returns the report of instance id.
func instanceOf(s status, id string) (msapi.InstanceStatus, bool) {
	i := slices.IndexFunc(s.Instances, func(i msapi.InstanceStatus) bool { return i.Instance == id })
	if i < 0 {
		return msapi.InstanceStatus{}, false
	}
	return s.Instances[i], true
}

// mothership is a mothership process the test runs, restartable on its port.
type mothership struct {
	w    *world
	url  string
	env  []string
	proc *proc
}

// startMothership runs w's app as a mothership (local provider unless env
// says otherwise) with its state in w.statePath().
func (w *world) startMothership(env ...string) *mothership {
	w.t.Helper()
	return w.startMothershipOn(freePort(w.t), env...)
}

// startMothershipOn is startMothership on a chosen port.
func (w *world) startMothershipOn(port int, env ...string) *mothership {
	w.t.Helper()
	m := &mothership{w: w, url: "http://127.0.0.1:" + strconv.Itoa(port)}
	m.env = append([]string{
		"FLASH_IS_MOTHERSHIP=true", "PORT=" + strconv.Itoa(port), "FLASH_API_KEY=" + apiKey,
		"FLASH_STATE_URL=sqlite://" + w.statePath(),
	}, env...)
	m.start(w.t)
	return m
}

// start (re)starts the mothership process on its port and waits for /ping.
func (m *mothership) start(t testing.TB) {
	t.Helper()
	m.proc = m.w.start("mothership", m.env...)
	waitPing(t, m.url, 20*time.Second)
}

// kill ends the mothership with SIGKILL: no shutdown of any kind.
func (m *mothership) kill(t testing.TB) { m.proc.kill(t) }

// status reads GET /flash/status.
func (m *mothership) status(t testing.TB) status {
	t.Helper()
	r := mustSend(t, http.MethodGet, m.url+"/flash/status", apiKey, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("GET /flash/status: %s", r)
	}
	var s status
	r.decode(t, &s)
	return s
}

// deployedOK are the statuses of a resource that serves.
var deployedOK = []string{"deployed", "updated"}

// waitDeployed waits until every named resource is deployed with a URL and
// every live endpoint recorded in the state store has applied the published
// version, and returns that status.
func (m *mothership) waitDeployed(t testing.TB, timeout time.Duration, names ...string) status {
	t.Helper()
	var s status
	eventually(t, timeout, fmt.Sprintf("%v deployed and every instance on the latest version", names), func() error {
		r, err := send(http.MethodGet, m.url+"/flash/status", apiKey, nil)
		if err != nil {
			return err
		}
		s = status{}
		if err := json.Unmarshal(r.Body, &s); err != nil {
			return fmt.Errorf("%w: %s", err, r)
		}
		for _, n := range names {
			rs, ok := s.Resources[n]
			if !ok || !slices.Contains(deployedOK, rs.Status) || rs.EndpointURL == "" {
				return fmt.Errorf("resource %s: %+v", n, rs)
			}
		}
		return m.synced(s, s.Version)
	})
	return s
}

// synced checks that every endpoint the state store records reports version
// as applied in s.
func (m *mothership) synced(s status, version int64) error {
	eps, err := m.w.endpoints()
	if err != nil {
		return err
	}
	if len(eps) == 0 {
		return errors.New("no endpoint recorded yet")
	}
	for _, e := range eps {
		in, ok := instanceOf(s, e.ID)
		if !ok {
			return fmt.Errorf("instance %s (%s) has not reported yet", e.ID, e.Resource)
		}
		if in.AppliedVersion != version {
			return fmt.Errorf("instance %s applied version %d, want %d", e.ID, in.AppliedVersion, version)
		}
	}
	return nil
}

// event is one NDJSON line of POST /flash/deploy.
type event struct {
	Resource     string   `json:"resource"`
	Action       string   `json:"action"`
	Step         string   `json:"step"`
	Status       string   `json:"status"`
	EndpointURLs []string `json:"endpoint_urls"`
	Error        string   `json:"error"`
	Version      int64    `json:"version"`
}

// report is the last line of POST /flash/deploy.
type report struct {
	Version   int64 `json:"version"`
	Resources []struct {
		Name         string   `json:"name"`
		Action       string   `json:"action"`
		Status       string   `json:"status"`
		EndpointURLs []string `json:"endpoint_urls"`
		Error        string   `json:"error"`
	} `json:"resources"`
	Deploys   int      `json:"deploys"`
	Undeploys int      `json:"undeploys"`
	Errors    []string `json:"errors"`
}

// resource returns the report of name, failing the test when it is missing.
func (r report) resource(t testing.TB, name string) (action, status, errMsg string, urls []string) {
	t.Helper()
	for _, rr := range r.Resources {
		if rr.Name == name {
			return rr.Action, rr.Status, rr.Error, rr.EndpointURLs
		}
	}
	t.Fatalf("report has no resource %s: %+v", name, r)
	return
}

// deploy posts mf to /flash/deploy and reads the progress stream; onEvent
// (when set) sees each event as it arrives.
func (m *mothership) deploy(t testing.TB, mf []byte, onEvent func(event, time.Time)) report {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, m.url+"/flash/deploy", bytes.NewReader(mf))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	start := time.Now()
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("POST /flash/deploy: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /flash/deploy: %d %s", resp.StatusCode, body)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var line struct {
			Report *report `json:"report"`
			event
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("POST /flash/deploy: bad line %q: %v", sc.Text(), err)
		}
		if line.Report != nil {
			return *line.Report
		}
		t.Logf("deploy +%s: %s %s %s %s %v %s", time.Since(start).Round(time.Millisecond), line.Resource, line.Action,
			line.Step, line.Status, line.EndpointURLs, line.Error)
		if onEvent != nil {
			onEvent(line.event, time.Now())
		}
	}
	t.Fatalf("POST /flash/deploy: the stream ended without a report (%v)", sc.Err())
	return report{}
}

// appManifest is the app's own manifest (BIN --flash-manifest), decoded with
// numbers kept as they are.
func (w *world) appManifest(t testing.TB) map[string]any {
	t.Helper()
	cmd := exec.Command(w.bin, "--flash-manifest")
	cmd.Env = baseEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --flash-manifest: %v", w.bin, err)
	}
	return decodeJSON(t, out)
}

func decodeJSON(t testing.TB, data []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return m
}

func encodeJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// object returns m[key] as an object, failing the test when it is not one.
func object(t testing.TB, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("%q is not an object in %v", key, m)
	}
	return o
}
