package mothership

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// maxResourceName bounds a resource name in a gateway path (SPEC §2.2).
const maxResourceName = 63

// gatewayTarget travels from the route handler to the proxy's Rewrite.
type gatewayTarget struct {
	base   *url.URL
	suffix string // "/run", "/status/{id}", …
}

type targetKey struct{}

// registerGateway mounts the Runpod API shape for every QB resource (SPEC §4.5).
func (m *Mothership) registerGateway(handle func(string, http.Handler)) {
	for _, route := range []struct{ pattern, suffix string }{
		{"POST /v2/{resource}/run", "/run"},
		{"POST /v2/{resource}/runsync", "/runsync"},
		{"GET /v2/{resource}/status/{id}", "/status/"},
		{"POST /v2/{resource}/cancel/{id}", "/cancel/"},
		{"GET /v2/{resource}/health", "/health"},
	} {
		handle(route.pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("resource")
			if len(name) > maxResourceName || !manifest.ValidResourceName(name) {
				// Not a name a manifest can hold: refused unlooked-up, not echoed.
				wire.WriteError(w, http.StatusNotFound, "unknown queue-based resource (not a resource name)")
				return
			}
			suffix := route.suffix
			if strings.HasSuffix(suffix, "/") {
				id := r.PathValue("id")
				if !wire.ValidJobID(id) {
					wire.WriteError(w, http.StatusNotFound, "job not found (not a job id)")
					return
				}
				suffix += url.PathEscape(id)
			}
			m.forward(w, r, name, suffix)
		}))
	}
}

// forward sends r to a replica of the QB resource name, from the current
// snapshot; unknown resources are 404, resources without a working endpoint 503.
func (m *Mothership) forward(w http.ResponseWriter, r *http.Request, name, suffix string) {
	mf, _ := m.Current()
	var res *manifest.Resource
	if mf != nil {
		res = mf.Resources[name]
	}
	if res == nil || res.LoadBalanced {
		wire.WriteError(w, http.StatusNotFound, "unknown queue-based resource "+quote(name), "resource", name,
			"available", qbNames(mf))
		return
	}
	urls := res.URLs()
	if len(urls) == 0 || res.Status == manifest.StatusFailed || res.Status == manifest.StatusPending {
		msg := "resource " + quote(name) + " is not ready"
		if res.Error != "" {
			msg += ": " + res.Error
		}
		w.Header().Set(wire.HeaderRetryAfter, "1")
		wire.WriteError(w, http.StatusServiceUnavailable, msg, "resource", name, "status", string(res.Status))
		return
	}
	raw := urls[int(m.rr.Add(1)%uint64(len(urls)))]
	base, err := url.Parse(raw)
	if err != nil || base.Host == "" {
		wire.WriteError(w, http.StatusServiceUnavailable, "resource "+quote(name)+" has an invalid endpoint URL",
			"resource", name, "endpoint_url", raw)
		return
	}
	ctx := context.WithValue(r.Context(), targetKey{}, gatewayTarget{base: base, suffix: suffix})
	m.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func (m *Mothership) newProxy() http.Handler {
	return &httputil.ReverseProxy{
		Transport: m.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(gatewayTarget)
			pr.Out.URL.Scheme = t.base.Scheme
			pr.Out.URL.Host = t.base.Host
			pr.Out.URL.Path = strings.TrimSuffix(t.base.Path, "/") + t.suffix
			pr.Out.URL.RawPath = ""
			pr.Out.Host = t.base.Host
			pr.SetXForwarded()
			// Rewrite starts from a copy of the incoming headers: Authorization
			// (the app's key, valid on every endpoint) passes through. The call
			// is one more hop, under the same request id and trace.
			meta, ok := wire.MetaFrom(pr.In.Context())
			if !ok { // not behind serve's middleware: read the headers themselves
				meta.RequestID = pr.In.Header.Get(wire.HeaderRequestID)
				meta.TraceParent = pr.In.Header.Get(wire.HeaderTraceParent)
				meta.Hops, _ = wire.ParseHops(pr.In.Header.Get(wire.HeaderHops))
			}
			if meta.RequestID != "" {
				pr.Out.Header.Set(wire.HeaderRequestID, meta.RequestID)
			}
			pr.Out.Header.Set(wire.HeaderTraceParent, wire.ChildTraceParent(meta.TraceParent))
			pr.Out.Header.Set(wire.HeaderHops, strconv.Itoa(meta.Hops+1))
		},
		ModifyResponse: func(resp *http.Response) error {
			// The mothership's middleware already set the (same) request id.
			resp.Header.Del(wire.HeaderRequestID)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t, _ := r.Context().Value(targetKey{}).(gatewayTarget)
			if r.Context().Err() != nil {
				return // the caller went away
			}
			m.log.Warn("gateway: endpoint unreachable", "url", t.base.Redacted(), "err", err)
			wire.WriteError(w, http.StatusBadGateway, "endpoint unreachable", "detail", err.Error())
		},
	}
}

func qbNames(mf *manifest.Manifest) []string {
	out := []string{}
	if mf == nil {
		return out
	}
	for _, n := range mf.ResourceNames() {
		if !mf.Resources[n].LoadBalanced {
			out = append(out, n)
		}
	}
	return out
}

func quote(s string) string { return `"` + s + `"` }
