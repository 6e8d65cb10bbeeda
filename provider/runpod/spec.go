package runpod

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// resourceConfig is what a manifest resource entry says about its
// deployment, in the seed's keys (SPEC §2.1; RUNPOD.md §2.2 for meanings).
type resourceConfig struct {
	ResourceType       string            `json:"resource_type"`
	IsLoadBalanced     *bool             `json:"is_load_balanced"`
	ImageName          string            `json:"imageName"`
	Env                map[string]string `json:"env"`
	WorkersMin         *int64            `json:"workersMin"`
	WorkersMax         *int64            `json:"workersMax"`
	IdleTimeout        *int64            `json:"idleTimeout"`
	ScalerType         string            `json:"scalerType"`
	ScalerValue        *float64          `json:"scalerValue"`
	ExecutionTimeoutMs *int64            `json:"executionTimeoutMs"`
	Flashboot          *bool             `json:"flashboot"`
	GPUIDs             string            `json:"gpuIds"`
	GPUCount           *int64            `json:"gpuCount"`
	InstanceIDs        []string          `json:"instanceIds"`
	Locations          string            `json:"locations"`
	DataCenterIDs      []string          `json:"dataCenterIds"`
	NetworkVolumeID    string            `json:"networkVolumeId"`
	NetworkVolumeIDs   []string          `json:"networkVolumeIds"`
	ContainerDiskInGb  *int64            `json:"containerDiskInGb"`
}

// Defaults of an endpoint where the resource says nothing.
const (
	defaultGPUPool    = "AMPERE_16"
	defaultCPU        = "cpu3c-2-4"
	defaultDisk       = 10 // GB
	defaultWorkersMax = 3
	defaultQueueDelay = 4 // s, v1's default scalerValue
	defaultRequests   = 4 // requests per worker for REQUEST_COUNT
	// WorkerPort is the port load-balanced workers serve and report health on.
	WorkerPort = "8080"
)

func (rc resourceConfig) loadBalanced() bool {
	if rc.IsLoadBalanced != nil {
		return *rc.IsLoadBalanced
	}
	return strings.Contains(rc.ResourceType, "LoadBalancer")
}

func (rc resourceConfig) cpu() bool {
	return len(rc.InstanceIDs) > 0 || strings.HasPrefix(strings.ToLower(rc.ResourceType), "cpu")
}

