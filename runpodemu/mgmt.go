package runpodemu

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// maxMgmtBody bounds a management request body.
const maxMgmtBody = 1 << 20

// mgmtHandler is a management route: it returns the status and value to
// answer, or an error rendered as RFC 9457 problem+json.
type mgmtHandler func(r *http.Request) (int, any, *apiError)

func (e *Emulator) routes() {
	m := http.NewServeMux()
	handle := func(pattern string, h mgmtHandler) { m.Handle(pattern, e.mgmtRoute(h)) }
	handle("GET /v2/serverless", e.listEndpoints)
	handle("POST /v2/serverless", withBody(e.createEndpoint))
	handle("GET /v2/serverless/{id}", e.getEndpoint)
	handle("PATCH /v2/serverless/{id}", withBody(e.patchEndpoint))
	handle("DELETE /v2/serverless/{id}", e.deleteEndpoint)
	handle("GET /v2/serverless/{id}/workers", e.listWorkers)
	handle("GET /v2/serverless/{id}/releases", e.listReleases)
	handle("GET /v2/templates", e.listTemplates)
	handle("POST /v2/templates", withBody(e.createTemplate))
	handle("GET /v2/templates/{id}", e.getTemplate)
	handle("PATCH /v2/templates/{id}", withBody(e.patchTemplate))
	handle("DELETE /v2/templates/{id}", e.deleteTemplate)
	handle("GET /v2/network-volumes", e.listVolumes)
	handle("POST /v2/network-volumes", withBody(e.createVolume))
	handle("GET /v2/network-volumes/{id}", e.getVolume)
	handle("PATCH /v2/network-volumes/{id}", withBody(e.patchVolume))
	handle("DELETE /v2/network-volumes/{id}", e.deleteVolume)
	handle("/", func(*http.Request) (int, any, *apiError) { return 0, nil, errNotFound })
	e.mgmt = m
	e.jobs = e.jobRoutes()
}

// withBody reads the bounded request body before h runs, so that no handler
// holds e.mu while a client sends slowly.
func withBody(h func(r *http.Request, body []byte) (int, any, *apiError)) mgmtHandler {
	return func(r *http.Request) (int, any, *apiError) {
		body, perr := readBody(r, maxMgmtBody)
		if perr != nil {
			return 0, nil, perr
		}
		return h(r, body)
	}
}

func (e *Emulator) mgmtRoute(h mgmtHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !keyOK(bearer(r), e.key) {
			writeProblem(w, errUnauthorized)
			return
		}
		status, v, perr := h(r)
		if perr != nil {
			writeProblem(w, perr)
			return
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v)
	})
}

