package flash

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/serve"
)

// route says where t's instances live: nil for this process (no manifest
// routing, or t is not in the manifest), else a target naming every replica
// of t's resource.
func (t *objectType) route(ctx context.Context) (*child.Caller, *child.Target, error) {
	rt := t.app.caller.Load()
	if rt == nil {
		return nil, nil, nil
	}
	tg, err := rt.Route(ctx, t.name)
	return rt, tg, err
}

// create makes an instance and returns its id: through c when not nil, in
// this process when it serves t's resource, else on a replica of it.
func (t *objectType) create(ctx context.Context, c *Client, init any, local func(context.Context) (any, error)) (string, error) {
	path := wire.ObjectPath(t.name, "", "")
	var ref wire.ObjectRef
	var err error
	if c != nil {
		err = c.iv.Invoke(ctx, c.objectTarget(t, http.MethodPost, path), init, &ref)
	} else {
		rt, tg, rerr := t.route(ctx)
		switch {
		case rerr != nil:
			return "", rerr
		case tg == nil || tg.Resource == t.app.Identity():
			return t.app.host.create(ctx, t, local)
		case len(tg.URLs) == 0:
			return "", &flasherr.NotReadyError{Function: t.name, Resource: tg.Resource, Status: string(tg.Status), Reason: tg.Error}
		}
		err = rt.Invoker().Invoke(ctx, &child.Target{Function: t.name, Resource: tg.Resource, LB: true,
			Method: http.MethodPost, Path: path, URLs: tg.URLs}, init, &ref)
	}
	if err != nil {
		return "", err
	}
	if _, ok := wire.ObjectReplica(ref.ID); !ok || ref.Object != t.name {
		return "", fmt.Errorf("object %s: %w: the answer names no instance of it (%q %q)", t.name, flasherr.ErrSerialization, ref.Object, ref.ID)
	}
	return ref.ID, nil
}

// call runs method (Close when "") on instance id: through c when not nil,
// with local in this process when it holds the instance, else on the
// replica that does, found by the replica id the instance id starts with.
func (t *objectType) call(ctx context.Context, c *Client, id, method string, local func(context.Context, any) error, in, out any) error {
	verb, path := http.MethodPost, wire.ObjectPath(t.name, id, method)
	if method == "" {
		verb = http.MethodDelete
	}
	if c != nil {
		return c.iv.Invoke(ctx, c.objectTarget(t, verb, path), in, out)
	}
	rt, tg, err := t.route(ctx)
	if err != nil {
		return err
	}
	replica, _ := wire.ObjectReplica(id)
	if tg == nil || tg.Resource == t.app.Identity() && replica == t.app.host.replica {
		if method == "" {
			return t.app.host.close(ctx, t, id)
		}
		return t.app.host.run(ctx, t, id, local)
	}
	iv := rt.Invoker()
	probe := t.probe(iv, tg.Resource)
	holder := t.app.locator.Find(ctx, replica, tg.URLs, probe)
	if holder == "" {
		if err := ctx.Err(); err != nil {
			return err
		}
		return &flasherr.ObjectLostError{Object: t.name, ID: id,
			Reason: "no replica of " + tg.Resource + " is replica " + replica + " any more: it stopped or restarted"}
	}
	err = iv.Invoke(ctx, &child.Target{Function: t.name, Resource: tg.Resource, LB: true,
		Method: verb, Path: path, URLs: []string{holder}, Pinned: true}, in, out)
	if errors.Is(err, flasherr.ErrEndpointNotReady) && t.app.locator.Gone(ctx, replica, holder, probe) {
		return &flasherr.ObjectLostError{Object: t.name, ID: id, Reason: "its replica no longer answers: " + err.Error()}
	}
	return err
}

