package runpodemu

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validQueue() map[string]any {
	return map[string]any{"name": "sdxl", "type": "QUEUE", "image": "ghcr.io/acme/sdxl:1",
		"gpu": map[string]any{"pools": []string{"ADA_24"}}, "scaling": map[string]any{"type": "QUEUE_DELAY", "queueDelay": 2.5}}
}

func with(base map[string]any, kv ...any) map[string]any {
	out := maps.Clone(base)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestCreateEndpointValidation(t *testing.T) {
	e := startEmu(t, testConfig(t))
	v := validQueue()
	tests := []struct {
		name   string
		body   any
		status int
		detail string // part of an error entry or the detail
	}{
		{"not json", "{", 400, "not valid JSON"},
		{"not an object", "[]", 422, "expected object"},
		{"missing name", with(v, "name", nil), 422, "missing property 'name'"},
		{"missing type", with(v, "type", nil), 422, "missing property 'type'"},
		{"missing scaling", with(v, "scaling", nil), 422, "missing property 'scaling'"},
		{"missing image without template", with(v, "image", nil), 422, "missing property 'image'"},
		{"unknown field (v1 name)", with(v, "workersMax", 3), 422, "additional properties 'workersMax'"},
		{"bad type", with(v, "type", "LB"), 422, "$.type"},
		{"empty name", with(v, "name", ""), 422, "$.name"},
		{"long name", with(v, "name", strings.Repeat("n", 192)), 422, "$.name"},
		{"queue delay too small", with(v, "scaling", map[string]any{"type": "QUEUE_DELAY", "queueDelay": 0.4}), 422, "queueDelay"},
		{"scaling variant mixed", with(v, "scaling", map[string]any{"type": "QUEUE_DELAY", "queueDelay": 1, "requestCount": 2}), 422, "'requestCount'"},
		{"request count zero", with(v, "scaling", map[string]any{"type": "REQUEST_COUNT", "requestCount": 0}), 422, "requestCount"},
		{"LB with queue delay", with(v, "type", "LOAD_BALANCER"), 422, "REQUEST_COUNT"},
		{"idle timeout with request count", with(v, "scaling", map[string]any{"type": "REQUEST_COUNT", "requestCount": 2},
			"workers", map[string]any{"idleTimeout": 5}), 422, "idleTimeout"},
		{"idle timeout out of range", with(v, "workers", map[string]any{"idleTimeout": 3601}), 422, "idleTimeout"},
		{"negative workers", with(v, "workers", map[string]any{"min": -1}), 422, "workers.min"},
		{"min above max", with(v, "workers", map[string]any{"min": 4, "max": 3}), 400, "above workers.max"},
		{"gpu and cpu", with(v, "cpu", []any{map[string]any{"id": "cpu3c", "vcpuCount": 2}}), 400, "exactly one of gpu or cpu"},
		{"neither gpu nor cpu", with(v, "gpu", nil), 400, "exactly one of gpu or cpu"},
		{"unknown pool", with(v, "gpu", map[string]any{"pools": []string{"NVIDIA GeForce RTX 4090"}}), 422, "unknown pool"},
		{"empty pools", with(v, "gpu", map[string]any{"pools": []string{}}), 422, "at least 1"},
		{"excluded type outside pools", with(v, "gpu", map[string]any{"pools": []string{"ADA_24"}, "excludedTypes": []string{"NVIDIA A40"}}), 400, "excludedTypes"},
		{"nothing remains", with(v, "gpu", map[string]any{"pools": []string{"ADA_24"}, "excludedTypes": []string{"NVIDIA GeForce RTX 4090"}}), 400, "no GPU type"},
		{"both cuda fields", with(v, "gpu", map[string]any{"pools": []string{"ADA_24"}, "allowedCudaVersions": []string{"12.4"}, "minCudaVersion": "12.1"}), 400, "cannot both"},
		{"bad cuda", with(v, "gpu", map[string]any{"pools": []string{"ADA_24"}, "minCudaVersion": "twelve"}), 422, "minCudaVersion"},
		{"gpu count zero", with(v, "gpu", map[string]any{"pools": []string{"ADA_24"}, "count": 0}), 422, "count"},
		{"cpu flavor", with(v, "gpu", nil, "cpu", []any{map[string]any{"id": "cpu9x", "vcpuCount": 2}}), 422, "$.cpu[0].id"},
		{"cpu not power of two", with(v, "gpu", nil, "cpu", []any{map[string]any{"id": "cpu3c", "vcpuCount": 6}}), 422, "power of two"},
		{"cpu duplicate", with(v, "gpu", nil, "cpu", []any{map[string]any{"id": "cpu3c", "vcpuCount": 2}, map[string]any{"id": "cpu3c", "vcpuCount": 2}}), 422, "duplicate"},
		{"bad data center", with(v, "dataCenterIds", []string{"MARS-1"}), 422, "data center"},
		{"bad flashboot", with(v, "flashboot", "ON"), 422, "flashboot"},
		{"timeout too short", with(v, "timeout", 1000), 422, "timeout"},
		{"bad port", with(v, "ports", []string{"8000"}), 422, "port/http"},
		{"env not strings", with(v, "env", map[string]any{"A": 1}), 422, "$.env"},
		{"unknown template", with(v, "image", nil, "templateId", "nope"), 404, "template not found"},
		{"unknown volume", with(v, "networkVolumes", []string{"nope"}), 400, "network volume"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ans := call(t, e, "POST", "/v2/serverless", tt.body)
			if st != tt.status {
				t.Fatalf("status %d, want %d: %v", st, tt.status, ans)
			}
			if ans["status"] != float64(tt.status) || ans["title"] == nil {
				t.Errorf("not a problem+json body: %v", ans)
			}
			text := ans["detail"].(string)
			if errs, ok := ans["errors"].([]any); ok {
				for _, x := range errs {
					text += " | " + x.(string)
				}
			}
			if !strings.Contains(text, tt.detail) {
				t.Errorf("answer %q does not mention %q", text, tt.detail)
			}
			if _, list := call(t, e, "GET", "/v2/serverless", nil); len(list["endpoints"].([]any)) != 0 {
				t.Errorf("a refused create left an endpoint behind")
			}
		})
	}
}

