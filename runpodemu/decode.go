package runpodemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Request decoders for the management API. Each is a pure function of the
// body (and, for endpoints, a template lookup), so that every rule can be
// tested and fuzzed without a server. They follow RUNPOD_REST_V2.md §3–§7.

// templateLookup finds a template by id.
type templateLookup func(id string) (Template, bool)

var endpointKeys = []string{"name", "type", "scaling", "image", "templateId", "env", "args", "disk", "ports",
	"registry", "gpu", "cpu", "workers", "timeout", "flashboot", "dataCenterIds", "networkVolumes"}

const (
	defaultDisk        = 20     // GB; v2 states no default, its examples use 20 [U]
	defaultTimeoutMs   = 300000 // v2 default execution timeout
	minTimeoutMs       = 5000   // the console's range, 5 s – 7 d
	maxTimeoutMs       = 7 * 24 * 3600 * 1000
	defaultIdleTimeout = 10 // v2's default for workers.idleTimeout
)

// rootObject parses a request body that must be a JSON object.
func rootObject(c *checker, body []byte, allowed []string) (object, *apiError) {
	if !json.Valid(body) {
		return object{}, errorf(400, "request body is not valid JSON")
	}
	o, ok := c.parseObject("$", bytes.TrimSpace(body), allowed...)
	if !ok {
		return o, c.problem()
	}
	return o, nil
}

// decodeEndpointCreate turns a CreateEndpointRequest into an endpoint with
// every default filled; id, createdAt and requestUrls are the caller's.
func decodeEndpointCreate(body []byte, lookup templateLookup) (ep Endpoint, templateID string, _ *apiError) {
	c := &checker{}
	o, perr := rootObject(c, body, endpointKeys)
	if perr != nil {
		return ep, "", perr
	}
	o.requireKeys("name", "type", "scaling")
	if !o.has("templateId") {
		o.requireKeys("image")
	}
	ep = Endpoint{Args: "", Disk: defaultDisk, Ports: []string{}, Env: map[string]string{},
		DataCenterIDs: []string{}, NetworkVolumes: []string{}, Timeout: defaultTimeoutMs, Flashboot: "OFF",
		Workers: WorkersConfig{Min: 0, Max: 3}}
	if t, ok := o.str("type"); ok && o.oneOf("type", t, endpointTypes) {
		ep.Type = t
	}
	// The template's container fields come first; the body's win.
	var tmpl *Template
	if id, ok := o.boundedStr("templateId", 1, maxStrLen); ok {
		templateID = id
		if t, found := lookup(id); found {
			tmpl = &t
		}
	}
	if tmpl != nil {
		ep.Image, ep.Args, ep.Disk, ep.Registry = tmpl.Image, tmpl.Args, tmpl.Disk, tmpl.Registry
		ep.Ports = slices.Clone(tmpl.Ports)
		ep.Env = maps.Clone(tmpl.Env)
	}
	in := decodeEndpointFields(o)
	in.applyContainer(&ep)
	if in.env != nil {
		maps.Copy(ep.Env, in.env) // create merges per key, the body winning
	}
	in.applyRest(&ep)
	switch {
	case in.gpu != nil && in.cpu != nil, in.gpu == nil && in.cpu == nil:
		c.rulef("specify exactly one of gpu or cpu")
	case in.gpu != nil:
		if in.gpu.pools == nil {
			c.schemaf("$.gpu: missing property 'pools'")
		}
		ep.GPU = &GPUConfig{Count: 1, ExcludedTypes: []string{}, AllowedCudaVersions: []string{}}
		in.gpu.apply(ep.GPU)
		if tmpl != nil && len(ep.GPU.AllowedCudaVersions) == 0 && ep.GPU.MinCudaVersion == nil {
			ep.GPU.AllowedCudaVersions = slices.Clone(tmpl.AllowedCudaVersions)
		}
	default:
		ep.CPU = in.cpu
	}
	if in.workers == nil || in.workers.idle == nil {
		idle := int64(defaultIdleTimeout)
		ep.Workers.IdleTimeout = &idle
	}
	checkEndpoint(c, &ep, in)
	if p := c.problem(); p != nil {
		return ep, "", p
	}
	// Lookups come after the schema: an unknown template is 404, a
	// non-serverless one 422 (§3.3).
	if templateID != "" {
		if tmpl == nil {
			return ep, "", errorf(404, "template not found")
		}
		if !tmpl.Serverless {
			return ep, "", &apiError{Status: 422, Detail: "Request validation failed.",
				Errors: []string{"$.templateId: template is not a serverless template"}}
		}
	}
	return ep, templateID, nil
}

