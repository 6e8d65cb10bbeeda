package flash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// Defaults of an object type's limits (see ObjectOption).
const (
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultMaxInstances = 1000
	DefaultMaxWaiting   = 64
)

// ErrObjectLost is a call to an object's instance that no longer exists:
// its replica died or restarted, it was closed, or it was evicted after
// being idle. An instance is never silently recreated.
var ErrObjectLost = flasherr.ErrObjectLost

// ObjectOption configures an object type (RegisterObject).
type ObjectOption func(*objectLimits)

type objectLimits struct {
	idle    time.Duration
	max     int
	waiting int
}

// WithIdleTimeout evicts an instance after d without a call; default
// DefaultIdleTimeout.
func WithIdleTimeout(d time.Duration) ObjectOption {
	return func(l *objectLimits) { l.idle = d }
}

// WithMaxInstances bounds the instances one replica holds at once; default
// DefaultMaxInstances. New fails with CodeResourceExhausted (429) beyond it.
func WithMaxInstances(n int) ObjectOption {
	return func(l *objectLimits) { l.max = n }
}

// WithMaxWaiting bounds the calls that may wait for one instance while a
// method of it runs; default DefaultMaxWaiting. A call beyond fails with
// CodeResourceExhausted (429).
func WithMaxWaiting(n int) ObjectOption {
	return func(l *objectLimits) { l.waiting = n }
}

// objectType is what the app keeps of a registered object, untyped: the
// wire side of its constructor and methods.
type objectType struct {
	app      *App
	name     string
	resource *Resource
	limits   objectLimits
	// bindNew decodes the constructor's input and returns the construction.
	bindNew func(json.RawMessage) (func(context.Context) (any, error), error)
	methods []methodInfo
}

// methodInfo is one method, untyped: bind decodes its input and returns the
// call on an instance.
type methodInfo struct {
	name string
	bind func(json.RawMessage) (func(ctx context.Context, v any) (any, error), error)
}

// Object is a handle on a registered object type: a Go type T whose
// instances live on a replica of one resource, made by a constructor
// taking Init.
type Object[T, Init any] struct {
	typ  *objectType
	ctor func(context.Context, Init) (*T, error)
	via  *Client // set by BindObject: every call goes through it
}

// RegisterObject adds a stateful object type to r under name (unique among
// the app's functions; the manifest lists it with "is_class": true).
// Object.New runs ctor on a replica of r and returns a handle on the
// instance; the methods registered with Method run on that replica, one at
// a time per instance. r may be queue-based or load-balanced.
func RegisterObject[T, Init any](r *Resource, name string, ctor func(context.Context, Init) (*T, error), opts ...ObjectOption) *Object[T, Init] {
	a := r.app
	switch {
	case ctor == nil:
		a.problem("object %q: nil constructor", name)
	case !manifest.ValidFunctionName(name):
		a.problem("object %q: name must be a Go identifier", name)
	case slices.ContainsFunc(a.funcs, func(f funcInfo) bool { return f.name == name }):
		a.problem("object %q: the name is taken (function and object names are unique across the app)", name)
	}
	lim := objectLimits{idle: DefaultIdleTimeout, max: DefaultMaxInstances, waiting: DefaultMaxWaiting}
	for _, o := range opts {
		o(&lim)
	}
	if lim.idle <= 0 || lim.max <= 0 || lim.waiting < 0 {
		a.problem("object %q: idle timeout and instance bound must be positive, waiting bound not negative", name)
	}
	t := &objectType{app: a, name: name, resource: r, limits: lim}
	t.bindNew = func(raw json.RawMessage) (func(context.Context) (any, error), error) {
		in, err := decodeInput[Init](raw)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (any, error) { return construct(ctx, name, ctor, in) }, nil
	}
	a.funcs = append(a.funcs, funcInfo{name: name, resource: r, module: modulePath(ctor), isClass: true})
	a.objects = append(a.objects, t)
	return &Object[T, Init]{typ: t, ctor: ctor}
}

