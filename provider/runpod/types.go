package runpod

// Wire shapes of REST v2 (RUNPOD_REST_V2.md §3–§6). Answers are decoded
// leniently (unknown fields ignored); requests carry only known fields, as
// the request schemas reject the others.

// Endpoint types and scaler types.
const (
	TypeQueue        = "QUEUE"
	TypeLoadBalancer = "LOAD_BALANCER"
	ScaleQueueDelay  = "QUEUE_DELAY"
	ScaleRequests    = "REQUEST_COUNT"
)

// Endpoint is a serverless endpoint as the API answers it.
type Endpoint struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	RequestURLs    map[string]string `json:"requestUrls"`
	Image          string            `json:"image"`
	Args           string            `json:"args"`
	Disk           int64             `json:"disk"`
	Ports          []string          `json:"ports"`
	Env            map[string]string `json:"env"`
	GPU            *GPU              `json:"gpu"`
	CPU            []CPU             `json:"cpu"`
	Workers        Workers           `json:"workers"`
	Scaling        Scaling           `json:"scaling"`
	DataCenterIDs  []string          `json:"dataCenterIds"`
	NetworkVolumes []string          `json:"networkVolumes"`
	Timeout        int64             `json:"timeout"`
	Flashboot      string            `json:"flashboot"`
}

// EndpointRequest is a CreateEndpointRequest.
type EndpointRequest struct {
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	Image          string            `json:"image"`
	Env            map[string]string `json:"env,omitempty"`
	Disk           int64             `json:"disk,omitempty"`
	Ports          []string          `json:"ports,omitempty"`
	GPU            *GPU              `json:"gpu,omitempty"`
	CPU            []CPU             `json:"cpu,omitempty"`
	Workers        Workers           `json:"workers"`
	Scaling        Scaling           `json:"scaling"`
	DataCenterIDs  []string          `json:"dataCenterIds,omitempty"`
	NetworkVolumes []string          `json:"networkVolumes,omitempty"`
	Timeout        int64             `json:"timeout,omitempty"`
	Flashboot      string            `json:"flashboot,omitempty"`
}

// GPU is an endpoint's GPU selection: pools, minus excluded types.
type GPU struct {
	Pools         []string `json:"pools"`
	ExcludedTypes []string `json:"excludedTypes,omitempty"`
	Count         int64    `json:"count,omitempty"`
}

// CPU is one CPU flavor an endpoint may run on.
type CPU struct {
	ID        string `json:"id"`
	VCPUCount int64  `json:"vcpuCount"`
}

// Workers bounds an endpoint's workers. IdleTimeout (seconds) is nil where
// v2 refuses it (QUEUE with REQUEST_COUNT scaling).
type Workers struct {
	Min         int64  `json:"min"`
	Max         int64  `json:"max"`
	IdleTimeout *int64 `json:"idleTimeout,omitempty"`
}

// Scaling is the autoscaler: one of its two variants.
type Scaling struct {
	Type         string   `json:"type"`
	QueueDelay   *float64 `json:"queueDelay,omitempty"`
	RequestCount *int64   `json:"requestCount,omitempty"`
}

// WorkerList is GET …/workers.
type WorkerList struct {
	EndpointVersion *int64         `json:"endpointVersion"`
	Summary         map[string]int `json:"summary"`
	Workers         []struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		IsStale bool   `json:"isStale"`
		Version *int64 `json:"version"`
	} `json:"workers"`
}

// ReleaseList is GET …/releases.
type ReleaseList struct {
	EndpointVersion *int64 `json:"endpointVersion"`
	Rollout         struct {
		InProgress      bool `json:"inProgress"`
		WorkersOnLatest int  `json:"workersOnLatest"`
		WorkersTotal    int  `json:"workersTotal"`
	} `json:"rollout"`
}

// NetworkVolume is a network volume (size in GB).
type NetworkVolume struct {
	ID         string `json:"id,omitempty"`
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	DataCenter string `json:"dataCenter"`
}