// writeProblem renders an error as RFC 9457 problem+json
// (RUNPOD_REST_V2.md §8).
func writeProblem(w http.ResponseWriter, p *apiError) {
	body := map[string]any{"title": http.StatusText(p.Status), "status": p.Status, "detail": p.Detail}
	if len(p.Errors) > 0 {
		body["errors"] = p.Errors
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// bearer returns the token of "Authorization: Bearer <key>", or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// bearerOrRaw accepts both forms the job API sees: SDKs send Bearer, the
// docs' curl lines the raw key (RUNPOD.md §1).
func bearerOrRaw(r *http.Request) string {
	if t := bearer(r); t != "" {
		return t
	}
	return strings.TrimSpace(r.Header.Get("Authorization"))
}

// keyOK compares in constant time; both sides are hashed so not even the
// length leaks.
func keyOK(got, want string) bool {
	if got == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// readBody reads a bounded request body.
func readBody(r *http.Request, limit int64) ([]byte, *apiError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, errorf(400, "reading the request body: "+err.Error())
	}
	if int64(len(b)) > limit {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body over the limit")
	}
	return b, nil
}

// saveOrUndo saves the state; when that fails it runs undo, so the failed
// request changes nothing, and answers 500. The caller holds e.mu.
func (e *Emulator) saveOrUndo(undo func()) *apiError {
	if err := e.saveLocked(); err != nil {
		undo()
		return errorf(500, "saving state: "+err.Error())
	}
	return nil
}

// appendSaved adds rec to *list and saves, or leaves *list as it was.
func appendSaved[T any](e *Emulator, list *[]*T, rec *T) *apiError {
	*list = append(*list, rec)
	return e.saveOrUndo(func() { *list = (*list)[:len(*list)-1] })
}

// getCopy answers a copy of the template or volume named by the path.
func getCopy[T any](e *Emulator, r *http.Request, find func(id string) *T) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := find(r.PathValue("id"))
	if v == nil {
		return 0, nil, errNotFound
	}
	return 200, *v, nil
}

// patchSaved answers a PATCH of a template or volume: under e.mu it finds
// the record named by the path, builds and checks its new value with
// patch, then stores and saves it, or answers an error and changes nothing.
func patchSaved[T any](e *Emulator, r *http.Request, find func(id string) *T, patch func(cur T) (T, *apiError)) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := find(r.PathValue("id"))
	if cur == nil {
		return 0, nil, errNotFound
	}
	v, perr := patch(*cur)
	if perr != nil {
		return 0, nil, perr
	}
	before := *cur
	*cur = v
	if perr := e.saveOrUndo(func() { *cur = before }); perr != nil {
		return 0, nil, perr
	}
	return 200, v, nil
}

// removeSaved takes (*list)[i] out and saves, or leaves *list as it was.
func removeSaved[T any](e *Emulator, list *[]*T, i int) *apiError {
	rec := (*list)[i]
	*list = slices.Delete(*list, i, i+1)
	return e.saveOrUndo(func() { *list = slices.Insert(*list, i, rec) })
}

// view is an endpoint as answered, with its request URLs.
func (e *Emulator) view(rec *endpointRecord) Endpoint {
	ep := cloneEndpoint(rec.Endpoint)
	base := e.url
	if ep.Type == typeLB {
		health := "/ping"
		if p := ep.Env["HEALTH_CHECK_PATH"]; p != "" {
			health = p
		}
		ep.RequestURLs = map[string]string{"base": base + "/lb/" + ep.ID, "health": base + "/lb/" + ep.ID + health}
	} else {
		v2 := base + "/v2/" + ep.ID
		ep.RequestURLs = map[string]string{"run": v2 + "/run", "runSync": v2 + "/runsync",
			"status": v2 + "/status/{job_id}", "stream": v2 + "/stream/{job_id}", "cancel": v2 + "/cancel/{job_id}",
			"retry": v2 + "/retry/{job_id}", "purgeQueue": v2 + "/purge-queue", "health": v2 + "/health"}
	}
	return ep
}

func (e *Emulator) listEndpoints(*http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Endpoint, 0, len(e.endpoints))
	for _, rec := range e.endpoints {
		out = append(out, e.view(rec))
	}
	return 200, map[string]any{"endpoints": out}, nil
}

func (e *Emulator) getEndpoint(r *http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := e.endpointLocked(r.PathValue("id"))
	if rec == nil {
		return 0, nil, errNotFound
	}
	return 200, e.view(rec), nil
}

// lookupLocked is the template lookup decoders use; the caller holds e.mu.
func (e *Emulator) lookupLocked(id string) (Template, bool) {
	if t := e.templateLocked(id); t != nil {
		return *t, true
	}
	return Template{}, false
}

// checkVolumesLocked reports network volumes that do not exist.
func (e *Emulator) checkVolumesLocked(ids []string) *apiError {
	for _, id := range ids {
		if e.volumeLocked(id) == nil {
			return errorf(400, "network volume "+id+" not found")
		}
	}
	return nil
}