// decodeEndpointPatch applies an UpdateEndpointRequest to cur. type is not
// settable, and the compute family cannot change (§4).
func decodeEndpointPatch(cur Endpoint, body []byte, lookup templateLookup) (ep Endpoint, templateID string, _ *apiError) {
	c := &checker{}
	allowed := slices.DeleteFunc(slices.Clone(endpointKeys), func(k string) bool { return k == "type" })
	o, perr := rootObject(c, body, allowed)
	if perr != nil {
		return cur, "", perr
	}
	ep = cloneEndpoint(cur)
	in := decodeEndpointFields(o)
	var tmpl *Template
	if id, ok := o.boundedStr("templateId", 1, maxStrLen); ok {
		t, found := lookup(id)
		if !found {
			return cur, "", errorf(404, "template not found")
		}
		tmpl, templateID = &t, id
		// Applied once, as if its fields were in the body; the body wins.
		ep.Image, ep.Args, ep.Disk, ep.Registry = t.Image, t.Args, t.Disk, t.Registry
		ep.Ports = slices.Clone(t.Ports)
		ep.Env = maps.Clone(t.Env)
	}
	in.applyContainer(&ep)
	if in.env != nil {
		if tmpl != nil {
			maps.Copy(ep.Env, in.env)
		} else {
			ep.Env = in.env // a sent env replaces the map
		}
	}
	in.applyRest(&ep)
	if in.gpu != nil {
		if ep.GPU == nil {
			c.rulef("gpu cannot be set on a CPU endpoint")
		} else if in.gpu.excluded != nil && in.gpu.pools == nil {
			c.rulef("gpu.excludedTypes requires gpu.pools in the same request")
		} else {
			in.gpu.apply(ep.GPU)
		}
	}
	if in.cpu != nil {
		if ep.CPU == nil {
			c.rulef("cpu cannot be set on a GPU endpoint")
		} else {
			ep.CPU = in.cpu
		}
	}
	checkEndpoint(c, &ep, in)
	if p := c.problem(); p != nil {
		return cur, "", p
	}
	if tmpl != nil && !tmpl.Serverless {
		return cur, "", &apiError{Status: 422, Detail: "Request validation failed.",
			Errors: []string{"$.templateId: template is not a serverless template"}}
	}
	return ep, templateID, nil
}

// endpointFields holds the fields of a create or update body that were sent.
type endpointFields struct {
	name, image, args, flashboot *string
	registry                     **string
	disk, timeout                *int64
	ports, dcs, volumes          []string
	portsSet, dcsSet, volumesSet bool
	env                          map[string]string
	gpu                          *gpuFields
	cpu                          []CPUConfig
	workers                      *workersFields
	scaling                      *Scaling
}

type gpuFields struct {
	pools, excluded, allowed []string
	count                    *int64
	minCuda                  *string
}

type workersFields struct{ min, max, idle *int64 }

func decodeEndpointFields(o object) endpointFields {
	var in endpointFields
	c := o.c
	if s, ok := o.boundedStr("name", 1, maxNameLen); ok {
		in.name = &s
	}
	if s, ok := o.boundedStr("image", 1, maxStrLen); ok {
		in.image = &s
	}
	if s, ok := o.boundedStr("args", 0, maxStrLen); ok {
		in.args = &s
	}
	if r, ok := o.nullableStr("registry"); ok {
		in.registry = &r
	}
	if n, ok := o.integer("disk", 1, 1<<20); ok {
		in.disk = &n
	}
	if n, ok := o.integer("timeout", minTimeoutMs, maxTimeoutMs); ok {
		in.timeout = &n
	}
	if s, ok := o.str("flashboot"); ok && o.oneOf("flashboot", s, flashbootModes) {
		in.flashboot = &s
	}
	in.ports, in.portsSet = o.ports("ports")
	if in.dcs, in.dcsSet = o.strs("dataCenterIds", maxListItems); in.dcsSet {
		for _, d := range in.dcs {
			if !slices.Contains(dataCenters, d) {
				c.schemaf("$.dataCenterIds: unknown data center %q", d)
			}
		}
	}
	if in.volumes, in.volumesSet = o.strs("networkVolumes", maxListItems); in.volumesSet {
		for _, v := range in.volumes {
			if v == "" {
				c.schemaf("$.networkVolumes: empty id")
			}
		}
	}
	if m, ok := o.env("env"); ok {
		in.env = m
	}
	if o.has("gpu") {
		in.gpu = decodeGPU(c, o.m["gpu"])
	}
	if o.has("cpu") {
		in.cpu = decodeCPU(c, o.m["cpu"])
	}
	if o.has("workers") {
		if w, ok := c.parseObject("$.workers", o.m["workers"], "min", "max", "idleTimeout"); ok {
			in.workers = &workersFields{}
			if n, ok := w.integer("min", 0, 1000); ok {
				in.workers.min = &n
			}
			if n, ok := w.integer("max", 0, 1000); ok {
				in.workers.max = &n
			}
			if n, ok := w.integer("idleTimeout", 1, 3600); ok {
				in.workers.idle = &n
			}
		}
	}
	if o.has("scaling") {
		in.scaling = decodeScaling(c, o.m["scaling"])
	}
	return in
}

