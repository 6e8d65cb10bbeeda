package runpodemu

import (
	"encoding/json"
	"testing"
)

// Every request decoder is fuzzed: none may panic, and whatever it accepts
// must satisfy the rules it enforces.

var fuzzTemplates = map[string]Template{
	"srv": {ID: "srv", Name: "srv", Image: "i", Serverless: true, Ports: []string{}, Env: map[string]string{"A": "1"}},
	"pod": {ID: "pod", Name: "pod", Image: "i"},
}

func fuzzLookup(id string) (Template, bool) { t, ok := fuzzTemplates[id]; return t, ok }

func checkAccepted(t *testing.T, ep Endpoint) {
	t.Helper()
	if ep.Name == "" || (ep.Type != typeQueue && ep.Type != typeLB) || ep.Workers.Min > ep.Workers.Max || ep.Workers.Min < 0 {
		t.Fatalf("accepted an invalid endpoint: %+v", ep)
	}
	if (ep.GPU == nil) == (ep.CPU == nil) {
		t.Fatalf("accepted an endpoint with gpu %v and cpu %v", ep.GPU, ep.CPU)
	}
	if err := policy(ep).Validate(); err != nil {
		t.Fatalf("accepted an invalid scaler: %v", err)
	}
	if ep.Type == typeLB && ep.Scaling.Type != scaleRequestCount {
		t.Fatalf("accepted a LB endpoint with %s", ep.Scaling.Type)
	}
	if _, err := json.Marshal(ep); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeEndpointCreate(f *testing.F) {
	f.Add([]byte(`{"name":"n","type":"QUEUE","image":"i","gpu":{"pools":["ADA_24"]},"scaling":{"type":"QUEUE_DELAY","queueDelay":1}}`))
	f.Add([]byte(`{"name":"n","type":"LOAD_BALANCER","templateId":"srv","cpu":[{"id":"cpu3c","vcpuCount":2}],"scaling":{"type":"REQUEST_COUNT","requestCount":2},"workers":{"min":1,"max":2,"idleTimeout":9}}`))
	f.Add([]byte(`{"name":"n","type":"QUEUE","templateId":"pod","gpu":{"pools":["AMPERE_24"],"excludedTypes":["NVIDIA L4"],"minCudaVersion":"12.4"},"scaling":{"type":"REQUEST_COUNT","requestCount":1}}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ep, _, perr := decodeEndpointCreate(body, fuzzLookup)
		if perr == nil {
			checkAccepted(t, ep)
		} else if perr.Status < 400 || perr.Status > 422 {
			t.Fatalf("status %d", perr.Status)
		}
	})
}

func FuzzDecodeEndpointPatch(f *testing.F) {
	base, _, perr := decodeEndpointCreate([]byte(`{"name":"n","type":"QUEUE","image":"i","gpu":{"pools":["ADA_24"]},"scaling":{"type":"QUEUE_DELAY","queueDelay":1}}`), fuzzLookup)
	if perr != nil {
		f.Fatal(perr)
	}
	f.Add([]byte(`{"workers":{"min":1,"max":5}}`))
	f.Add([]byte(`{"gpu":{"excludedTypes":["x"]},"env":{"A":"b"},"templateId":"srv"}`))
	f.Add([]byte(`{"scaling":{"type":"REQUEST_COUNT","requestCount":3},"cpu":[{"id":"cpu5c","vcpuCount":4}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before, _ := json.Marshal(base)
		ep, _, perr := decodeEndpointPatch(base, body, fuzzLookup)
		if after, _ := json.Marshal(base); string(before) != string(after) {
			t.Fatalf("the patch changed its input")
		}
		if perr == nil {
			checkAccepted(t, ep)
			if ep.Type != base.Type || (ep.GPU == nil) != (base.GPU == nil) {
				t.Fatalf("patch changed type or compute family")
			}
		}
	})
}

func FuzzDecodeTemplate(f *testing.F) {
	f.Add([]byte(`{"name":"t","image":"i","serverless":true,"mounts":{"persistent":{"size":20,"path":"/w"}}}`), true)
	f.Add([]byte(`{"env":{"A":"B"},"ports":["80/http"]}`), false)
	f.Fuzz(func(t *testing.T, body []byte, create bool) {
		cur := fuzzTemplates["srv"]
		tp, perr := decodeTemplate(cur, body, create)
		if perr == nil && (tp.Name == "" || tp.Image == "") {
			t.Fatalf("accepted a template without name or image: %+v", tp)
		}
	})
}

func FuzzDecodeVolume(f *testing.F) {
	f.Add([]byte(`{"name":"v","size":10,"dataCenter":"EU-RO-1"}`), true)
	f.Add([]byte(`{"size":5}`), false)
	f.Fuzz(func(t *testing.T, body []byte, create bool) {
		cur := Volume{ID: "v", Name: "v", Size: 20, DataCenter: "EU-RO-1", Type: "STANDARD"}
		v, perr := decodeVolume(cur, body, create)
		if perr == nil && (v.Size < 10 || v.Size > 4096 || v.Name == "" || (!create && v.Size < cur.Size)) {
			t.Fatalf("accepted %+v", v)
		}
	})
}

func FuzzDecodeRunRequest(f *testing.F) {
	f.Add([]byte(`{"input":{"a":1},"webhook":"http://x","policy":{"executionTimeout":6000,"ttl":20000,"lowPriority":true},"s3Config":{}}`))
	f.Add([]byte(`{"input":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, perr := decodeRunRequest(body)
		if perr != nil {
			return
		}
		if !json.Valid(req.Input) || req.TTL < minTTL || (req.ExecTimeout != 0 && req.ExecTimeout < minExecTimeout) {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func FuzzDecodeDone(f *testing.F) {
	f.Add([]byte(`{"output":{"x":1}}`))
	f.Add([]byte(`{"status":"IN_PROGRESS","output":"half"}`))
	f.Add([]byte(`{"error":{"type":"x"},"stopPod":true}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, perr := decodeDone(body)
		if perr == nil && d.output != nil && !json.Valid(d.output) {
			t.Fatalf("output %q is not JSON", d.output)
		}
	})
}
