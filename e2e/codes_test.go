package e2e

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash"
)

// TestErrorCodesTwoHops: a function's error code (testapp's lookup on back,
// flash.CodeNotFound) crosses two hops of real processes — the gateway, an
// LB route on edge or a QB function on front, then back — and reaches the
// outside caller as a 404 with "code" (LB) or in the FAILED output (QB),
// without the internal address its message named.
func TestErrorCodesTwoHops(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	ms := w.startMothership()
	ms.waitDeployed(t, 30*time.Second, "front", "back", "edge")

	t.Run("LB route through the gateway", func(t *testing.T) {
		r := mustSend(t, http.MethodGet, ms.url+"/edge/items/missing", apiKey, nil)
		var body struct {
			Error, Code string
			ErrorType   string `json:"error_type"`
		}
		r.decode(t, &body)
		if r.Code != http.StatusNotFound || body.Code != "not_found" {
			t.Fatalf("GET /edge/items/missing: %s, want 404 with code not_found", r)
		}
		if !strings.Contains(body.Error, `no item "missing"`) || strings.Contains(string(r.Body), "127.0.0.1") {
			t.Errorf("error %q: want the function's message without the internal address", body.Error)
		}
		r = mustSend(t, http.MethodGet, ms.url+"/edge/items/x7", apiKey, nil)
		if r.Code != http.StatusOK || !strings.Contains(string(r.Body), `"x7"`) {
			t.Errorf("GET /edge/items/x7: %s, want 200 with the item", r)
		}
	})
	t.Run("QB job through the gateway", func(t *testing.T) {
		r := mustSend(t, http.MethodPost, ms.url+"/v2/front/runsync", apiKey, envelope("find", map[string]string{"id": "missing"}))
		var j struct {
			Status, Error string
			Output        struct {
				Code      string `json:"code"`
				ErrorType string `json:"error_type"`
				Error     string `json:"error"`
			}
		}
		r.decode(t, &j)
		if r.Code != http.StatusOK || j.Status != "FAILED" || j.Output.Code != "not_found" {
			t.Fatalf("find missing: %s, want a FAILED job with code not_found", r)
		}
		if strings.Contains(string(r.Body), "127.0.0.1") {
			t.Errorf("the answer names an internal address: %s", r)
		}
	})
	t.Run("Go client", func(t *testing.T) {
		find, item := testappHandles()
		c, err := flash.NewClient(ms.url, apiKey)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for name, call := range map[string]func(itemIn) (itemOut, error){
			"QB find":     func(in itemIn) (itemOut, error) { return flash.Bind(c, find).Call(ctx, in) },
			"LB GET item": func(in itemIn) (itemOut, error) { return flash.Bind(c, item).Call(ctx, in) },
		} {
			if out, err := call(itemIn{ID: "k9"}); err != nil || out.ID != "k9" {
				t.Errorf("%s k9: %+v %v", name, out, err)
			}
			_, err := call(itemIn{ID: "missing"})
			var fe *flash.Error
			if !errors.As(err, &fe) || fe.Code != flash.CodeNotFound || strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("%s missing: %v, want a not_found *flash.Error without an internal address", name, err)
			}
		}
	})
}

type itemIn struct {
	ID string `json:"id"`
}

type itemOut struct {
	ID string `json:"id"`
}

// testappHandles declares testapp's find and item as another Go program
// would to call them: the same names and resources, no bodies of its own.
func testappHandles() (*flash.Func[itemIn, itemOut], *flash.Func[itemIn, itemOut]) {
	app := flash.NewApp("testapp")
	none := func(context.Context, itemIn) (itemOut, error) { return itemOut{}, errors.New("runs remotely") }
	find := flash.Register(app.Queue("front", flash.ResourceConfig{}), "find", none)
	item := flash.Route(app.LoadBalanced("edge", flash.ResourceConfig{}), "GET /items/{id}", "item", none)
	return find, item
}

// TestStreamThroughGateway: a Go client reads 10,000 streamed values from
// an LB route (NDJSON) and from a queue function (/run + /stream/{id})
// through the mothership's gateway, and a cancellation half-way stops the
// producer on the LB child.
func TestStreamThroughGateway(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	ms := w.startMothership()
	ms.waitDeployed(t, 30*time.Second, "front", "back", "edge")
	app := flash.NewApp("testapp")
	count := flash.RouteStream(app.LoadBalanced("edge", flash.ResourceConfig{}), "POST /count", "count",
		func(context.Context, struct {
			N int `json:"n"`
		}) iter.Seq2[int, error] {
			return nil
		})
	countq := flash.RegisterStream(app.Queue("back", flash.ResourceConfig{}), "countq",
		func(context.Context, struct {
			N int `json:"n"`
		}) iter.Seq2[int, error] {
			return nil
		})
	c, err := flash.NewClient(ms.url, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	remote := flash.BindStream(c, count)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, sf := range []*flash.StreamFunc[struct {
		N int `json:"n"`
	}, int]{remote, flash.BindStream(c, countq)} {
		n := 0
		var err error
		for v, verr := range sf.Stream(ctx, struct {
			N int `json:"n"`
		}{N: 10000}) {
			if verr != nil {
				err = verr
				break
			}
			if n++; v != n {
				t.Fatalf("%s: value %d is %d", sf.Name(), n, v)
			}
		}
		if err != nil || n != 10000 {
			t.Fatalf("%s: %d values, want 10000: %v", sf.Name(), n, err)
		}
	}

	stops := func() int64 {
		var s int64
		mustSend(t, http.MethodGet, ms.url+"/edge/stops", apiKey, nil).decode(t, &s)
		return s
	}
	before := stops()
	cctx, ccancel := context.WithCancel(ctx)
	n := 0
	var last error
	for _, err := range remote.Stream(cctx, struct {
		N int `json:"n"`
	}{N: 1 << 40}) {
		if err != nil {
			last = err
			break
		}
		if n++; n == 5000 {
			ccancel()
		}
	}
	ccancel()
	if !errors.Is(last, context.Canceled) {
		t.Errorf("after the cancellation: %v, want context.Canceled", last)
	}
	eventually(t, 10*time.Second, "the producer on edge stopped", func() error {
		if s := stops(); s <= before {
			return fmt.Errorf("%d producers stopped, %d before", s, before)
		}
		return nil
	})
}