func TestEndpointDefaultsAndLifecycle(t *testing.T) {
	e := startEmu(t, testConfig(t))
	st, ep := call(t, e, "POST", "/v2/serverless", validQueue())
	if st != 201 {
		t.Fatalf("create: %d %v", st, ep)
	}
	id := ep["id"].(string)
	w := ep["workers"].(map[string]any)
	if w["min"] != 0.0 || w["max"] != 3.0 || w["idleTimeout"] != 10.0 || ep["timeout"] != 300000.0 || ep["flashboot"] != "OFF" {
		t.Errorf("defaults: workers %v timeout %v flashboot %v", w, ep["timeout"], ep["flashboot"])
	}
	g := ep["gpu"].(map[string]any)
	if g["count"] != 1.0 || g["minCudaVersion"] != nil {
		t.Errorf("gpu defaults: %v", g)
	}
	urls := ep["requestUrls"].(map[string]any)
	if urls["runSync"] != e.URL()+"/v2/"+id+"/runsync" || urls["status"] != e.URL()+"/v2/"+id+"/status/{job_id}" {
		t.Errorf("requestUrls: %v", urls)
	}
	if st, got := call(t, e, "GET", "/v2/serverless/"+id, nil); st != 200 || got["name"] != "sdxl" {
		t.Errorf("get: %d %v", st, got)
	}
	// A scaling change reaches the autoscaler without a release; an env
	// change makes one.
	st, got := call(t, e, "PATCH", "/v2/serverless/"+id, map[string]any{"workers": map[string]any{"min": 0, "max": 5}})
	if st != 200 || got["workers"].(map[string]any)["max"] != 5.0 {
		t.Fatalf("patch workers: %d %v", st, got)
	}
	if _, rel := call(t, e, "GET", "/v2/serverless/"+id+"/releases", nil); rel["endpointVersion"] != 1.0 {
		t.Errorf("scaling change made a release: %v", rel)
	}
	call(t, e, "PATCH", "/v2/serverless/"+id, map[string]any{"env": map[string]string{"A": "1"}})
	_, rel := call(t, e, "GET", "/v2/serverless/"+id+"/releases", nil)
	if rel["endpointVersion"] != 2.0 || len(rel["releases"].([]any)) != 2 {
		t.Errorf("env change: %v", rel)
	}
	// type is not settable; a refused patch changes nothing.
	if st, _ := call(t, e, "PATCH", "/v2/serverless/"+id, map[string]any{"type": "LOAD_BALANCER", "name": "x"}); st != 422 {
		t.Errorf("patch type: %d", st)
	}
	if st, _ := call(t, e, "PATCH", "/v2/serverless/"+id, map[string]any{"cpu": []any{map[string]any{"id": "cpu3c", "vcpuCount": 2}}}); st != 400 {
		t.Errorf("patch compute family: %d", st)
	}
	if _, got := call(t, e, "GET", "/v2/serverless/"+id, nil); got["name"] != "sdxl" {
		t.Errorf("refused patch changed the endpoint: %v", got["name"])
	}
	if st, _ := call(t, e, "DELETE", "/v2/serverless/"+id, nil); st != 204 {
		t.Errorf("delete: %d", st)
	}
	if st, _ := call(t, e, "GET", "/v2/serverless/"+id, nil); st != 404 {
		t.Errorf("get after delete: %d", st)
	}
	if st, _ := call(t, e, "DELETE", "/v2/serverless/"+id, nil); st != 404 {
		t.Errorf("second delete: %d", st)
	}
}