func decodeGPU(c *checker, raw json.RawMessage) *gpuFields {
	g, ok := c.parseObject("$.gpu", raw, "pools", "excludedTypes", "count", "allowedCudaVersions", "minCudaVersion")
	if !ok {
		return nil
	}
	f := &gpuFields{}
	if p, ok := g.strs("pools", maxListItems); ok {
		if len(p) == 0 {
			c.schemaf("$.gpu.pools: at least 1 item")
		}
		for _, id := range p {
			if _, known := gpuPools[id]; !known {
				c.schemaf("$.gpu.pools: unknown pool %q (one of %s)", id, strings.Join(poolIDs, ", "))
			}
		}
		f.pools = p
	}
	if x, ok := g.strs("excludedTypes", maxListItems); ok {
		f.excluded = x
	}
	if n, ok := g.integer("count", 1, 16); ok {
		f.count = &n
	}
	if v, ok := g.cudaVersions("allowedCudaVersions"); ok {
		f.allowed = v
	}
	if s, ok := g.str("minCudaVersion"); ok {
		if s != "" && !cudaPattern.MatchString(s) {
			c.schemaf("$.gpu.minCudaVersion: %q does not match ^\\d+\\.\\d+$", s)
		}
		f.minCuda = &s
	}
	return f
}

// apply sets the sent GPU fields on g. Sending pools replaces the selection
// and clears the exclusions unless they are restated (§4).
func (f *gpuFields) apply(g *GPUConfig) {
	if f.pools != nil {
		g.Pools = f.pools
		g.ExcludedTypes = []string{}
	}
	if f.excluded != nil {
		g.ExcludedTypes = f.excluded
	}
	if f.count != nil {
		g.Count = *f.count
	}
	if f.allowed != nil {
		g.AllowedCudaVersions = f.allowed
	}
	if f.minCuda != nil {
		if *f.minCuda == "" {
			g.MinCudaVersion = nil
		} else {
			v := *f.minCuda
			g.MinCudaVersion = &v
		}
	}
}

func decodeCPU(c *checker, raw json.RawMessage) []CPUConfig {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil || items == nil {
		c.schemaf("$.cpu: expected array")
		return nil
	}
	if len(items) == 0 || len(items) > maxListItems {
		c.schemaf("$.cpu: between 1 and %d items", maxListItems)
		return nil
	}
	out := make([]CPUConfig, 0, len(items))
	for i, raw := range items {
		o, ok := c.parseObject(fmt.Sprintf("$.cpu[%d]", i), raw, "id", "vcpuCount")
		if !ok {
			return nil
		}
		o.requireKeys("id", "vcpuCount")
		id, okID := o.str("id")
		n, okN := o.integer("vcpuCount", 2, 512)
		if !okID || !okN {
			continue
		}
		if !o.oneOf("id", id, cpuFlavors) {
			continue
		}
		if n&(n-1) != 0 {
			c.schemaf("%s: vcpuCount must be a power of two", o.path)
			continue
		}
		cfg := CPUConfig{ID: id, VCPUCount: n, Memory: int64(cpuRAMPerVCPU[id]) * n}
		if slices.Contains(out, cfg) {
			c.schemaf("$.cpu: duplicate item %s/%d", id, n)
			continue
		}
		out = append(out, cfg)
	}
	return out
}

