// Package runpod is the provider of FLASH_PROVIDER=runpod: each resource of
// an app becomes a Runpod serverless endpoint, made and kept up to date
// through Runpod's REST API v2 (SPEC §6.2, RUNPOD_REST_V2.md). Queue
// resources become QUEUE endpoints (their workers pull jobs, SPEC §5.7),
// load-balanced ones LOAD_BALANCER endpoints. Endpoints are named
// flash-<app>-<resource> and tagged in their env (FLASH_APP,
// FLASH_RESOURCE_NAME), so that a redeploy finds and updates them in place
// (PATCH: a rolling release) and no other endpoint is ever touched.
package runpod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/provider"
)

// Tags in an endpoint's env that make it this app's.
const (
	EnvApp        = "FLASH_APP"
	EnvResource   = "FLASH_RESOURCE_NAME"
	EnvMothership = "FLASH_IS_MOTHERSHIP"
)

// DefaultEndpointBase is the base of Runpod's client API (jobs), under
// which a queue endpoint is {base}/{id} (RUNPOD.md §6).
const DefaultEndpointBase = "https://api.runpod.ai/v2"

// Config configures a Provider.
type Config struct {
	App    string
	Client *Client
	// Image is run by endpoints whose resource names no imageName; when
	// empty it is read from the Self endpoint.
	Image string
	// Env goes into every endpoint's env (mothership URL, API keys).
	Env map[string]string
	// Self is the id of the endpoint this mothership runs on, if any: its
	// image is the default Image and its URL the children's mothership URL.
	Self string
	// EndpointBase is the client API base for queue URLs when Runpod's
	// answer has no requestUrls; default DefaultEndpointBase.
	EndpointBase string
	// HealthPoll is the pause between health checks; default 1 s.
	HealthPoll time.Duration
	Logger     *slog.Logger
}

// Provider deploys an app's resources as Runpod serverless endpoints.
type Provider struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	selfed  bool              // Self was read
	env     map[string]string // cfg.Env plus what Self taught
	image   string
	healthc *http.Client
}

var _ provider.Provider = (*Provider)(nil)