// probe asks a replica of resource for its replica id.
func (t *objectType) probe(iv *child.Invoker, resource string) func(context.Context, string) (string, error) {
	return func(ctx context.Context, u string) (string, error) {
		var a wire.ReplicaAnswer
		err := iv.Invoke(ctx, &child.Target{Function: t.name, Resource: resource, LB: true,
			Method: http.MethodGet, Path: wire.ReplicaPath, URLs: []string{u}, Pinned: true}, nil, &a)
		return a.Replica, err
	}
}

// objectTarget is the gateway's address of an object call on c's app.
func (c *Client) objectTarget(t *objectType, method, path string) *child.Target {
	return &child.Target{Function: t.name, Resource: t.resource.name, LB: true, Method: method, Path: path,
		URLs: []string{c.base + "/" + url.PathEscape(t.resource.name)}}
}

// objectFuncs are the routes that serve the objects of resource ("" =
// all) on this replica (see wire.ObjectsPath).
func (a *App) objectFuncs(resource string) []serve.Func {
	var out []serve.Func
	h := a.host
	for _, t := range a.objects {
		if resource != "" && t.resource.name != resource {
			continue
		}
		out = append(out, serve.Func{Name: t.name, Resource: t.resource.name, Internal: true,
			Method: http.MethodPost, Path: wire.ObjectPath(t.name, "", ""),
			Bind: func(in serve.Input) (serve.Job, error) {
				construct, err := t.bindNew(in.JSON)
				if err != nil {
					return nil, err
				}
				return func(ctx context.Context) (any, error) {
					id, err := h.create(ctx, t, construct)
					if err != nil {
						return nil, err
					}
					serve.SetStatus(ctx, http.StatusCreated)
					serve.SetHeader(ctx, wire.HeaderReplica, h.replica)
					return wire.ObjectRef{Object: t.name, ID: id}, nil
				}, nil
			}})
		out = append(out, serve.Func{Name: t.name + ":close", Resource: t.resource.name, Internal: true,
			Method: http.MethodDelete, Path: wire.ObjectPath(t.name, "{id}", ""),
			Bind: func(in serve.Input) (serve.Job, error) {
				id, err := instanceID(in)
				if err != nil {
					return nil, err
				}
				return func(ctx context.Context) (any, error) {
					serve.SetHeader(ctx, wire.HeaderReplica, h.replica)
					if err := h.close(ctx, t, id); err != nil {
						return nil, err
					}
					serve.SetStatus(ctx, http.StatusNoContent)
					return nil, nil
				}, nil
			}})
		for _, m := range t.methods {
			out = append(out, serve.Func{Name: t.name + "." + m.name, Resource: t.resource.name, Internal: true,
				Method: http.MethodPost, Path: wire.ObjectPath(t.name, "{id}", m.name),
				Bind: func(in serve.Input) (serve.Job, error) {
					id, err := instanceID(in)
					if err != nil {
						return nil, err
					}
					call, err := m.bind(in.JSON)
					if err != nil {
						return nil, err
					}
					return func(ctx context.Context) (any, error) {
						serve.SetHeader(ctx, wire.HeaderReplica, h.replica)
						var out any
						err := h.run(ctx, t, id, func(ctx context.Context, v any) error {
							var err error
							out, err = call(ctx, v)
							return err
						})
						return out, err
					}, nil
				}})
		}
	}
	if len(out) > 0 {
		out = append(out, serve.Func{Name: "flash:replica", Internal: true, Method: http.MethodGet, Path: wire.ReplicaPath,
			Bind: func(serve.Input) (serve.Job, error) {
				return func(context.Context) (any, error) { return wire.ReplicaAnswer{Replica: h.replica}, nil }, nil
			}})
	}
	return out
}

// instanceID is the {id} of an object route, checked.
func instanceID(in serve.Input) (string, error) {
	id := in.Params["id"]
	if _, ok := wire.ObjectReplica(id); !ok {
		return "", fmt.Errorf("%q is not an instance id", id)
	}
	return id, nil
}