func decodeScaling(c *checker, raw json.RawMessage) *Scaling {
	s, ok := c.parseObject("$.scaling", raw, "type", "queueDelay", "requestCount")
	if !ok {
		return nil
	}
	s.requireKeys("type")
	t, ok := s.str("type")
	if !ok || !s.oneOf("type", t, scalerTypes) {
		return nil
	}
	out := &Scaling{Type: t}
	switch t {
	case scaleQueueDelay:
		if s.has("requestCount") {
			c.schemaf("$.scaling: additional properties 'requestCount' not allowed")
		}
		s.requireKeys("queueDelay")
		if f, ok := s.number("queueDelay"); ok {
			if f < 0.5 || f > 3600 || math.IsNaN(f) {
				c.schemaf("$.scaling.queueDelay: must be between 0.5 and 3600")
			}
			out.QueueDelay = &f
		}
	case scaleRequestCount:
		if s.has("queueDelay") {
			c.schemaf("$.scaling: additional properties 'queueDelay' not allowed")
		}
		s.requireKeys("requestCount")
		if n, ok := s.integer("requestCount", 1, 1000); ok {
			out.RequestCount = &n
		}
	}
	return out
}

// applyContainer sets the sent container fields (image, args, disk, ports,
// registry); env is merged or replaced by the caller.
func (in endpointFields) applyContainer(ep *Endpoint) {
	if in.image != nil {
		ep.Image = *in.image
	}
	if in.args != nil {
		ep.Args = *in.args
	}
	if in.disk != nil {
		ep.Disk = *in.disk
	}
	if in.portsSet {
		ep.Ports = in.ports
	}
	if in.registry != nil {
		ep.Registry = *in.registry
	}
}

// applyRest sets the sent non-container fields.
func (in endpointFields) applyRest(ep *Endpoint) {
	if in.name != nil {
		ep.Name = *in.name
	}
	if in.timeout != nil {
		ep.Timeout = *in.timeout
	}
	if in.flashboot != nil {
		ep.Flashboot = *in.flashboot
	}
	if in.dcsSet {
		ep.DataCenterIDs = in.dcs
	}
	if in.volumesSet {
		ep.NetworkVolumes = in.volumes
	}
	if in.scaling != nil {
		ep.Scaling = *in.scaling
	}
	if w := in.workers; w != nil {
		if w.min != nil {
			ep.Workers.Min = *w.min
		}
		if w.max != nil {
			ep.Workers.Max = *w.max
		}
		if w.idle != nil {
			v := *w.idle
			ep.Workers.IdleTimeout = &v
		}
	}
}

// checkEndpoint applies the rules that involve several fields to the result.
func checkEndpoint(c *checker, ep *Endpoint, in endpointFields) {
	if ep.Scaling.Type == "" {
		return // already reported as missing or invalid
	}
	if ep.Type == typeLB && ep.Scaling.Type != scaleRequestCount {
		c.schemaf("$.scaling: a LOAD_BALANCER endpoint requires REQUEST_COUNT scaling")
	}
	if ep.Type == typeQueue && ep.Scaling.Type == scaleRequestCount {
		if in.workers != nil && in.workers.idle != nil {
			c.schemaf("$.workers.idleTimeout: not allowed for a QUEUE endpoint with REQUEST_COUNT scaling")
		}
		ep.Workers.IdleTimeout = nil // and omitted from answers
	} else if ep.Workers.IdleTimeout == nil {
		idle := int64(defaultIdleTimeout)
		ep.Workers.IdleTimeout = &idle
	}
	if ep.Workers.Min > ep.Workers.Max {
		c.rulef("workers.min (%d) is above workers.max (%d)", ep.Workers.Min, ep.Workers.Max)
	}
	if g := ep.GPU; g != nil {
		var members []string
		for _, p := range g.Pools {
			members = append(members, gpuPools[p]...)
		}
		for _, x := range g.ExcludedTypes {
			if strings.HasPrefix(x, "-") || !slices.Contains(members, strings.TrimSpace(x)) {
				c.rulef("gpu.excludedTypes: %q is not a GPU type of the chosen pools", x)
			}
		}
		if len(g.Pools) > 0 && len(g.ExcludedTypes) >= len(members) {
			c.rulef("gpu.excludedTypes: no GPU type would remain")
		}
		if len(g.AllowedCudaVersions) > 0 && g.MinCudaVersion != nil {
			c.rulef("gpu: allowedCudaVersions and minCudaVersion cannot both be set")
		}
	}
}

func cloneEndpoint(e Endpoint) Endpoint {
	out := e
	out.Ports = slices.Clone(e.Ports)
	out.Env = maps.Clone(e.Env)
	out.DataCenterIDs = slices.Clone(e.DataCenterIDs)
	out.NetworkVolumes = slices.Clone(e.NetworkVolumes)
	out.CPU = slices.Clone(e.CPU)
	if e.GPU != nil {
		g := *e.GPU
		g.Pools = slices.Clone(g.Pools)
		g.ExcludedTypes = slices.Clone(g.ExcludedTypes)
		g.AllowedCudaVersions = slices.Clone(g.AllowedCudaVersions)
		out.GPU = &g
	}
	if e.Workers.IdleTimeout != nil {
		v := *e.Workers.IdleTimeout
		out.Workers.IdleTimeout = &v
	}
	if e.Registry != nil {
		r := *e.Registry
		out.Registry = &r
	}
	return out
}