func (e *Emulator) createEndpoint(r *http.Request, body []byte) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, tmplID, perr := decodeEndpointCreate(body, e.lookupLocked)
	if perr != nil {
		return 0, nil, perr
	}
	if perr := e.checkVolumesLocked(ep.NetworkVolumes); perr != nil {
		return 0, nil, perr
	}
	if len(e.endpoints) >= maxEndpoints {
		return 0, nil, errorf(429, "limit of endpoints reached")
	}
	ep.ID, ep.CreatedAt = randomID(14), time.Now().UTC().Truncate(time.Millisecond)
	rec := &endpointRecord{Endpoint: ep, Version: 1, TemplateID: tmplID,
		Releases: []Release{{ID: randomID(8), Version: 1, Source: "MANUAL", CreatedAt: ep.CreatedAt, Diff: []Change{}}}}
	if perr := appendSaved(e, &e.endpoints, rec); perr != nil {
		return 0, nil, perr
	}
	e.runs[ep.ID] = newEndpointRun(rec)
	e.log.Info("endpoint created", "endpoint", ep.ID, "name", ep.Name, "type", ep.Type)
	return http.StatusCreated, e.view(rec), nil
}

// releaseFields are the fields whose change makes a new release: the
// container and placement, which workers must restart to pick up.
// Workers, scaling and timeout reach the autoscaler at once.
func releaseDiff(old, cur Endpoint) []Change {
	pairs := []struct {
		field    string
		old, cur any
	}{
		{"image", old.Image, cur.Image}, {"args", old.Args, cur.Args}, {"disk", old.Disk, cur.Disk},
		{"ports", old.Ports, cur.Ports}, {"env", old.Env, cur.Env}, {"registry", old.Registry, cur.Registry},
		{"gpu", old.GPU, cur.GPU}, {"cpu", old.CPU, cur.CPU}, {"dataCenterIds", old.DataCenterIDs, cur.DataCenterIDs},
		{"networkVolumes", old.NetworkVolumes, cur.NetworkVolumes}, {"flashboot", old.Flashboot, cur.Flashboot},
	}
	var diff []Change
	for _, p := range pairs {
		a, _ := json.Marshal(p.old)
		b, _ := json.Marshal(p.cur)
		if !bytes.Equal(a, b) {
			diff = append(diff, Change{Field: p.field, Old: a, New: b})
		}
	}
	return diff
}

func (e *Emulator) patchEndpoint(r *http.Request, body []byte) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := e.endpointLocked(r.PathValue("id"))
	if rec == nil {
		return 0, nil, errNotFound
	}
	ep, tmplID, perr := decodeEndpointPatch(rec.Endpoint, body, e.lookupLocked)
	if perr != nil {
		return 0, nil, perr
	}
	if perr := e.checkVolumesLocked(ep.NetworkVolumes); perr != nil {
		return 0, nil, perr
	}
	before := *rec
	rec.Endpoint = ep
	if tmplID != "" {
		rec.TemplateID = tmplID
	}
	if diff := releaseDiff(before.Endpoint, ep); len(diff) > 0 {
		rec.Version++
		rel := Release{ID: randomID(8), Version: rec.Version, Source: "MANUAL", CreatedAt: time.Now().UTC(), Diff: diff}
		rec.Releases = append([]Release{rel}, rec.Releases...)
		if len(rec.Releases) > maxReleases {
			rec.Releases = rec.Releases[:maxReleases]
		}
	}
	if perr := e.saveOrUndo(func() { *rec = before }); perr != nil {
		return 0, nil, perr
	}
	if rec.Version != before.Version {
		e.log.Info("endpoint updated: new release", "endpoint", ep.ID, "version", rec.Version)
	}
	run := e.runs[ep.ID]
	run.wake()
	e.scaleLocked(run, time.Now()) // outdated idle workers go at once
	return 200, e.view(rec), nil
}

