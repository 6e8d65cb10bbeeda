package flash_test

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/flash-go/flash"
)

// SearchIn binds the query parameter q and the header X-Tenant, next to
// the JSON body and path parameters.
type SearchIn struct {
	Q      string `query:"q"`
	Limit  int    `query:"limit"`
	Tenant string `header:"X-Tenant"`
}

// An LB route reads query parameters and headers from tagged fields of In,
// and sets its answer's status and headers.
func ExampleSetStatus() {
	app := flash.NewApp("shop")
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	flash.Route(api, "POST /search", "search", func(ctx context.Context, in SearchIn) (string, error) {
		flash.SetStatus(ctx, http.StatusAccepted)
		flash.SetHeader(ctx, "X-Result-Limit", fmt.Sprint(in.Limit))
		return in.Tenant + ":" + in.Q, nil
	})
	h, _ := app.Handler("", flash.Config{})
	srv := httptest.NewServer(h)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/search?q=boots&limit=3", nil)
	req.Header.Set("X-Tenant", "acme")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, resp.Header.Get("X-Result-Limit"), strings.TrimSpace(string(body)))
	// Output: 202 3 "acme:boots"
}

// App.Handler mounts an app (or one resource) in an existing server.
func ExampleApp_Handler() {
	app := flash.NewApp("pipeline")
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	flash.Route(api, "GET /hello/{name}", "hello", func(ctx context.Context, in struct {
		Name string `json:"name"`
	}) (string, error) {
		return "hello " + in.Name, nil
	})
	h, err := app.Handler("api", flash.Config{APIKey: "secret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/flash/", http.StripPrefix("/flash", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/flash/hello/ada", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	// Output: 200 "hello ada"
}

// A Client calls an app's functions from another Go program through the
// mothership's gateway, with the app's typed handles; a function's error
// code comes back with it. (Here the gateway is a server that serves the
// queue resource at /v2/embedder/, as the mothership does.)
func ExampleBind() {
	app := flash.NewApp("pipeline")
	embedFn := flash.Register(app.Queue("embedder", flash.ResourceConfig{}), "embed", embed)
	h, _ := app.Handler("embedder", flash.Config{APIKey: "secret"})
	mux := http.NewServeMux()
	mux.Handle("/v2/embedder/", http.StripPrefix("/v2/embedder", h))
	gateway := httptest.NewServer(mux)
	defer gateway.Close()

	c, err := flash.NewClient(gateway.URL, "secret")
	if err != nil {
		fmt.Println(err)
		return
	}
	remote := flash.Bind(c, embedFn)
	out, err := remote.Call(context.Background(), EmbedIn{Text: "hello"})
	fmt.Println(out.Vector, err)
	_, err = remote.Call(context.Background(), EmbedIn{})
	fmt.Println(flash.CodeOf(err))
	// Output:
	// [5 1] <nil>
	// unknown
}

// A load-balanced route streams values; the caller ranges over them typed,
// and a break stops the producer.
func ExampleRouteStream() {
	app := flash.NewApp("counter")
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	count := flash.RouteStream(api, "POST /count", "count", func(ctx context.Context, in struct {
		N int `json:"n"`
	}) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			for i := 1; i <= in.N; i++ {
				if !yield(i*i, nil) {
					return // the caller stopped
				}
			}
		}
	})
	h, _ := app.Handler("api", flash.Config{})
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", h)) // as the mothership's gateway serves it
	gateway := httptest.NewServer(mux)
	defer gateway.Close()

	c, _ := flash.NewClient(gateway.URL, "")
	for v, err := range flash.BindStream(c, count).Stream(context.Background(), struct {
		N int `json:"n"`
	}{N: 1000}) {
		if err != nil || v > 20 {
			break
		}
		fmt.Print(v, " ")
	}
	fmt.Println()
	// Output: 1 4 9 16
}
