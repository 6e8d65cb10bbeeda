package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/store"
)

// ErrUnknown means FLASH_PROVIDER names no provider that was registered.
var ErrUnknown = errors.New("provider: unknown provider")

// EndpointStore is the part of the state store a provider records what it
// created in, so that a restarted mothership can adopt it and undeploy can find it.
type EndpointStore interface {
	PutEndpoint(ctx context.Context, e store.Endpoint) error
	Endpoints(ctx context.Context, app string) ([]store.Endpoint, error)
	DeleteEndpoint(ctx context.Context, id string) error
}

// Event kinds reported through Setup.Event.
const (
	EventExited    = "exited"    // a process or endpoint ended without being asked to
	EventRestarted = "restarted" // it was started again after an exit
	EventAdopted   = "adopted"   // a restarted mothership took over a running endpoint
	EventGone      = "gone"      // a recorded endpoint was found dead
)

// Event is something that happened to a deployed endpoint outside a provider call.
type Event struct {
	Resource string
	Kind     string // one of the Event… constants
	Detail   string // for people: pid, URL, cause
}

// Setup is what a Factory gets from the mothership that will use the provider.
type Setup struct {
	// App is the app name; the provider tags everything it creates with it.
	App string
	// Env is what every endpoint needs in its environment to join the app
	// (FLASH_MOTHERSHIP_URL, FLASH_API_KEY, FLASH_CACHE_DIR).
	Env map[string]string
	// Dir is the app's state directory (logs, artifacts).
	Dir layout.App
	// Store records the endpoints the provider creates.
	Store EndpointStore
	// Getenv reads the provider's own settings (os.Getenv in Main).
	Getenv func(string) string
	// Logger receives the provider's logs.
	Logger *slog.Logger
	// Changed is called when an endpoint's URLs changed outside Deploy (a
	// restart on another port), so that the mothership republishes. Keep it short.
	Changed func(Endpoint)
	// Event is called for exits, restarts and adoptions. Keep it short.
	Event func(Event)
}

// Factory builds a provider for one app. A nil Provider with a nil error
// means "no provider": the mothership publishes and serves only.
type Factory func(ctx context.Context, s Setup) (Provider, error)

// Factories maps FLASH_PROVIDER names ("local", "none", "runpod") to their
// Factory. It is a plain value built where backends are chosen (the flash
// package's defaults, or an embedder's Config): no provider registers itself.
type Factories map[string]Factory

// New builds the provider called name.
func (f Factories) New(ctx context.Context, name string, s Setup) (Provider, error) {
	factory := f[name]
	if factory == nil {
		return nil, fmt.Errorf("FLASH_PROVIDER=%q: %w; want one of %s", name, ErrUnknown, strings.Join(f.Names(), ", "))
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Getenv == nil {
		s.Getenv = func(string) string { return "" }
	}
	return factory(ctx, s)
}

// Names lists the known provider names, sorted.
func (f Factories) Names() []string { return slices.Sorted(maps.Keys(f)) }

// None is the Factory of FLASH_PROVIDER=none: endpoints are managed elsewhere.
func None(context.Context, Setup) (Provider, error) { return nil, nil }