// deleteEndpoint terminates the workers and cancels queued and running jobs
// (RUNPOD_REST_V2.md §2).
func (e *Emulator) deleteEndpoint(r *http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := r.PathValue("id")
	i := slices.IndexFunc(e.endpoints, func(ep *endpointRecord) bool { return ep.ID == id })
	if i < 0 {
		return 0, nil, errNotFound
	}
	if perr := removeSaved(e, &e.endpoints, i); perr != nil {
		return 0, nil, perr
	}
	run := e.runs[id]
	delete(e.runs, id)
	run.deleted = true
	for _, w := range run.workers {
		e.stopWorkerLocked(w, "endpoint deleted")
	}
	for _, j := range run.jobs {
		if !j.terminal() {
			e.finishLocked(run, j, statusCancelled, nil, "")
		}
	}
	run.wake()
	os.RemoveAll(filepath.Join(e.cfg.Dir, "images", id))
	e.log.Info("endpoint deleted", "endpoint", id)
	return http.StatusNoContent, nil, nil
}

func (e *Emulator) listWorkers(r *http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := e.endpointLocked(r.PathValue("id"))
	if rec == nil {
		return 0, nil, errNotFound
	}
	run := e.runs[rec.ID]
	summary := map[string]int{"running": 0, "idle": 0, "initializing": 0, "throttled": 0, "unhealthy": 0, "total": 0}
	workers := []map[string]any{}
	for _, w := range run.sortedWorkers() {
		st := w.statusLocked()
		summary[strings.ToLower(st)]++
		summary["total"]++
		var gpuType *string
		if rec.GPU != nil {
			g := gpuName(rec.Endpoint)
			gpuType = &g
		}
		dc := dataCenterOf(rec.Endpoint)
		workers = append(workers, map[string]any{"id": w.id, "status": st, "isStale": w.version != rec.Version,
			"version": w.version, "gpuCount": gpuCount(rec.Endpoint), "image": w.image, "gpuTypeId": gpuType,
			"dataCenterId": dc, "uptimeSeconds": int(time.Since(w.started).Seconds()), "startedAt": w.started.UTC()})
	}
	return 200, map[string]any{"endpointVersion": rec.Version, "summary": summary, "workers": workers}, nil
}

func (e *Emulator) listReleases(r *http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := e.endpointLocked(r.PathValue("id"))
	if rec == nil {
		return 0, nil, errNotFound
	}
	run := e.runs[rec.ID]
	byVersion := map[int64]int{}
	total := 0
	for _, w := range run.workers {
		if !w.stopping {
			byVersion[w.version]++
			total++
		}
	}
	rels := slices.Clone(rec.Releases)
	for i := range rels {
		rels[i].WorkerCount = byVersion[rels[i].Version]
	}
	latest := byVersion[rec.Version]
	pct := 0
	if total > 0 {
		pct = latest * 100 / total
	}
	rollout := map[string]any{"inProgress": latest < total, "workersOnLatest": latest, "workersTotal": total, "percentOnLatest": pct}
	return 200, map[string]any{"endpointVersion": rec.Version, "rollout": rollout, "releases": rels}, nil
}

func (e *Emulator) listTemplates(*http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Template, 0, len(e.templates))
	for i := len(e.templates) - 1; i >= 0; i-- { // newest first, as runpodctl sees it
		out = append(out, *e.templates[i])
	}
	return 200, map[string]any{"templates": out}, nil
}

func (e *Emulator) getTemplate(r *http.Request) (int, any, *apiError) {
	return getCopy(e, r, e.templateLocked)
}

// nameTakenLocked reports whether another template has the name. Template
// names are unique per user in v1; v2 does not say [U], and Runpod's SDKs
// treat a name as a template's handle, so the emulator keeps them unique.
func (e *Emulator) nameTakenLocked(name, except string) bool {
	return slices.ContainsFunc(e.templates, func(t *Template) bool { return t.Name == name && t.ID != except })
}

