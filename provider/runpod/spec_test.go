package runpod

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestRequest(t *testing.T) {
	tags := map[string]string{EnvApp: "shop", EnvResource: "r"}
	for _, tc := range []struct {
		name, config string
		check        func(t *testing.T, r EndpointRequest)
	}{
		{"queue defaults", `{"resource_type":"LiveServerless"}`, func(t *testing.T, r EndpointRequest) {
			if r.Type != TypeQueue || r.Scaling.Type != ScaleQueueDelay || *r.Scaling.QueueDelay != 4 || r.GPU.Pools[0] != "AMPERE_16" ||
				r.Workers.Min != 0 || r.Workers.Max != 3 || *r.Workers.IdleTimeout != 5 || r.CPU != nil || r.Image != testImage {
				t.Errorf("%+v", r)
			}
		}},
		{"gpu pools and exclusions", `{"gpuIds":"AMPERE_16, ADA_24,-NVIDIA RTX A4000","gpuCount":2,"workersMin":1,"workersMax":5}`, func(t *testing.T, r EndpointRequest) {
			want := &GPU{Pools: []string{"AMPERE_16", "ADA_24"}, ExcludedTypes: []string{"NVIDIA RTX A4000"}, Count: 2}
			if !reflect.DeepEqual(r.GPU, want) || r.Workers.Min != 1 || r.Workers.Max != 5 {
				t.Errorf("%+v %+v", r.GPU, r.Workers)
			}
		}},
		{"cpu type", `{"resource_type":"CpuLiveServerless"}`, func(t *testing.T, r EndpointRequest) {
			if r.GPU != nil || !reflect.DeepEqual(r.CPU, []CPU{{ID: "cpu3c", VCPUCount: 2}}) {
				t.Errorf("%+v %+v", r.GPU, r.CPU)
			}
		}},
		{"cpu instances", `{"instanceIds":["cpu5c-4-8","cpu3g"]}`, func(t *testing.T, r EndpointRequest) {
			if !reflect.DeepEqual(r.CPU, []CPU{{ID: "cpu5c", VCPUCount: 4}, {ID: "cpu3g", VCPUCount: 2}}) {
				t.Errorf("%+v", r.CPU)
			}
		}},
		{"load balanced", `{"resource_type":"LiveLoadBalancer","scalerType":"QUEUE_DELAY","scalerValue":2}`, func(t *testing.T, r EndpointRequest) {
			if r.Type != TypeLoadBalancer || r.Scaling.Type != ScaleRequests || *r.Scaling.RequestCount != 2 ||
				r.Ports[0] != "8080/http" || r.Env["PORT"] != "8080" || r.Env["HEALTH_CHECK_PATH"] != "/ping" {
				t.Errorf("%+v", r)
			}
		}},
		{"queue with request count has no idle timeout", `{"scalerType":"REQUEST_COUNT","scalerValue":3,"idleTimeout":30}`, func(t *testing.T, r EndpointRequest) {
			if r.Scaling.Type != ScaleRequests || r.Workers.IdleTimeout != nil {
				t.Errorf("%+v %+v", r.Scaling, r.Workers)
			}
		}},
		{"timeouts, flashboot, places, volume, env", `{"executionTimeoutMs":900000,"flashboot":true,"locations":"US-KS-2,EU-RO-1",
			"networkVolumeId":"vol1","idleTimeout":30,"env":{"MODEL":"m","FLASH_APP":"spoofed"},"imageName":"r/own@sha256:ff"}`, func(t *testing.T, r EndpointRequest) {
			if r.Timeout != 900000 || r.Flashboot != "FLASHBOOT" || !reflect.DeepEqual(r.DataCenterIDs, []string{"US-KS-2", "EU-RO-1"}) ||
				!reflect.DeepEqual(r.NetworkVolumes, []string{"vol1"}) || *r.Workers.IdleTimeout != 30 || r.Image != "r/own@sha256:ff" {
				t.Errorf("%+v", r)
			}
			if r.Env["MODEL"] != "m" || r.Env[EnvApp] != "shop" {
				t.Errorf("env %v: the resource's own, with flash's tags winning", r.Env)
			}
		}},
		{"min above max", `{"workersMin":4,"workersMax":2}`, func(t *testing.T, r EndpointRequest) {
			if r.Workers.Max != 4 {
				t.Errorf("%+v", r.Workers)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := request("flash-shop-r", testImage, json.RawMessage(tc.config), tags)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
	if _, err := request("n", "", json.RawMessage(`{}`), nil); err == nil || !strings.Contains(err.Error(), "--image") {
		t.Errorf("no image: %v", err)
	}
	if _, err := request("n", testImage, json.RawMessage(`{"instanceIds":["cpu3c-x-4"]}`), nil); err == nil {
		t.Error("a malformed instance id was accepted")
	}
}

// asEndpoint is what Runpod answers for a request, in the fields patch compares.
func asEndpoint(r EndpointRequest) Endpoint {
	return Endpoint{Name: r.Name, Type: r.Type, Image: r.Image, Env: r.Env, Disk: r.Disk, Ports: r.Ports, GPU: r.GPU, CPU: r.CPU,
		Workers: r.Workers, Scaling: r.Scaling, DataCenterIDs: r.DataCenterIDs, NetworkVolumes: r.NetworkVolumes,
		Timeout: 600000, Flashboot: "OFF"}
}

func TestPatch(t *testing.T) {
	want, err := request("flash-shop-r", testImage, json.RawMessage(`{"gpuIds":"ADA_24","env":{"A":"1"}}`), map[string]string{EnvApp: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	cur := asEndpoint(want)
	if p := patch(cur, want); len(p) != 0 {
		t.Errorf("patch of an equal endpoint = %v, want nothing", p)
	}
	changed := want
	changed.Image = "r/app@sha256:new"
	changed.Env = map[string]string{"A": "2", EnvApp: "shop"}
	changed.Workers.Max = 7
	p := patch(cur, changed)
	if len(p) != 3 || p["image"] != changed.Image || !reflect.DeepEqual(p["env"], changed.Env) || p["workers"].(Workers).Max != 7 {
		t.Errorf("patch = %v, want image, the whole env and the whole workers", p)
	}
	changed = want
	changed.GPU = &GPU{Pools: []string{"AMPERE_48"}, Count: 1}
	if g, ok := patch(cur, changed)["gpu"].(map[string]any); !ok || g["excludedTypes"] == nil {
		t.Errorf("a pool change must restate excludedTypes (a PATCH of pools clears them): %v", g)
	}
	lb := want
	lb.Type = TypeLoadBalancer
	if mismatch(cur, lb) == "" {
		t.Error("QUEUE → LOAD_BALANCER is not patchable")
	}
}

func TestOwned(t *testing.T) {
	ep := func(name string, env map[string]string) Endpoint { return Endpoint{Name: name, Env: env} }
	tags := map[string]string{EnvApp: "shop", EnvResource: "gpu"}
	for _, tc := range []struct {
		ep       Endpoint
		resource string
		want     bool
	}{
		{ep("flash-shop-gpu", tags), "gpu", true},
		{ep("flash-shop-gpu -fb", tags), "gpu", true},
		{ep("flash-shop-gpu", nil), "gpu", false}, // a foreign endpoint with our name
		{ep("flash-shop-gpu", map[string]string{EnvApp: "shop-2", EnvResource: "gpu"}), "gpu", false},
		{ep("renamed", tags), "gpu", false},
		{ep("flash-shop-x-fb", map[string]string{EnvApp: "shop", EnvResource: "x-fb"}), "x-fb", true},
		{ep("flash-shop-x", map[string]string{EnvApp: "shop", EnvResource: "x-fb"}), "x-fb", false},
		{ep("flash-shop", map[string]string{EnvApp: "shop", EnvMothership: "true"}), "", true},
		{ep("flash-shop", map[string]string{EnvApp: "shop"}), "", false},
	} {
		if got := Owned(tc.ep, "shop", tc.resource); got != tc.want {
			t.Errorf("Owned(%+v, shop, %q) = %v", tc.ep, tc.resource, got)
		}
	}
}

// FuzzRequest: any resource entry maps to a request or an error, never a
// panic, and a request never loses flash's tags.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{`{}`, `{"gpuIds":"-x,,y","gpuCount":-3}`, `{"instanceIds":["cpu3c-0"]}`, `{"is_load_balanced":true,"scalerValue":-1}`,
		`{"workersMin":9,"workersMax":-1,"env":{"FLASH_APP":"x"}}`, `[]`, `{"scalerValue":1e308}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, config string) {
		r, err := request("n", testImage, json.RawMessage(config), map[string]string{EnvApp: "shop"})
		if err != nil {
			return
		}
		if r.Env[EnvApp] != "shop" || r.Workers.Max < r.Workers.Min || (r.GPU == nil) == (r.CPU == nil) || r.Scaling.Type == "" {
			t.Errorf("request(%s) = %+v", config, r)
		}
		if len(patch(asEndpoint(r), r)) != 0 {
			t.Errorf("request(%s): an endpoint as asked still needs a patch: %v", config, patch(asEndpoint(r), r))
		}
	})
}

const testImage = "registry.invalid/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
