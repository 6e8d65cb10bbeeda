package mothership

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// maxResourceName bounds a resource name in a gateway path (SPEC §2.2).
const maxResourceName = 63

// gatewayTarget travels from the route handler to the proxy's Rewrite.
type gatewayTarget struct {
	raw      string // the replica's URL as the manifest lists it
	base     *url.URL
	suffix   string // "/run", "/status/{id}", "/summarize", …
	resource string
	submits  bool   // the answer names a new job: remember which replica holds it
	object   bool   // an object call: the answer names the replica (wire.HeaderReplica)
	replica  string // a call to an instance: the replica that holds it
}

type targetKey struct{}

// registerGateway mounts the Runpod API shape of every QB resource and the
// stable address of every LB resource (SPEC §4.5).
func (m *Mothership) registerGateway(handle func(string, http.Handler)) {
	for _, route := range []struct {
		pattern, suffix string
		submits         bool
	}{
		{"POST /v2/{resource}/run", "/run", true},
		{"POST /v2/{resource}/runsync", "/runsync", true},
		{"GET /v2/{resource}/status/{id}", "/status/", false},
		{"POST /v2/{resource}/cancel/{id}", "/cancel/", false},
		{"POST /v2/{resource}/retry/{id}", "/retry/", false},
		{"GET /v2/{resource}/stream/{id}", "/stream/", false},
		{"GET /v2/{resource}/health", "/health", false},
	} {
		handle(route.pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("resource")
			if !gatewayName(name) {
				// Not a name a manifest can hold: refused unlooked-up, not echoed.
				wire.WriteError(w, http.StatusNotFound, "unknown queue-based resource (not a resource name)")
				return
			}
			t := gatewayTarget{suffix: route.suffix, resource: name, submits: route.submits}
			var id string
			if strings.HasSuffix(t.suffix, "/") {
				id = r.PathValue("id")
				if !wire.ValidJobID(id) {
					wire.WriteError(w, http.StatusNotFound, "job not found (not a job id)")
					return
				}
				t.suffix += url.PathEscape(id)
			}
			m.forwardQB(w, r, t, id)
		}))
	}
	handle("POST /v2/{resource}/purge-queue", http.HandlerFunc(m.servePurgeQueue))
	m.registerObjects(handle)
	handle("/{resource}/{rest...}", http.HandlerFunc(m.forwardLB))
}

func gatewayName(name string) bool {
	return len(name) <= maxResourceName && manifest.ValidResourceName(name)
}

// replicasOf returns the endpoint URLs of the resource name of the wanted
// kind from the current snapshot, or answers 404 (unknown) or 503 (no
// working endpoint) itself and returns nil. A resource scaled to zero gets
// a replica started: the call waits for it within its deadline.
func (m *Mothership) replicasOf(w http.ResponseWriter, r *http.Request, name string, lb bool) []string {
	return m.urlsOf(w, r, name, &lb)
}

// urlsOf is replicasOf for a resource of kind *lb, or of either kind when
// lb is nil.
func (m *Mothership) urlsOf(w http.ResponseWriter, r *http.Request, name string, lb *bool) []string {
	mf, _ := m.Current()
	var res *manifest.Resource
	if mf != nil {
		res = mf.Resources[name]
	}
	if res == nil || lb != nil && res.LoadBalanced != *lb {
		kind, names := "", []string{}
		switch {
		case lb == nil:
			if mf != nil {
				names = mf.ResourceNames()
			}
		case *lb:
			kind, names = "load-balanced ", lbNames(mf)
		default:
			kind, names = "queue-based ", qbNames(mf)
		}
		wire.WriteError(w, http.StatusNotFound, "unknown "+kind+"resource "+quote(name), "resource", name,
			"available", names)
		return nil
	}
	urls := res.URLs()
	if len(urls) == 0 && res.Status == manifest.StatusIdle {
		if urls = m.waitReplica(r.Context(), name); urls == nil {
			w.Header().Set(wire.HeaderRetryAfter, "1")
			wire.WriteError(w, http.StatusServiceUnavailable, "resource "+quote(name)+" is scaled to zero and no replica started in time",
				"resource", name, "status", string(res.Status))
			return nil
		}
		return urls
	}
	if len(urls) == 0 || res.Status == manifest.StatusFailed || res.Status == manifest.StatusPending {
		msg := "resource " + quote(name) + " is not ready"
		if res.Error != "" {
			msg += ": " + RedactURLs(res.Error)
		}
		w.Header().Set(wire.HeaderRetryAfter, "1")
		wire.WriteError(w, http.StatusServiceUnavailable, msg, "resource", name, "status", string(res.Status))
		return nil
	}
	return urls
}

// forwardQB sends r to a replica of the QB resource t.resource: a job's later
// requests to the replica that holds it, anything else round robin.
func (m *Mothership) forwardQB(w http.ResponseWriter, r *http.Request, t gatewayTarget, id string) {
	urls := m.replicasOf(w, r, t.resource, false)
	if urls == nil {
		return
	}
	raw := ""
	if id != "" {
		raw = m.holderOf(r, t.resource, id, urls)
	}
	if raw == "" {
		raw = urls[int(m.rr.Add(1)%uint64(len(urls)))]
	}
	m.proxyTo(w, r, raw, t)
}