func TestAuth(t *testing.T) {
	e := startEmu(t, testConfig(t))
	for _, auth := range []string{"", "Bearer wrong", "test-key"} {
		st, ans := callKey(t, e, auth, "GET", "/v2/serverless", nil)
		if st != 401 || ans["status"] != 401.0 {
			t.Errorf("management with %q: %d %v", auth, st, ans)
		}
	}
	// The job API takes Bearer or the raw key (RUNPOD.md §1).
	id := queueEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 0, "max": 0}})
	for auth, want := range map[string]int{"": 401, "Bearer nope": 401, "Bearer test-key": 200, "test-key": 200} {
		if st, _ := callKey(t, e, auth, "GET", "/v2/"+id+"/health", nil); st != want {
			t.Errorf("health with %q: %d, want %d", auth, st, want)
		}
	}
	// The worker API takes only a worker's own key.
	if st, ans := callKey(t, e, "test-key", "GET", "/v2/"+id+"/job-take/w1", nil); st != 401 || ans["error"] == nil {
		t.Errorf("job-take with the account key: %d %v", st, ans)
	}
}

func TestTemplates(t *testing.T) {
	e := startEmu(t, testConfig(t))
	tmpl := map[string]any{"name": "worker", "image": "acme/w:1", "serverless": true, "args": "run-me",
		"env": map[string]string{"A": "t", "B": "t"}, "allowedCudaVersions": []string{"12.4"}}
	st, tp := call(t, e, "POST", "/v2/templates", tmpl)
	if st != 201 || tp["startSsh"] != true || tp["category"] != "NVIDIA" {
		t.Fatalf("create template: %d %v", st, tp)
	}
	tid := tp["id"].(string)
	for name, c := range map[string]struct {
		body   any
		status int
	}{
		"duplicate name":   {tmpl, 400},
		"missing image":    {map[string]any{"name": "x"}, 422},
		"network mount":    {map[string]any{"name": "y", "image": "i", "mounts": map[string]any{"network": map[string]any{}}}, 422},
		"bad category":     {map[string]any{"name": "z", "image": "i", "category": "TPU"}, 422},
		"readme is not v2": {map[string]any{"name": "r", "image": "i", "readme": "x"}, 422},
	} {
		if st, ans := call(t, e, "POST", "/v2/templates", c.body); st != c.status {
			t.Errorf("%s: %d, want %d: %v", name, st, c.status, ans)
		}
	}
	call(t, e, "POST", "/v2/templates", map[string]any{"name": "pod", "image": "i"})
	_, list := call(t, e, "GET", "/v2/templates", nil)
	if n := len(list["templates"].([]any)); n != 2 {
		t.Fatalf("templates listed: %d", n)
	}
	// An endpoint from the template takes its container fields; the body's
	// env wins per key; the CUDA list seeds the GPU selection.
	body := map[string]any{"name": "e", "type": "QUEUE", "templateId": tid, "env": map[string]string{"B": "body"},
		"gpu": map[string]any{"pools": []string{"AMPERE_24"}}, "scaling": map[string]any{"type": "REQUEST_COUNT", "requestCount": 1}}
	st, ep := call(t, e, "POST", "/v2/serverless", body)
	if st != 201 {
		t.Fatalf("endpoint from template: %d %v", st, ep)
	}
	env := ep["env"].(map[string]any)
	if ep["image"] != "acme/w:1" || ep["args"] != "run-me" || env["A"] != "t" || env["B"] != "body" {
		t.Errorf("template fields: %v", ep)
	}
	if cuda := ep["gpu"].(map[string]any)["allowedCudaVersions"].([]any); len(cuda) != 1 {
		t.Errorf("cuda not seeded: %v", cuda)
	}
	if _, ok := ep["workers"].(map[string]any)["idleTimeout"]; ok {
		t.Errorf("QUEUE + REQUEST_COUNT answers an idleTimeout")
	}
	// A non-serverless template cannot back an endpoint.
	_, pod := call(t, e, "GET", "/v2/templates", nil)
	podID := pod["templates"].([]any)[0].(map[string]any)["id"].(string)
	if st, _ := call(t, e, "POST", "/v2/serverless", with(body, "templateId", podID)); st != 422 {
		t.Errorf("non-serverless template: %d", st)
	}
	if st, _ := call(t, e, "DELETE", "/v2/templates/"+tid, nil); st != 400 {
		t.Errorf("delete a template in use: %d", st)
	}
	st, got := call(t, e, "PATCH", "/v2/templates/"+tid, map[string]any{"image": "acme/w:2"})
	if st != 200 || got["image"] != "acme/w:2" || got["args"] != "run-me" {
		t.Errorf("patch template: %d %v", st, got)
	}
	if _, again := call(t, e, "GET", "/v2/serverless/"+ep["id"].(string), nil); again["image"] != "acme/w:1" {
		t.Errorf("a template edit reached the endpoint: %v", again["image"])
	}
	call(t, e, "DELETE", "/v2/serverless/"+ep["id"].(string), nil)
	if st, _ := call(t, e, "DELETE", "/v2/templates/"+tid, nil); st != 204 {
		t.Errorf("delete a free template: %d", st)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.APIKey = "" // made and kept in the directory
	e, err := Start(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key := e.APIKey()
	_, tp := call(t, e, "POST", "/v2/templates", map[string]any{"name": "t", "image": "i", "serverless": true})
	_, vol := call(t, e, "POST", "/v2/network-volumes", map[string]any{"name": "v", "size": 10, "dataCenter": "EU-RO-1"})
	st, ep := call(t, e, "POST", "/v2/serverless", with(validQueue(), "networkVolumes", []string{vol["id"].(string)},
		"workers", map[string]any{"min": 0, "max": 0}))
	if st != 201 {
		t.Fatalf("create: %d %v", st, ep)
	}
	id := ep["id"].(string)
	job := submit(t, e, id, map[string]any{"x": 1})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := startEmu(t, cfg)
	if e2.APIKey() != key {
		t.Errorf("key changed across restart")
	}
	if st, got := call(t, e2, "GET", "/v2/serverless/"+id, nil); st != 200 || got["name"] != "sdxl" {
		t.Errorf("endpoint after restart: %d %v", st, got)
	}
	if st, _ := call(t, e2, "GET", "/v2/templates/"+tp["id"].(string), nil); st != 200 {
		t.Errorf("template after restart: %d", st)
	}
	if st, _ := call(t, e2, "GET", "/v2/network-volumes/"+vol["id"].(string), nil); st != 200 {
		t.Errorf("volume after restart: %d", st)
	}
	if st, got := call(t, e2, "GET", "/v2/"+id+"/status/"+job, nil); st != 200 || got["status"] != statusInQueue {
		t.Errorf("queued job after restart: %d %v", st, got)
	}
}

func TestVolumes(t *testing.T) {
	e := startEmu(t, testConfig(t))
	for name, body := range map[string]any{
		"too small":       map[string]any{"name": "v", "size": 5, "dataCenter": "EU-RO-1"},
		"no data center":  map[string]any{"name": "v", "size": 10},
		"bad data center": map[string]any{"name": "v", "size": 10, "dataCenter": "X"},
	} {
		if st, _ := call(t, e, "POST", "/v2/network-volumes", body); st != 422 {
			t.Errorf("%s: %d", name, st)
		}
	}
	st, v := call(t, e, "POST", "/v2/network-volumes", map[string]any{"name": "v", "size": 20, "dataCenter": "EU-RO-1"})
	if st != 201 || v["type"] != "STANDARD" {
		t.Fatalf("create volume: %d %v", st, v)
	}
	vid := v["id"].(string)
	if st, _ := call(t, e, "PATCH", "/v2/network-volumes/"+vid, map[string]any{"size": 10}); st != 400 {
		t.Errorf("shrink: %d", st)
	}
	if st, got := call(t, e, "PATCH", "/v2/network-volumes/"+vid, map[string]any{"size": 40}); st != 200 || got["size"] != 40.0 {
		t.Errorf("grow: %d %v", st, got)
	}
}

// TestFailedSaveChangesNothing: when the state file cannot be written, every
// create, patch and delete answers 500 and leaves the records as they were.
func TestFailedSaveChangesNothing(t *testing.T) {
	e := startEmu(t, testConfig(t))
	_, tp := call(t, e, "POST", "/v2/templates", map[string]any{"name": "tmpl", "image": "acme/w:1"})
	_, vol := call(t, e, "POST", "/v2/network-volumes", map[string]any{"name": "v", "size": 20, "dataCenter": "EU-RO-1"})
	_, ep := call(t, e, "POST", "/v2/serverless", validQueue())
	tid, vid, eid := tp["id"].(string), vol["id"].(string), ep["id"].(string)
	// A directory where the state file goes makes every save fail.
	if err := os.Remove(e.statePath()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.statePath(), 0o700); err != nil {
		t.Fatal(err)
	}
	lists := func() string {
		var all []map[string]any
		for _, p := range []string{"/v2/templates", "/v2/network-volumes", "/v2/serverless"} {
			_, got := call(t, e, "GET", p, nil)
			all = append(all, got)
		}
		b, _ := json.Marshal(all)
		return string(b)
	}
	before := lists()
	tests := []struct {
		method, path string
		body         any
	}{
		{"POST", "/v2/templates", map[string]any{"name": "other", "image": "acme/w:1"}},
		{"PATCH", "/v2/templates/" + tid, map[string]any{"image": "acme/w:2"}},
		{"DELETE", "/v2/templates/" + tid, nil},
		{"POST", "/v2/network-volumes", map[string]any{"name": "w", "size": 20, "dataCenter": "EU-RO-1"}},
		{"PATCH", "/v2/network-volumes/" + vid, map[string]any{"size": 40}},
		{"DELETE", "/v2/network-volumes/" + vid, nil},
		{"POST", "/v2/serverless", with(validQueue(), "name", "other")},
		{"PATCH", "/v2/serverless/" + eid, map[string]any{"image": "ghcr.io/acme/sdxl:2"}},
		{"DELETE", "/v2/serverless/" + eid, nil},
	}
	for _, tc := range tests {
		if st, ans := call(t, e, tc.method, tc.path, tc.body); st != 500 || !strings.Contains(fmt.Sprint(ans["detail"]), "saving state") {
			t.Errorf("%s %s: %d %v, want 500 saving state", tc.method, tc.path, st, ans)
		}
		if after := lists(); after != before {
			t.Fatalf("%s %s changed the records:\nbefore %s\nafter  %s", tc.method, tc.path, before, after)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(e.cfg.Dir, "volumes")); len(entries) != 1 {
		t.Errorf("volume directories after a failed create: %d, want 1", len(entries))
	}
}
