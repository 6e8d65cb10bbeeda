// Command nomain builds a flash app but never calls app.Main(): flash build
// must say that main has to call it.
package main

import (
	"context"
	"fmt"

	"github.com/flash-go/flash"
)

func main() {
	app := flash.NewApp("nomain")
	web := app.LoadBalanced("web", flash.ResourceConfig{})
	flash.Route(web, "GET /x", "x", func(ctx context.Context, in struct{}) (struct{}, error) { return in, nil })
	fmt.Print("") // forgot app.Main()
}