// request maps a resource entry onto a CreateEndpointRequest; env is the
// endpoint's environment apart from the resource's own.
func request(name, image string, raw json.RawMessage, env map[string]string) (EndpointRequest, error) {
	var rc resourceConfig
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &rc); err != nil {
			return EndpointRequest{}, fmt.Errorf("resource config: %w", err)
		}
	}
	if rc.ImageName != "" {
		image = rc.ImageName
	}
	if image == "" {
		return EndpointRequest{}, fmt.Errorf("no image to run: build and push one with `flash deploy --provider runpod --image REPO` (or set imageName)")
	}
	req := EndpointRequest{Name: name, Type: TypeQueue, Image: image, Disk: defaultDisk,
		Env:     map[string]string{},
		Workers: Workers{Min: deref(rc.WorkersMin, 0), Max: deref(rc.WorkersMax, defaultWorkersMax)}}
	if rc.ContainerDiskInGb != nil {
		req.Disk = *rc.ContainerDiskInGb
	}
	maps.Copy(req.Env, rc.Env)
	maps.Copy(req.Env, env) // flash's own variables win: they tie the endpoint to its app
	if req.Workers.Max < req.Workers.Min {
		req.Workers.Max = req.Workers.Min
	}
	if rc.loadBalanced() {
		req.Type = TypeLoadBalancer
		req.Ports = []string{WorkerPort + "/http"}
		req.Env["PORT"], req.Env["PORT_HEALTH"], req.Env["HEALTH_CHECK_PATH"] = WorkerPort, WorkerPort, "/ping"
	}
	// Scaling: load-balanced endpoints must count requests (§3.2).
	scaler := strings.ToUpper(rc.ScalerType)
	if req.Type == TypeLoadBalancer || scaler == ScaleRequests || scaler == "WORKER_COUNT" {
		n := int64(defaultRequests)
		if rc.ScalerValue != nil {
			n = max(1, int64(*rc.ScalerValue))
		}
		req.Scaling = Scaling{Type: ScaleRequests, RequestCount: &n}
	} else {
		d := float64(defaultQueueDelay)
		if rc.ScalerValue != nil {
			d = max(0.5, *rc.ScalerValue)
		}
		req.Scaling = Scaling{Type: ScaleQueueDelay, QueueDelay: &d}
	}
	// v2 refuses an idle timeout on QUEUE + REQUEST_COUNT.
	if !(req.Type == TypeQueue && req.Scaling.Type == ScaleRequests) {
		idle := deref(rc.IdleTimeout, 5)
		req.Workers.IdleTimeout = &idle
	}
	if rc.cpu() {
		ids := rc.InstanceIDs
		if len(ids) == 0 {
			ids = []string{defaultCPU}
		}
		for _, id := range ids {
			c, err := parseCPU(id)
			if err != nil {
				return EndpointRequest{}, err
			}
			req.CPU = append(req.CPU, c)
		}
	} else {
		req.GPU = parseGPUs(rc.GPUIDs, deref(rc.GPUCount, 1))
	}
	if rc.ExecutionTimeoutMs != nil {
		req.Timeout = *rc.ExecutionTimeoutMs
	}
	if rc.Flashboot != nil {
		req.Flashboot = "OFF"
		if *rc.Flashboot {
			req.Flashboot = "FLASHBOOT"
		}
	}
	req.DataCenterIDs = rc.DataCenterIDs
	if len(req.DataCenterIDs) == 0 && rc.Locations != "" {
		req.DataCenterIDs = splitList(rc.Locations)
	}
	req.NetworkVolumes = rc.NetworkVolumeIDs
	if rc.NetworkVolumeID != "" && !slices.Contains(req.NetworkVolumes, rc.NetworkVolumeID) {
		req.NetworkVolumes = append([]string{rc.NetworkVolumeID}, req.NetworkVolumes...)
	}
	return req, nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseGPUs turns the seed's gpuIds ("AMPERE_16,ADA_24,-NVIDIA L4") into
// pools and excluded types, as runpod-python does; "" or "any" → the default pool.
func parseGPUs(ids string, count int64) *GPU {
	g := &GPU{Count: max(1, count)}
	for _, f := range splitList(ids) {
		if x, ok := strings.CutPrefix(f, "-"); ok {
			g.ExcludedTypes = append(g.ExcludedTypes, strings.TrimSpace(x))
		} else if !strings.EqualFold(f, "any") {
			g.Pools = append(g.Pools, f)
		}
	}
	if len(g.Pools) == 0 {
		g.Pools = []string{defaultGPUPool}
	}
	return g
}

// parseCPU turns "cpu3c-2-4" (flavor-vcpus-ram) or "cpu3c" into a CPU item.
func parseCPU(id string) (CPU, error) {
	parts := strings.Split(id, "-")
	c := CPU{ID: parts[0], VCPUCount: 2}
	if len(parts) > 1 {
		n, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || n < 1 {
			return c, fmt.Errorf("instanceIds: %q: want flavor-vcpus-ram such as cpu3c-2-4", id)
		}
		c.VCPUCount = n
	}
	return c, nil
}