// New returns a Provider; cfg.App and cfg.Client are required.
func New(cfg Config) (*Provider, error) {
	if cfg.App == "" || cfg.Client == nil || cfg.Client.Key == "" {
		return nil, errors.New("runpod provider: an app name and an API key (RUNPOD_API_KEY) are required")
	}
	if cfg.EndpointBase == "" {
		cfg.EndpointBase = DefaultEndpointBase
	}
	if cfg.HealthPoll <= 0 {
		cfg.HealthPoll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	env := maps.Clone(cfg.Env)
	if env == nil {
		env = map[string]string{}
	}
	return &Provider{cfg: cfg, log: cfg.Logger, env: env, image: cfg.Image, selfed: cfg.Self == "",
		healthc: &http.Client{Timeout: 10 * time.Second}}, nil
}

// EndpointName is the name of a resource's endpoint; the mothership's is
// flash-<app>.
func EndpointName(app, resource string) string {
	if resource == "" {
		return "flash-" + app
	}
	return "flash-" + app + "-" + resource
}

// Owned reports whether ep is the endpoint of app's resource (the
// mothership's for resource ""): its name and its tags say so. Names may
// carry the " -fb" or "-fb" suffix that FlashBoot adds (RUNPOD.md §2.5).
func Owned(ep Endpoint, app, resource string) bool {
	want := EndpointName(app, resource)
	named := ep.Name == want || ep.Name == want+"-fb" || ep.Name == want+" -fb"
	if ep.Env[EnvApp] != app || !named || ep.Env[EnvResource] != resource {
		return false
	}
	return (resource == "") == strings.EqualFold(ep.Env[EnvMothership], "true")
}

// setup reads the Self endpoint once: its image and its public URL.
func (p *Provider) setup(ctx context.Context) (image string, env map[string]string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.selfed {
		self, err := p.cfg.Client.Endpoint(ctx, p.cfg.Self)
		if err != nil {
			return "", nil, fmt.Errorf("runpod provider: read the mothership's own endpoint %s: %w", p.cfg.Self, err)
		}
		if p.image == "" {
			p.image = self.Image
		}
		p.env["FLASH_MOTHERSHIP_ID"] = self.ID
		if u := p.url(self); u != "" {
			p.env["FLASH_MOTHERSHIP_URL"] = u
		}
		p.selfed = true
	}
	return p.image, p.env, nil
}

// url is the public URL of an endpoint: the load-balanced base, or the
// queue endpoint's client API base (…/v2/{id}).
func (p *Provider) url(ep Endpoint) string {
	if ep.Type == TypeLoadBalancer {
		if u := ep.RequestURLs["base"]; u != "" {
			return strings.TrimRight(u, "/")
		}
		return "https://" + ep.ID + ".api.runpod.ai"
	}
	if u, ok := strings.CutSuffix(ep.RequestURLs["runSync"], "/runsync"); ok && u != "" {
		return u
	}
	return strings.TrimRight(p.cfg.EndpointBase, "/") + "/" + ep.ID
}

func (p *Provider) endpoint(ep Endpoint, resource, hash string) provider.Endpoint {
	return provider.Endpoint{ID: ep.ID, Resource: resource, ConfigHash: hash, URLs: []string{p.url(ep)}}
}

// Deploy creates the resource's endpoint, or updates the one it has in
// place with only the fields that differ (none: no call), then waits until
// it is healthy. A new endpoint that never gets healthy is deleted.
func (p *Provider) Deploy(ctx context.Context, s provider.Spec) (provider.Endpoint, error) {
	fail := func(err error) (provider.Endpoint, error) {
		return provider.Endpoint{}, fmt.Errorf("runpod: deploy %s: %w", s.Resource, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	image, env, err := p.setup(ctx)
	if err != nil {
		return fail(err)
	}
	tags := maps.Clone(env)
	maps.Copy(tags, map[string]string{EnvApp: p.cfg.App, EnvResource: s.Resource, "FLASH_HOST": "0.0.0.0"})
	delete(tags, "FLASH_CACHE_DIR") // the mothership's path means nothing in another container
	// s.Env is the resource's env, which s.Config holds too.
	want, err := request(EndpointName(p.cfg.App, s.Resource), image, s.Config, tags)
	if err != nil {
		return fail(err)
	}
	ep, created, err := p.apply(ctx, s.Resource, want)
	if err != nil {
		return fail(err)
	}
	if err := p.waitHealthy(ctx, ep); err != nil {
		if created {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if derr := p.cfg.Client.DeleteEndpoint(dctx, ep.ID); derr != nil && !errors.Is(derr, ErrNotFound) {
				err = errors.Join(err, fmt.Errorf("and deleting it failed: %w", derr))
			}
			cancel()
		}
		return fail(err)
	}
	return p.endpoint(ep, s.Resource, s.ConfigHash), nil
}

// apply makes the resource's endpoint look like want.
func (p *Provider) apply(ctx context.Context, resource string, want EndpointRequest) (Endpoint, bool, error) {
	ep, action, err := Ensure(ctx, p.cfg.Client, p.cfg.App, resource, want)
	if err == nil && action != ActionUnchanged {
		p.log.Info("runpod: endpoint "+action, "resource", resource, "endpoint", ep.ID)
	}
	return ep, action == ActionCreated, err
}

// What Ensure did.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
)

// Ensure makes app's endpoint of resource ("" = the mothership's) look
// like want: it creates it, or patches only the fields that differ (a
// rolling release), or calls nothing when none does. Endpoints that are
// not app's are never touched.
func Ensure(ctx context.Context, c *Client, app, resource string, want EndpointRequest) (ep Endpoint, action string, err error) {
	mine, err := Find(ctx, c, app, resource)
	if err != nil {
		return ep, "", err
	}
	if len(mine) == 0 {
		ep, err = c.CreateEndpoint(ctx, want)
		var ae *APIError
		if err != nil && !(errors.As(err, &ae) && !ae.Retryable()) {
			// A create that failed on the way may have happened: look before anything else.
			if again, lerr := Find(ctx, c, app, resource); lerr == nil && len(again) > 0 {
				mine, err = again, nil
			}
		}
		if err != nil {
			return ep, "", err
		}
		if len(mine) == 0 {
			return ep, ActionCreated, nil
		}
	}
	cur := mine[0] // others are duplicates: the mothership undeploys them
	if why := mismatch(cur, want); why != "" {
		return cur, "", fmt.Errorf("endpoint %s cannot be updated in place (%s): undeploy it, then deploy again", cur.ID, why)
	}
	diff := patch(cur, want)
	if len(diff) == 0 {
		return cur, ActionUnchanged, nil
	}
	if ep, err = c.UpdateEndpoint(ctx, cur.ID, diff); err != nil {
		return cur, "", err
	}
	return ep, ActionUpdated, nil
}

// Find lists app's endpoints of resource: "" = the mothership's, "*" =
// every resource's but the mothership's.
func Find(ctx context.Context, c *Client, app, resource string) ([]Endpoint, error) {
	all, err := c.ListEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	var out []Endpoint
	for _, ep := range all {
		r := ep.Env[EnvResource]
		if (resource == "*" && r != "" || r == resource) && Owned(ep, app, r) {
			out = append(out, ep)
		}
	}
	return out, nil
}

// waitHealthy waits for a load-balanced endpoint's health URL to answer
// 200 (a request scales it from zero), and for a queue endpoint with
// always-on workers to have one on the latest release. A queue endpoint
// without any is healthy at once: its queue holds jobs until a worker starts.
func (p *Provider) waitHealthy(ctx context.Context, ep Endpoint) error {
	if ep.Type != TypeLoadBalancer && ep.Workers.Min == 0 {
		return nil
	}
	var last string
	for {
		ok, why := p.healthy(ctx, ep)
		if ok {
			return nil
		}
		last = why
		t := time.NewTimer(p.cfg.HealthPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("endpoint %s not healthy in time (%s): %w", ep.ID, last, ctx.Err())
		case <-t.C:
		}
	}
}

func (p *Provider) healthy(ctx context.Context, ep Endpoint) (bool, string) {
	if ep.Type == TypeLoadBalancer {
		return Healthy(ctx, p.healthc, ep, p.cfg.Client.Key)
	}
	w, err := p.cfg.Client.Workers(ctx, ep.ID)
	if err != nil {
		return false, err.Error()
	}
	for _, wk := range w.Workers {
		if !wk.IsStale && (wk.Status == "IDLE" || wk.Status == "RUNNING") {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%d worker(s), none ready on the latest release", len(w.Workers))
}

// Healthy asks a load-balanced endpoint's health URL once: 200 is healthy.
func Healthy(ctx context.Context, hc *http.Client, ep Endpoint, key string) (bool, string) {
	u := ep.RequestURLs["health"]
	if u == "" {
		u = "https://" + ep.ID + ".api.runpod.ai/ping"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		return false, "health check: " + strings.ReplaceAll(err.Error(), key, "***")
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, fmt.Sprintf("health check answered %d", resp.StatusCode)
}

// Undeploy deletes e when it is this app's; gone already is no error.
func (p *Provider) Undeploy(ctx context.Context, e provider.Endpoint) error {
	ep, err := p.cfg.Client.Endpoint(ctx, e.ID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runpod: undeploy %s: %w", e.ID, err)
	}
	if !Owned(ep, p.cfg.App, ep.Env[EnvResource]) || ep.Env[EnvResource] == "" {
		return fmt.Errorf("runpod: undeploy %s (%s): %w", e.ID, ep.Name, provider.ErrNotOwned)
	}
	if err := p.cfg.Client.DeleteEndpoint(ctx, e.ID); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("runpod: undeploy %s: %w", e.ID, err)
	}
	p.log.Info("runpod: endpoint deleted", "resource", e.Resource, "endpoint", e.ID)
	return nil
}

// List returns this app's endpoints (never the mothership's own).
func (p *Provider) List(ctx context.Context) ([]provider.Endpoint, error) {
	mine, err := Find(ctx, p.cfg.Client, p.cfg.App, "*")
	if err != nil {
		return nil, fmt.Errorf("runpod: list: %w", err)
	}
	out := make([]provider.Endpoint, 0, len(mine))
	for _, ep := range mine {
		out = append(out, p.endpoint(ep, ep.Env[EnvResource], ""))
	}
	return out, nil
}