// construct runs ctor, refusing a nil instance.
func construct[T, Init any](ctx context.Context, name string, ctor func(context.Context, Init) (*T, error), in Init) (any, error) {
	v, err := ctor(ctx, in)
	if err == nil && v == nil {
		err = fmt.Errorf("object %s: the constructor returned no instance and no error", name)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// decodeInput decodes a JSON input into In; an empty body or null is In's
// zero value.
func decodeInput[In any](raw json.RawMessage) (In, error) {
	var v In
	if body := bytes.TrimSpace(raw); len(body) > 0 && !bytes.Equal(body, []byte("null")) {
		if err := json.Unmarshal(body, &v); err != nil {
			return v, fmt.Errorf("input does not fit %s: %w", reflect.TypeFor[In](), err)
		}
	}
	return v, nil
}

// Name returns the object type's name.
func (o *Object[T, Init]) Name() string { return o.typ.name }

// BindObject returns a handle on o whose New, Close and Attach, and the
// methods called with the handles it gives, go through c to the app's
// deployment (see Bind).
func BindObject[T, Init any](c *Client, o *Object[T, Init]) *Object[T, Init] {
	return &Object[T, Init]{typ: o.typ, ctor: o.ctor, via: c}
}

// Handle names one instance of an object type T: the object's name and the
// instance's id, which starts with the id of the replica that holds it.
// It is a plain value: store it, pass it to another function or program as
// JSON, and Attach an id back into a Handle. The zero Handle names no
// instance.
type Handle[T any] struct {
	Object string  `json:"object"`
	ID     string  `json:"id"`
	via    *Client // made by an Object bound to a Client: calls go through it
}

// New runs the constructor with init on a replica of the object's resource
// (this process when it serves that resource, or everything) and returns a
// handle on the new instance. It fails with CodeResourceExhausted when the
// replica holds its maximum of instances.
func (o *Object[T, Init]) New(ctx context.Context, init Init) (Handle[T], error) {
	h := Handle[T]{Object: o.typ.name, via: o.via}
	var err error
	h.ID, err = o.typ.create(ctx, o.via, init, func(ctx context.Context) (any, error) {
		return construct(ctx, o.typ.name, o.ctor, init)
	})
	if err != nil {
		return Handle[T]{}, err
	}
	return h, nil
}

// Attach returns the handle on instance id of o, as New gave it (Handle.ID):
// for an id that went through JSON, a URL or a database. It checks the
// id's form only; a call tells whether the instance still exists.
func (o *Object[T, Init]) Attach(id string) (Handle[T], error) {
	if _, ok := wire.ObjectReplica(id); !ok {
		return Handle[T]{}, flasherr.Errorf(flasherr.CodeInvalidArgument, "object %s: %q is not an instance id", o.typ.name, id)
	}
	return Handle[T]{Object: o.typ.name, ID: id, via: o.via}, nil
}

// Close ends the instance h names: it waits for a method running on it,
// then calls its Close method when T has one (Close() error or
// Close(context.Context) error), and forgets it. Closing an instance that
// no longer exists returns ErrObjectLost.
func (o *Object[T, Init]) Close(ctx context.Context, h Handle[T]) error {
	if err := o.typ.check(h.Object, h.ID, ""); err != nil {
		return err
	}
	return o.typ.call(ctx, via(o.via, h.via), h.ID, "", nil, nil, nil)
}

// via is the Client a call goes through: the object's, else the handle's.
func via(obj, h *Client) *Client {
	if obj != nil {
		return obj
	}
	return h
}

// MethodFunc is a handle on a method of an object type T: call it with a
// Handle[T] and it runs on the replica holding that instance.
type MethodFunc[T, In, Out any] struct {
	typ  *objectType
	name string
	fn   func(context.Context, *T, In) (Out, error)
}

// Method adds a method to object type o under name (unique on o). fn runs
// on the replica that holds the instance, with the instance, and never
// while another method of the same instance runs: calls to one instance
// are served one at a time, in turn, so fn may change *T without locks.
func Method[T, Init, In, Out any](o *Object[T, Init], name string, fn func(context.Context, *T, In) (Out, error)) *MethodFunc[T, In, Out] {
	t := o.typ
	switch {
	case fn == nil:
		t.app.problem("object %q method %q: nil function", t.name, name)
	case !manifest.ValidFunctionName(name):
		t.app.problem("object %q method %q: name must be a Go identifier", t.name, name)
	case slices.ContainsFunc(t.methods, func(m methodInfo) bool { return m.name == name }):
		t.app.problem("object %q method %q is registered twice", t.name, name)
	}
	t.methods = append(t.methods, methodInfo{name: name, bind: func(raw json.RawMessage) (func(context.Context, any) (any, error), error) {
		in, err := decodeInput[In](raw)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, v any) (any, error) { return fn(ctx, v.(*T), in) }, nil
	}})
	return &MethodFunc[T, In, Out]{typ: t, name: name, fn: fn}
}

// Name returns the method's name.
func (m *MethodFunc[T, In, Out]) Name() string { return m.name }

// Call runs the method with in on the instance h names, on the replica that
// holds it: in this process, or straight on that replica when another one
// holds it, or through the gateway for a handle from a bound Object. It
// fails with ErrObjectLost (errors.Is) when the instance no longer exists.
func (m *MethodFunc[T, In, Out]) Call(ctx context.Context, h Handle[T], in In) (Out, error) {
	var out Out
	if err := m.typ.check(h.Object, h.ID, m.name); err != nil {
		return out, err
	}
	err := m.typ.call(ctx, h.via, h.ID, m.name, func(ctx context.Context, v any) error {
		var err error
		out, err = m.fn(ctx, v.(*T), in)
		return err
	}, in, &out)
	return out, err
}

// check refuses a handle that is not one of t's instances.
func (t *objectType) check(object, id, method string) error {
	what := "close"
	if method != "" {
		what = "method " + method
	}
	switch {
	case object != t.name:
		return flasherr.Errorf(flasherr.CodeInvalidArgument, "object %s %s: the handle names object %q", t.name, what, object)
	case id == "":
		return flasherr.Errorf(flasherr.CodeInvalidArgument, "object %s %s: empty handle (make one with New or Attach)", t.name, what)
	}
	if _, ok := wire.ObjectReplica(id); !ok {
		return flasherr.Errorf(flasherr.CodeInvalidArgument, "object %s %s: %q is not an instance id", t.name, what, id)
	}
	return nil
}
