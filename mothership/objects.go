package mothership

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// registerObjects mounts the gateway of stateful objects (docs/objects.md):
// the paths every replica serves under wire.ObjectsPath, under
// /{resource}. A new instance goes to a replica round robin; a call to an
// instance goes to the replica whose id the instance id starts with.
func (m *Mothership) registerObjects(handle func(string, http.Handler)) {
	handle("POST /{resource}/flash/objects/{object}", http.HandlerFunc(m.forwardObject))
	handle("POST /{resource}/flash/objects/{object}/{id}/{method}", http.HandlerFunc(m.forwardObject))
	handle("DELETE /{resource}/flash/objects/{object}/{id}", http.HandlerFunc(m.forwardObject))
}

func (m *Mothership) forwardObject(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("resource")
	if !gatewayName(name) {
		wire.WriteError(w, http.StatusNotFound, "not found (not a resource name)")
		return
	}
	id := r.PathValue("id")
	replica, ok := wire.ObjectReplica(id)
	if id != "" && !ok {
		wire.WriteError(w, http.StatusBadRequest, "not an instance id", "code", string(flasherr.CodeInvalidArgument))
		return
	}
	urls := m.urlsOf(w, name, nil)
	if urls == nil {
		return
	}
	t := gatewayTarget{resource: name, object: true, replica: replica,
		suffix: wire.ObjectPath(url.PathEscape(r.PathValue("object")), id, url.PathEscape(r.PathValue("method")))}
	var raw string
	if id == "" {
		raw = urls[int(m.rr.Add(1)%uint64(len(urls)))]
	} else if raw = m.objects.Find(r.Context(), replica, urls, m.askReplica(r)); raw == "" {
		if r.Context().Err() == nil {
			m.objectGone(w, r, t)
		}
		return
	}
	m.proxyTo(w, r, raw, t)
}

// askReplica asks the replica at base for its replica id, with the
// caller's key.
func (m *Mothership) askReplica(r *http.Request) func(context.Context, string) (string, error) {
	return func(ctx context.Context, base string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+wire.ReplicaPath, nil)
		if err != nil {
			return "", err
		}
		if a := r.Header.Get(wire.HeaderAuthorization); a != "" {
			req.Header.Set(wire.HeaderAuthorization, a)
		}
		resp, err := m.transport.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var a wire.ReplicaAnswer
		if resp.StatusCode != http.StatusOK {
			return "", errors.New(resp.Status)
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&a); err != nil {
			return "", err
		}
		return a.Replica, nil
	}
}

// instanceGone reports, after t's replica failed to answer, whether it is
// gone (see locate.Locator.Gone) rather than slow or briefly unreachable.
func (m *Mothership) instanceGone(r *http.Request, t gatewayTarget) bool {
	return m.objects.Gone(r.Context(), t.replica, t.raw, m.askReplica(r))
}

// learnReplica notes the replica id an object call's answer names.
func (m *Mothership) learnReplica(resp *http.Response, t gatewayTarget) {
	if id := resp.Header.Get(wire.HeaderReplica); wire.ValidReplicaID(id) {
		m.objects.Learn(t.raw, id)
	}
}

// objectGone answers a call to an instance no replica holds any more, as a
// replica answers a call to an instance it does not hold.
func (m *Mothership) objectGone(w http.ResponseWriter, r *http.Request, t gatewayTarget) {
	if t.raw != "" {
		m.objects.Forget(t.raw)
	}
	e := &flasherr.ObjectLostError{Object: r.PathValue("object"), ID: r.PathValue("id"),
		Reason: "no replica of " + quote(t.resource) + " holds it any more: its replica stopped or restarted"}
	wire.WriteError(w, http.StatusNotFound, e.Error(), "error_type", flasherr.ObjectLostType, "code", string(flasherr.CodeNotFound))
}
