// Package provider defines what creates and destroys endpoints. Implementations
// live in subpackages: provider/local (processes on this machine) and
// provider/runpod (Runpod serverless endpoints).
package provider

import (
	"context"
	"encoding/json"
	"errors"
)

// ErrNotOwned is returned when asked to act on an endpoint of another app.
var ErrNotOwned = errors.New("provider: endpoint belongs to another app")

// Spec is what a provider needs to deploy one resource.
type Spec struct {
	Resource   string            // resource name from the manifest
	ConfigHash string            // manifest.Hash of the resource entry
	Replicas   int               // how many instances; values < 1 mean 1
	Env        map[string]string // extra environment for the endpoint (the resource's "env")
	Config     json.RawMessage   // the whole resource entry, for provider-specific keys
	Artifact   string            // the app binary to run (local provider); empty means the provider default
}

// Endpoint is a deployed resource as the provider sees it.
type Endpoint struct {
	ID         string // provider-unique id of this deployment
	Resource   string
	ConfigHash string
	URLs       []string // one per replica; callers spread load across them
}

// Provider deploys and undeploys the endpoints of one app. It tags everything it
// creates with the app so that it never lists or touches another app's endpoints.
type Provider interface {
	// Deploy creates the endpoint and returns once it is healthy, or an error
	// (after cleaning up what it started) when it is not healthy in time. A
	// provider whose platform rolls releases (provider/runpod) updates the
	// resource's endpoint in place instead and returns its id again.
	Deploy(ctx context.Context, s Spec) (Endpoint, error)
	// Undeploy destroys the endpoint. Undeploying a missing endpoint is not an error.
	Undeploy(ctx context.Context, e Endpoint) error
	// List returns this app's live endpoints.
	List(ctx context.Context) ([]Endpoint, error)
}

// Scaler is a Provider that can change the replicas of a deployed endpoint
// (provider/local); the mothership's autoscaler decides when. A provider
// whose platform scales by itself (provider/runpod) does not implement it.
type Scaler interface {
	// AddReplicas starts n more replicas of e, waits until each is
	// healthy, and returns e with every URL. On failure it stops what it
	// started and returns e unchanged with the error.
	AddReplicas(ctx context.Context, e Endpoint, n int) (Endpoint, error)
	// RemoveReplicas stops the replicas of e that serve urls (their
	// in-flight work ends within the stop grace) and returns e without
	// them. Callers stop sending to those URLs first.
	RemoveReplicas(ctx context.Context, e Endpoint, urls []string) (Endpoint, error)
}