// forwardLB serves /{resource}/{rest...}: an LB route's stable address on the
// mothership, forwarded to a replica of the resource, round robin.
func (m *Mothership) forwardLB(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("resource")
	if !gatewayName(name) {
		wire.WriteError(w, http.StatusNotFound, "not found (not a resource name)")
		return
	}
	urls := m.replicasOf(w, r, name, true)
	if urls == nil {
		return
	}
	raw := urls[int(m.rr.Add(1)%uint64(len(urls)))]
	m.proxyTo(w, r, raw, gatewayTarget{resource: name, suffix: "/" + r.PathValue("rest")})
}

func (m *Mothership) proxyTo(w http.ResponseWriter, r *http.Request, raw string, t gatewayTarget) {
	base, err := url.Parse(raw)
	if err != nil || base.Host == "" {
		wire.WriteError(w, http.StatusServiceUnavailable, "resource "+quote(t.resource)+" has an invalid endpoint URL",
			"resource", t.resource)
		return
	}
	t.raw, t.base = raw, base
	defer wire.ProxyFullDuplex(w, r)() // a streamed answer is not cut while the body is sent
	ctx := context.WithValue(r.Context(), targetKey{}, t)
	m.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// holderOf returns the replica (one of urls) that holds job id: the one the
// gateway sent the job to, else, when there are several and the gateway does
// not know (it restarted, or the job was submitted elsewhere), the first that
// knows the job when asked GET /status/{id}. "" when none does.
func (m *Mothership) holderOf(r *http.Request, resource, id string, urls []string) string {
	if len(urls) == 1 {
		return urls[0]
	}
	if u, ok := m.jobs.get(resource, id); ok && slices.Contains(urls, u) {
		return u
	}
	for _, u := range urls {
		if m.holds(r, u, id) {
			m.jobs.put(resource, id, u)
			return u
		}
	}
	return ""
}

// probeTimeout bounds one replica's answer to "do you hold this job?".
const probeTimeout = 2 * time.Second

func (m *Mothership) holds(r *http.Request, replica, id string) bool {
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(replica, "/")+"/status/"+url.PathEscape(id), nil)
	if err != nil {
		return false
	}
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := m.transport.RoundTrip(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// maxSubmitAnswer bounds the answer of /run or /runsync read to learn the
// job id; a larger one (a big result) is relayed without remembering its
// job, which holderOf then finds by asking the replicas.
const maxSubmitAnswer = 64 << 10

// rememberJob notes which replica holds the job a /run or /runsync answer names.
func (m *Mothership) rememberJob(resp *http.Response, t gatewayTarget) error {
	if resp.StatusCode != http.StatusOK || resp.ContentLength > maxSubmitAnswer {
		return nil
	}
	orig := resp.Body
	body, err := io.ReadAll(io.LimitReader(orig, maxSubmitAnswer+1))
	if err != nil {
		orig.Close()
		return err
	}
	if len(body) > maxSubmitAnswer {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), orig), orig}
		return nil
	}
	orig.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var job struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &job) == nil && wire.ValidJobID(job.ID) {
		m.jobs.put(t.resource, job.ID, t.base.String())
	}
	return nil
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
			telemetry.Inject(pr.In.Context(), pr.Out.Header) // traced: the gateway's span is the parent
			pr.Out.Header.Set(wire.HeaderHops, strconv.Itoa(meta.Hops+1))
		},
		ModifyResponse: func(resp *http.Response) error {
			// The mothership's middleware already set the (same) request id.
			resp.Header.Del(wire.HeaderRequestID)
			t, ok := resp.Request.Context().Value(targetKey{}).(gatewayTarget)
			switch {
			case ok && t.submits:
				return m.rememberJob(resp, t)
			case ok && t.object:
				m.learnReplica(resp, t)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t, _ := r.Context().Value(targetKey{}).(gatewayTarget)
			if r.Context().Err() != nil {
				return // the caller went away
			}
			if t.replica != "" && m.instanceGone(r, t) {
				m.objectGone(w, r, t)
				return
			}
			m.log.Warn("gateway: endpoint unreachable", "url", t.base.Redacted(), "err", err)
			// The detail names the endpoint's internal address: logged, not sent.
			wire.WriteError(w, http.StatusBadGateway, "endpoint unreachable")
		},
	}
}

func qbNames(mf *manifest.Manifest) []string { return namesOf(mf, false) }
func lbNames(mf *manifest.Manifest) []string { return namesOf(mf, true) }

func namesOf(mf *manifest.Manifest, lb bool) []string {
	out := []string{}
	if mf == nil {
		return out
	}
	for _, n := range mf.ResourceNames() {
		if mf.Resources[n].LoadBalanced == lb {
			out = append(out, n)
		}
	}
	return out
}

func quote(s string) string { return `"` + s + `"` }
