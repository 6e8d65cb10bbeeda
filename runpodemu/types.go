package runpodemu

import (
	"encoding/json"
	"net/http"
	"time"
)

// Endpoint is a serverless endpoint as REST v2 answers it
// (RUNPOD_REST_V2.md §5).
type Endpoint struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	RequestURLs    map[string]string `json:"requestUrls,omitempty"`
	Image          string            `json:"image"`
	Args           string            `json:"args"`
	Disk           int64             `json:"disk"`
	Ports          []string          `json:"ports"`
	Env            map[string]string `json:"env"`
	Registry       *string           `json:"registry"`
	GPU            *GPUConfig        `json:"gpu"`
	CPU            []CPUConfig       `json:"cpu,omitempty"`
	Workers        WorkersConfig     `json:"workers"`
	Scaling        Scaling           `json:"scaling"`
	DataCenterIDs  []string          `json:"dataCenterIds"`
	NetworkVolumes []string          `json:"networkVolumes"`
	Timeout        int64             `json:"timeout"`
	Flashboot      string            `json:"flashboot"`
	CreatedAt      time.Time         `json:"createdAt"`
}

// GPUConfig is an endpoint's GPU selection.
type GPUConfig struct {
	Pools               []string `json:"pools"`
	ExcludedTypes       []string `json:"excludedTypes"`
	Count               int64    `json:"count"`
	AllowedCudaVersions []string `json:"allowedCudaVersions"`
	MinCudaVersion      *string  `json:"minCudaVersion"`
}

// CPUConfig is one CPU flavor an endpoint may run on.
type CPUConfig struct {
	ID        string `json:"id"`
	VCPUCount int64  `json:"vcpuCount"`
	Memory    int64  `json:"memory"`
}

// WorkersConfig bounds an endpoint's workers.
type WorkersConfig struct {
	Min         int64  `json:"min"`
	Max         int64  `json:"max"`
	IdleTimeout *int64 `json:"idleTimeout,omitempty"` // seconds; absent for QUEUE + REQUEST_COUNT
}

// Scaling is an endpoint's autoscaler: one of the two variants.
type Scaling struct {
	Type         string   `json:"type"`
	QueueDelay   *float64 `json:"queueDelay,omitempty"`
	RequestCount *int64   `json:"requestCount,omitempty"`
}

// Template is a container template as REST v2 answers it (§7).
type Template struct {
	ID                  string            `json:"id"`
	Name                string            `json:"name"`
	Image               string            `json:"image"`
	Args                string            `json:"args"`
	Disk                int64             `json:"disk"`
	Mounts              Mounts            `json:"mounts"`
	Ports               []string          `json:"ports"`
	Env                 map[string]string `json:"env"`
	Registry            *string           `json:"registry"`
	Serverless          bool              `json:"serverless"`
	Public              bool              `json:"public"`
	Category            string            `json:"category"`
	StartSSH            bool              `json:"startSsh"`
	StartJupyter        bool              `json:"startJupyter"`
	AllowedCudaVersions []string          `json:"allowedCudaVersions"`
}

// Mounts is a template's persistent disk (pods only).
type Mounts struct {
	Persistent *PersistentMount `json:"persistent,omitempty"`
}

// PersistentMount is a pod's persistent volume.
type PersistentMount struct {
	Size int64  `json:"size"`
	Path string `json:"path"`
}

// Volume is a network volume: on the emulator, a directory.
type Volume struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	DataCenter string `json:"dataCenter"`
	Type       string `json:"type"`
}

// Release is one configuration version of an endpoint (§6.2).
type Release struct {
	ID              string    `json:"id"`
	Version         int64     `json:"version"`
	Source          string    `json:"source"`
	BuildID         *string   `json:"buildId"`
	CreatedByUserID *string   `json:"createdByUserId"`
	WorkerCount     int       `json:"workerCount"`
	CreatedAt       time.Time `json:"createdAt"`
	Diff            []Change  `json:"diff"`
}

// Change is one field a release changed; nil values mean added or removed.
type Change struct {
	Field string          `json:"field"`
	Old   json.RawMessage `json:"old"`
	New   json.RawMessage `json:"new"`
}

// endpointRecord is an endpoint with what the emulator keeps beside it.
type endpointRecord struct {
	Endpoint
	Version    int64     `json:"version"`              // grows with each release
	TemplateID string    `json:"templateId,omitempty"` // the template it was made from, which then cannot be deleted
	Releases   []Release `json:"releases,omitempty"`   // newest first, bounded
}

// apiError is an answer other than success. Management routes render it as
// RFC 9457 problem+json, the job API as {"error": …} (RUNPOD.md §6.3).
type apiError struct {
	Status int
	Detail string
	Errors []string
}

func (e *apiError) Error() string { return e.Detail }

func errorf(status int, detail string) *apiError { return &apiError{Status: status, Detail: detail} }

var (
	errNotFound     = errorf(http.StatusNotFound, "resource not found")
	errUnauthorized = errorf(http.StatusUnauthorized, "missing bearer token")
)
