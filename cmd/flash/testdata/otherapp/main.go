// Command otherapp is a second app for the CLI's tests: run beside the
// pipeline in the same directory, it must not touch the pipeline's state.
package main

import (
	"context"

	"github.com/flash-go/flash"
)

type in struct {
	Name string `json:"name"`
}

type out struct {
	Greeting string `json:"greeting"`
	ServedBy string `json:"served_by"`
}

func main() {
	app := flash.NewApp("otherapp")
	web := app.LoadBalanced("web", flash.ResourceConfig{})
	flash.Route(web, "POST /hello", "hello", func(ctx context.Context, i in) (out, error) {
		return out{Greeting: "hello " + i.Name, ServedBy: app.Identity()}, nil
	})
	app.Main()
}