// patch returns the fields of want that differ from cur, each group whole
// (full workers, scaling and env: a partial nested update could reset the
// rest, RUNPOD_REST_V2.md §4). Empty means nothing to change. Type and the
// compute family cannot be patched: mismatch reports them.
func patch(cur Endpoint, want EndpointRequest) map[string]any {
	p := map[string]any{}
	set := func(key string, differ bool, v any) {
		if differ {
			p[key] = v
		}
	}
	set("name", cur.Name != want.Name, want.Name)
	set("image", cur.Image != want.Image, want.Image)
	set("env", !maps.Equal(cur.Env, want.Env), orEmptyMap(want.Env))
	set("disk", cur.Disk != want.Disk, want.Disk)
	set("ports", !slices.Equal(cur.Ports, want.Ports), orEmpty(want.Ports))
	set("workers", !sameWorkers(cur.Workers, want.Workers), want.Workers)
	set("scaling", !reflect.DeepEqual(cur.Scaling, want.Scaling), want.Scaling)
	set("dataCenterIds", len(want.DataCenterIDs) > 0 && !slices.Equal(cur.DataCenterIDs, want.DataCenterIDs), want.DataCenterIDs)
	set("networkVolumes", !slices.Equal(orEmpty(cur.NetworkVolumes), orEmpty(want.NetworkVolumes)), orEmpty(want.NetworkVolumes))
	set("timeout", want.Timeout != 0 && cur.Timeout != want.Timeout, want.Timeout)
	set("flashboot", want.Flashboot != "" && cur.Flashboot != want.Flashboot, want.Flashboot)
	if want.GPU != nil && cur.GPU != nil {
		g := *cur.GPU
		if !slices.Equal(g.Pools, want.GPU.Pools) || !slices.Equal(orEmpty(g.ExcludedTypes), orEmpty(want.GPU.ExcludedTypes)) || g.Count != want.GPU.Count {
			p["gpu"] = map[string]any{"pools": want.GPU.Pools, "excludedTypes": orEmpty(want.GPU.ExcludedTypes), "count": want.GPU.Count}
		}
	}
	if want.CPU != nil && !slices.Equal(cpuIDs(cur.CPU), cpuIDs(want.CPU)) {
		p["cpu"] = want.CPU
	}
	return p
}

// mismatch says why cur cannot become want by PATCH, or "".
func mismatch(cur Endpoint, want EndpointRequest) string {
	switch {
	case cur.Type != "" && cur.Type != want.Type:
		return fmt.Sprintf("type %s → %s", cur.Type, want.Type)
	case (cur.GPU != nil) != (want.GPU != nil) && (cur.GPU != nil || len(cur.CPU) > 0):
		return "compute GPU ↔ CPU"
	}
	return ""
}

func sameWorkers(a, b Workers) bool {
	return a.Min == b.Min && a.Max == b.Max && (b.IdleTimeout == nil || (a.IdleTimeout != nil && *a.IdleTimeout == *b.IdleTimeout))
}

func cpuIDs(cs []CPU) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s/%d", c.ID, c.VCPUCount)
	}
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// MothershipRequest is the endpoint app's mothership runs on: load-balanced,
// one always-on worker (its SQLite state allows one writer; children hold
// long polls on it anyway), with volume (a network volume id, "" = none)
// mounted at /runpod-volume, which pins it to that volume's data center.
func MothershipRequest(app, image string, env map[string]string, volume, dataCenter string) EndpointRequest {
	e := maps.Clone(env)
	if e == nil {
		e = map[string]string{}
	}
	maps.Copy(e, map[string]string{EnvApp: app, EnvMothership: "true", "FLASH_PROVIDER": "runpod", "FLASH_HOST": "0.0.0.0",
		"PORT": WorkerPort, "PORT_HEALTH": WorkerPort, "HEALTH_CHECK_PATH": "/ping"})
	one, idle, n := int64(1), int64(60), int64(1000)
	req := EndpointRequest{Name: EndpointName(app, ""), Type: TypeLoadBalancer, Image: image, Env: e, Disk: defaultDisk,
		Ports: []string{WorkerPort + "/http"}, CPU: []CPU{{ID: "cpu3c", VCPUCount: 2}},
		Workers: Workers{Min: one, Max: one, IdleTimeout: &idle}, Scaling: Scaling{Type: ScaleRequests, RequestCount: &n}}
	if volume != "" {
		req.NetworkVolumes = []string{volume}
		if dataCenter != "" {
			req.DataCenterIDs = []string{dataCenter}
		}
	}
	return req
}