var templateKeys = []string{"name", "image", "serverless", "category", "args", "disk", "ports", "env", "registry",
	"mounts", "public", "startSsh", "startJupyter", "allowedCudaVersions"}

// decodeTemplate decodes a CreateTemplateRequest (create) or an
// UpdateTemplateRequest applied to cur.
func decodeTemplate(cur Template, body []byte, create bool) (Template, *apiError) {
	c := &checker{}
	o, perr := rootObject(c, body, templateKeys)
	if perr != nil {
		return cur, perr
	}
	t := cur
	if create {
		o.requireKeys("name", "image")
		t = Template{Disk: defaultDisk, Ports: []string{}, Env: map[string]string{}, Category: "NVIDIA",
			StartSSH: true, StartJupyter: true, AllowedCudaVersions: []string{}}
	} else {
		t.Ports, t.Env, t.AllowedCudaVersions = slices.Clone(t.Ports), maps.Clone(t.Env), slices.Clone(t.AllowedCudaVersions)
	}
	if s, ok := o.boundedStr("name", 1, maxNameLen); ok {
		t.Name = s
	}
	if s, ok := o.boundedStr("image", 1, maxStrLen); ok {
		t.Image = s
	}
	if s, ok := o.boundedStr("args", 0, maxStrLen); ok {
		t.Args = s
	}
	if n, ok := o.integer("disk", 1, 1<<20); ok {
		t.Disk = n
	}
	if p, ok := o.ports("ports"); ok {
		t.Ports = p
	}
	if m, ok := o.env("env"); ok {
		t.Env = m
	}
	if r, ok := o.nullableStr("registry"); ok {
		t.Registry = r
	}
	if s, ok := o.str("category"); ok && o.oneOf("category", s, categories) {
		t.Category = s
	}
	for k, dst := range map[string]*bool{"serverless": &t.Serverless, "public": &t.Public, "startSsh": &t.StartSSH, "startJupyter": &t.StartJupyter} {
		if b, ok := o.boolean(k); ok {
			*dst = b
		}
	}
	if v, ok := o.cudaVersions("allowedCudaVersions"); ok {
		t.AllowedCudaVersions = v
	}
	if o.has("mounts") {
		if m, ok := c.parseObject("$.mounts", o.m["mounts"], "persistent"); ok {
			if m.has("persistent") {
				if p, ok := c.parseObject("$.mounts.persistent", m.m["persistent"], "size", "path"); ok {
					p.requireKeys("size", "path")
					size, okS := p.integer("size", 10, 1<<20)
					path, okP := p.boundedStr("path", 1, maxStrLen)
					if okS && okP {
						t.Mounts = Mounts{Persistent: &PersistentMount{Size: size, Path: path}}
					}
				}
			} else {
				t.Mounts = Mounts{} // {} keeps nothing on create, keeps the mount on update
				if !create {
					t.Mounts = cur.Mounts
				}
			}
		}
	}
	if p := c.problem(); p != nil {
		return cur, p
	}
	return t, nil
}

// decodeVolume decodes a network-volume create, or an update applied to cur
// (name, and a size that may only grow).
func decodeVolume(cur Volume, body []byte, create bool) (Volume, *apiError) {
	c := &checker{}
	keys := []string{"name", "size"}
	if create {
		keys = append(keys, "dataCenter", "type")
	}
	o, perr := rootObject(c, body, keys)
	if perr != nil {
		return cur, perr
	}
	v := cur
	if create {
		o.requireKeys("name", "size", "dataCenter")
		v = Volume{Type: "STANDARD"}
	}
	if s, ok := o.boundedStr("name", 1, maxNameLen); ok {
		v.Name = s
	}
	if n, ok := o.integer("size", 10, 4096); ok {
		if !create && n < cur.Size {
			c.rulef("size: a network volume cannot shrink (from %d to %d GB)", cur.Size, n)
		}
		v.Size = n
	}
	if s, ok := o.str("dataCenter"); ok && o.oneOf("dataCenter", s, dataCenters) {
		v.DataCenter = s
	}
	if s, ok := o.str("type"); ok && o.oneOf("type", s, volumeTypes) {
		v.Type = s
	}
	if p := c.problem(); p != nil {
		return cur, p
	}
	return v, nil
}
