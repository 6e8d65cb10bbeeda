// Command badapp is an invalid flash app, for the CLI's error-message tests:
// a route on a reserved path and a function registered twice.
package main

import (
	"context"

	"github.com/flash-go/flash"
)

func echo(ctx context.Context, in map[string]any) (map[string]any, error) { return in, nil }

func main() {
	app := flash.NewApp("badapp")
	web := app.LoadBalanced("web", flash.ResourceConfig{})
	flash.Route(web, "GET /health", "health", echo)
	q := app.Queue("worker", flash.ResourceConfig{})
	flash.Register(q, "twice", echo)
	flash.Register(q, "twice", echo)
	app.Main()
}
