package flash_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/flash-go/flash"
)

type EmbedIn struct {
	Text string `json:"text"`
}

type EmbedOut struct {
	Vector []float64 `json:"vector"`
}

func embed(ctx context.Context, in EmbedIn) (EmbedOut, error) {
	if in.Text == "" {
		return EmbedOut{}, errors.New("empty text")
	}
	return EmbedOut{Vector: []float64{float64(len(in.Text)), 1}}, nil
}

// An app is a set of resources; its manifest describes them.
func ExampleNewApp() {
	app := flash.NewApp("pipeline")
	flash.Register(app.Queue("embedder", flash.ResourceConfig{WorkersMax: 3}), "embed", embed)
	m, err := app.Manifest()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.ProjectName, m.ResourceNames(), m.FunctionRegistry["embed"])
	// Output: pipeline [embedder] embedder
}

// Register adds a queue-based function; its handle calls it.
func ExampleRegister() {
	app := flash.NewApp("pipeline")
	embedder := app.Queue("embedder", flash.ResourceConfig{})
	embedFn := flash.Register(embedder, "embed", embed)
	fmt.Println(embedFn.Name())
	// Output: embed
}

// Route serves a function as an HTTP route of a load-balanced resource; path
// parameters fill the input's fields of the same JSON name.
func ExampleRoute() {
	type StatsIn struct {
		Window string `json:"window"`
	}
	app := flash.NewApp("pipeline")
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	flash.Route(api, "GET /stats/{window}", "stats", func(ctx context.Context, in StatsIn) (string, error) {
		return "stats for " + in.Window, nil
	})
	m, err := app.Manifest()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Routes["api"])
	// Output: map[GET /stats/{window}:stats]
}

// Func.Call runs the function where the manifest says: here, before the app
// runs (and in standalone mode), or on the endpoint that serves it.
func ExampleFunc_Call() {
	app := flash.NewApp("pipeline")
	embedFn := flash.Register(app.Queue("embedder", flash.ResourceConfig{}), "embed", embed)
	out, err := embedFn.Call(context.Background(), EmbedIn{Text: "hello"})
	fmt.Println(out.Vector, err)
	// Output: [5 1] <nil>
}

// Errors from Call are inspected with errors.Is and errors.As: a function
// that failed on another endpoint is a *RemoteError, ErrRemoteFunction.
func Example_errors() {
	// What Call returns when embed failed on the embedder's endpoint.
	err := fmt.Errorf("process: %w", &flash.RemoteError{Function: "embed", Resource: "embedder", Type: "ValueError", Message: "empty text"})
	var remote *flash.RemoteError
	if errors.As(err, &remote) {
		fmt.Println(errors.Is(err, flash.ErrRemoteFunction), remote.Type, remote.Message, flash.Retryable(err))
	}

	// Registration mistakes are reported together when the app starts.
	app := flash.NewApp("pipeline")
	flash.Register(app.LoadBalanced("api", flash.ResourceConfig{}), "embed", embed)
	_, err = app.Manifest()
	fmt.Println(errors.Is(err, flash.ErrInvalidApp), strings.Contains(err.Error(), "use flash.Route"))
	// Output:
	// true ValueError empty text false
	// true true
}
