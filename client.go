package flash

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// Client calls an app's functions from another Go program through its
// mothership's gateway: queue functions at /v2/{resource}/runsync,
// load-balanced routes at /{resource}/{path}. Calls have the same
// deadlines, retries and typed errors (error codes included) as calls
// between the app's own endpoints. It is safe for concurrent use.
type Client struct {
	base string
	iv   *child.Invoker
}

// ClientOption configures a Client.
type ClientOption func(*child.InvokerConfig)

// WithHTTPClient makes a Client send its requests with hc.
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *child.InvokerConfig) { c.Client = hc }
}

// NewClient returns a Client of the app whose mothership serves at
// mothershipURL ("http://127.0.0.1:8080"), sending apiKey (the app's
// FLASH_API_KEY) with every call.
func NewClient(mothershipURL, apiKey string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(mothershipURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("mothership URL %q: want http(s)://host[:port]", mothershipURL)
	}
	cfg := child.InvokerConfig{APIKey: apiKey}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: wire.NewTransport()}
	}
	return &Client{base: strings.TrimRight(mothershipURL, "/"), iv: child.NewInvoker(cfg)}, nil
}

// Bind returns a handle on f whose Call goes through c to the app's
// deployment, whatever this process's own role: f is the handle the app's
// registration returned (import the package that registers the app).
func Bind[In, Out any](c *Client, f *Func[In, Out]) *Func[In, Out] {
	return &Func[In, Out]{app: f.app, name: f.name, fn: f.fn, remote: c.target(f.app, f.name)}
}

// target is where c sends the calls of the app's function name: its
// route or queue at the gateway.
func (c *Client) target(app *App, name string) *remoteTarget {
	i := slices.IndexFunc(app.funcs, func(fi funcInfo) bool { return fi.name == name })
	if i < 0 {
		return &remoteTarget{err: fmt.Errorf("%w: %s is not registered on app %s", flasherr.ErrFunctionNotFound, name, app.name)}
	}
	info := app.funcs[i]
	t := &child.Target{Function: info.name, Resource: info.resource.name, LB: info.resource.loadBalanced, Method: info.method, Path: info.path}
	if t.LB {
		t.URLs = []string{c.base + "/" + url.PathEscape(t.Resource)}
	} else {
		t.URLs = []string{c.base + "/v2/" + url.PathEscape(t.Resource)}
	}
	return &remoteTarget{iv: c.iv, target: t}
}

// remoteTarget is where a Func bound to a Client sends its calls.
type remoteTarget struct {
	iv     *child.Invoker
	target *child.Target
	err    error // the call cannot be made
}

func (r *remoteTarget) invoke(ctx context.Context, in, out any) error {
	if r.err != nil {
		return r.err
	}
	return r.iv.Invoke(ctx, r.target, in, out)
}
