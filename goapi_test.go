package flash_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flash-go/flash"
)

type itemIn struct {
	ID      string   `json:"id"`
	Limit   int      `query:"limit"`
	Tags    []string `query:"tag"`
	Tenant  string   `header:"X-Tenant"`
	Payload string   `json:"payload"`
}

type itemOut struct {
	ID     string   `json:"id"`
	Limit  int      `json:"limit"`
	Tags   []string `json:"tags"`
	Tenant string   `json:"tenant"`
}

// goapiApp is an app with a queue function and LB routes that use request
// metadata and error codes.
func goapiApp() (app *flash.App, lookup *flash.Func[itemIn, itemOut], get *flash.Func[itemIn, itemOut], create *flash.Func[itemIn, itemOut]) {
	app = flash.NewApp("goapi")
	q := app.Queue("store", flash.ResourceConfig{})
	lookup = flash.Register(q, "lookup", func(ctx context.Context, in itemIn) (itemOut, error) {
		if in.ID == "missing" {
			return itemOut{}, flash.Errorf(flash.CodeNotFound, "no item %q", in.ID)
		}
		return itemOut{ID: in.ID}, nil
	})
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	get = flash.Route(api, "GET /items/{id}", "get", func(ctx context.Context, in itemIn) (itemOut, error) {
		if _, err := lookup.Call(ctx, in); err != nil {
			return itemOut{}, err
		}
		if err := flash.SetHeader(ctx, "Cache-Control", "max-age=60"); err != nil {
			return itemOut{}, err
		}
		return itemOut{ID: in.ID, Limit: in.Limit, Tags: in.Tags, Tenant: in.Tenant}, nil
	})
	create = flash.Route(api, "POST /items", "create", func(ctx context.Context, in itemIn) (itemOut, error) {
		if in.ID == "" {
			return itemOut{}, flash.Errorf(flash.CodeInvalidArgument, "id is required")
		}
		if err := flash.SetStatus(ctx, http.StatusCreated); err != nil {
			return itemOut{}, err
		}
		if err := flash.SetHeader(ctx, "Location", "/items/"+in.ID); err != nil {
			return itemOut{}, err
		}
		return itemOut{ID: in.ID, Tenant: in.Tenant}, nil
	})
	return app, lookup, get, create
}

// noLeaks checks, after every cleanup of t, that t left no goroutine.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// serveApp mounts the app's handler on a real HTTP server.
func serveApp(t *testing.T, app *flash.App, resource, key string) *httptest.Server {
	t.Helper()
	h, err := app.Handler(resource, flash.Config{APIKey: key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func get(t *testing.T, method, url, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(b))
}

func TestRequestMetadata(t *testing.T) {
	noLeaks(t)
	app, _, _, _ := goapiApp()
	srv := serveApp(t, app, "", "k")
	auth := []string{"Authorization", "Bearer k"}
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		want                     string
		header                   [2]string
	}{
		{"query and header bind", "GET", "/items/a1?limit=5&tag=x&tag=y", "", []string{"X-Tenant", "acme"}, 200,
			`{"id":"a1","limit":5,"tags":["x","y"],"tenant":"acme"}`, [2]string{"Cache-Control", "max-age=60"}},
		{"absent query keeps zero", "GET", "/items/a2", "", nil, 200, `{"id":"a2","limit":0,"tags":null,"tenant":""}`, [2]string{}},
		{"bad query value", "GET", "/items/a3?limit=many", "", nil, 400, "", [2]string{}},
		{"status and header set", "POST", "/items", `{"id":"n1"}`, []string{"X-Tenant", "t"}, 201,
			`{"id":"n1","limit":0,"tags":null,"tenant":"t"}`, [2]string{"Location", "/items/n1"}},
		{"coded error from a queue function", "GET", "/items/missing", "", nil, 404, "", [2]string{}},
		{"coded error", "POST", "/items", `{}`, nil, 400, `{"code":"invalid_argument","error":"id is required","error_type":"Error"}`, [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, tt.method, srv.URL+tt.path, tt.body, append(tt.hdr, auth...)...)
			if resp.StatusCode != tt.status || (tt.want != "" && body != tt.want) {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tt.status, tt.want)
			}
			if tt.header[0] != "" && resp.Header.Get(tt.header[0]) != tt.header[1] {
				t.Errorf("header %s = %q, want %q", tt.header[0], resp.Header.Get(tt.header[0]), tt.header[1])
			}
		})
	}
}

