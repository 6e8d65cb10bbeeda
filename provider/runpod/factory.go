package runpod

import (
	"context"
	"maps"

	"github.com/flash-go/flash/provider"
)

// Factory is the provider.Factory of FLASH_PROVIDER=runpod. It reads
// RUNPOD_API_KEY (required), RUNPOD_API_BASE (the management API, default
// Runpod's), RUNPOD_ENDPOINT_BASE_URL (the client API, default Runpod's),
// RUNPOD_ENDPOINT_ID (the endpoint the mothership runs on: its image and
// URL are the children's) and FLASH_IMAGE (the image to run instead).
func Factory(_ context.Context, s provider.Setup) (provider.Provider, error) {
	key := s.Getenv("RUNPOD_API_KEY")
	env := maps.Clone(s.Env)
	if env == nil {
		env = map[string]string{}
	}
	env["RUNPOD_API_KEY"] = key // children's calls through Runpod's client API carry it
	if base := s.Getenv("RUNPOD_ENDPOINT_BASE_URL"); base != "" {
		env["RUNPOD_ENDPOINT_BASE_URL"] = base
	}
	return New(Config{
		App:          s.App,
		Client:       &Client{Base: s.Getenv("RUNPOD_API_BASE"), Key: key},
		Image:        s.Getenv("FLASH_IMAGE"),
		Env:          env,
		Self:         s.Getenv("RUNPOD_ENDPOINT_ID"),
		EndpointBase: s.Getenv("RUNPOD_ENDPOINT_BASE_URL"),
		Logger:       s.Logger,
	})
}