func (e *Emulator) createTemplate(r *http.Request, body []byte) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, perr := decodeTemplate(Template{}, body, true)
	if perr != nil {
		return 0, nil, perr
	}
	if e.nameTakenLocked(t.Name, "") {
		return 0, nil, errorf(400, "template name "+t.Name+" is already in use")
	}
	if len(e.templates) >= maxTemplates {
		return 0, nil, errorf(429, "limit of templates reached")
	}
	t.ID = randomID(10)
	if perr := appendSaved(e, &e.templates, &t); perr != nil {
		return 0, nil, perr
	}
	return http.StatusCreated, t, nil
}

// patchTemplate never changes the endpoints made from the template.
func (e *Emulator) patchTemplate(r *http.Request, body []byte) (int, any, *apiError) {
	return patchSaved(e, r, e.templateLocked, func(cur Template) (Template, *apiError) {
		t, perr := decodeTemplate(cur, body, false)
		if perr == nil && e.nameTakenLocked(t.Name, t.ID) {
			perr = errorf(400, "template name "+t.Name+" is already in use")
		}
		return t, perr
	})
}

func (e *Emulator) deleteTemplate(r *http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := r.PathValue("id")
	i := slices.IndexFunc(e.templates, func(t *Template) bool { return t.ID == id })
	if i < 0 {
		return 0, nil, errNotFound
	}
	if slices.ContainsFunc(e.endpoints, func(ep *endpointRecord) bool { return ep.TemplateID == id }) {
		return 0, nil, errorf(400, "template is in use by an endpoint")
	}
	if perr := removeSaved(e, &e.templates, i); perr != nil {
		return 0, nil, perr
	}
	return http.StatusNoContent, nil, nil
}

func (e *Emulator) listVolumes(*http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Volume, 0, len(e.volumes))
	for _, v := range e.volumes {
		out = append(out, *v)
	}
	return 200, map[string]any{"networkVolumes": out}, nil
}

func (e *Emulator) getVolume(r *http.Request) (int, any, *apiError) {
	return getCopy(e, r, e.volumeLocked)
}

func (e *Emulator) createVolume(r *http.Request, body []byte) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, perr := decodeVolume(Volume{}, body, true)
	if perr != nil {
		return 0, nil, perr
	}
	if len(e.volumes) >= maxVolumes {
		return 0, nil, errorf(429, "limit of network volumes reached")
	}
	v.ID = randomID(10)
	if err := os.MkdirAll(e.volumeDir(v.ID), 0o700); err != nil {
		return 0, nil, errorf(500, "creating the volume's directory: "+err.Error())
	}
	if perr := appendSaved(e, &e.volumes, &v); perr != nil {
		os.RemoveAll(e.volumeDir(v.ID))
		return 0, nil, perr
	}
	return http.StatusCreated, v, nil
}

func (e *Emulator) patchVolume(r *http.Request, body []byte) (int, any, *apiError) {
	return patchSaved(e, r, e.volumeLocked, func(cur Volume) (Volume, *apiError) {
		return decodeVolume(cur, body, false)
	})
}

func (e *Emulator) deleteVolume(r *http.Request) (int, any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := r.PathValue("id")
	i := slices.IndexFunc(e.volumes, func(v *Volume) bool { return v.ID == id })
	if i < 0 {
		return 0, nil, errNotFound
	}
	if slices.ContainsFunc(e.endpoints, func(ep *endpointRecord) bool { return slices.Contains(ep.NetworkVolumes, id) }) {
		return 0, nil, errorf(400, "network volume is attached to an endpoint")
	}
	if perr := removeSaved(e, &e.volumes, i); perr != nil {
		return 0, nil, perr
	}
	if err := os.RemoveAll(e.volumeDir(id)); err != nil {
		e.log.Warn("runpodemu: removing a volume's directory", "volume", id, "err", err)
	}
	return http.StatusNoContent, nil, nil
}