func TestSetStatusOutsideRoute(t *testing.T) {
	ctx := context.Background()
	if flash.SetStatus(ctx, 201) == nil || flash.SetHeader(ctx, "X-A", "b") == nil {
		t.Fatal("SetStatus/SetHeader outside an LB call did not fail")
	}
}

func TestMetadataTagsChecked(t *testing.T) {
	app := flash.NewApp("bad")
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	flash.Route(api, "GET /x", "x", func(ctx context.Context, in struct {
		M map[string]int `query:"m"`
	}) (int, error) {
		return 0, nil
	})
	if _, err := app.Handler("", flash.Config{}); !errors.Is(err, flash.ErrInvalidApp) || !strings.Contains(err.Error(), "query/header field") {
		t.Fatalf("got %v", err)
	}
	if _, err := app.Handler("nope", flash.Config{}); err == nil {
		t.Fatal("unknown resource accepted")
	}
}

// TestClientThroughGateway: a Client reaches queue and LB functions at the
// gateway's paths (here two Handlers mounted as the mothership mounts
// endpoints), with typed results and error codes.
func TestClientThroughGateway(t *testing.T) {
	noLeaks(t)
	app, lookup, getItem, create := goapiApp()
	store := serveApp(t, app, "store", "k")
	api := serveApp(t, app, "api", "k")
	gw := http.NewServeMux()
	gw.Handle("/v2/store/", http.StripPrefix("/v2/store", proxyTo(store.URL)))
	gw.Handle("/api/", http.StripPrefix("/api", proxyTo(api.URL)))
	gateway := httptest.NewServer(gw)
	defer gateway.Close()

	c, err := flash.NewClient(gateway.URL, "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if out, err := flash.Bind(c, lookup).Call(ctx, itemIn{ID: "q1"}); err != nil || out.ID != "q1" {
		t.Fatalf("lookup: %+v %v", out, err)
	}
	_, err = flash.Bind(c, lookup).Call(ctx, itemIn{ID: "missing"})
	var fe *flash.Error
	if flash.CodeOf(err) != flash.CodeNotFound || !errors.As(err, &fe) || fe.Error() != `no item "missing"` {
		t.Fatalf("lookup missing: %v", err)
	}
	if out, err := flash.Bind(c, getItem).Call(ctx, itemIn{ID: "g1"}); err != nil || out.ID != "g1" {
		t.Fatalf("get: %+v %v", out, err)
	}
	// Two hops: the client, api's route, store's function.
	if _, err := flash.Bind(c, getItem).Call(ctx, itemIn{ID: "missing"}); flash.CodeOf(err) != flash.CodeNotFound || !errors.Is(err, flash.ErrRemoteFunction) {
		t.Fatalf("get missing: %v", err)
	}
	if out, err := flash.Bind(c, create).Call(ctx, itemIn{ID: "c1"}); err != nil || out.ID != "c1" {
		t.Fatalf("create: %+v %v", out, err)
	}
	if _, err := flash.Bind(c, create).Call(ctx, itemIn{}); flash.CodeOf(err) != flash.CodeInvalidArgument {
		t.Fatalf("create without id: %v", err)
	}

	wrong, _ := flash.NewClient(gateway.URL, "wrong")
	var se *flash.StatusError
	if _, err := flash.Bind(wrong, lookup).Call(ctx, itemIn{ID: "q1"}); !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %v", err)
	}
	for _, bad := range []string{"", "ftp://x", "http://", "http://h?q=1"} {
		if _, err := flash.NewClient(bad, "k"); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
}

// proxyTo forwards requests to base, as the mothership's gateway does.
func proxyTo(base string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}
