package flash_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/flash-go/flash"
)

// Conversation is a stateful object: its history lives on one replica.
type Conversation struct {
	topic   string
	history []string
}

// A stateful object: New makes an instance on a replica of its resource
// and returns a handle; each method call runs on that replica, one at a
// time per instance. Here, without a deployment, everything runs in this
// process.
func ExampleRegisterObject() {
	app := flash.NewApp("chat")
	chat := app.Queue("chat", flash.ResourceConfig{WorkersMin: 3})
	conv := flash.RegisterObject(chat, "Conversation", func(ctx context.Context, topic string) (*Conversation, error) {
		return &Conversation{topic: topic}, nil
	})
	say := flash.Method(conv, "say", func(ctx context.Context, c *Conversation, line string) (int, error) {
		c.history = append(c.history, line)
		return len(c.history), nil
	})

	ctx := context.Background()
	h, err := conv.New(ctx, "go")
	if err != nil {
		fmt.Println(err)
		return
	}
	say.Call(ctx, h, "hello")
	n, _ := say.Call(ctx, h, "how are you?")
	fmt.Println("lines:", n)

	conv.Close(ctx, h)
	_, err = say.Call(ctx, h, "still there?")
	fmt.Println(errors.Is(err, flash.ErrObjectLost))
	// Output:
	// lines: 2
	// true
}

// A handle is a plain value: its id goes through JSON, a URL or a
// database, and Attach makes it a handle again.
func ExampleObject_Attach() {
	app := flash.NewApp("chat")
	counter := flash.RegisterObject(app.Queue("chat", flash.ResourceConfig{}), "Tally",
		func(ctx context.Context, start int) (*int, error) { return &start, nil })
	add := flash.Method(counter, "add", func(ctx context.Context, n *int, by int) (int, error) {
		*n += by
		return *n, nil
	})
	ctx := context.Background()
	h, _ := counter.New(ctx, 40)
	id := h.ID // stored somewhere

	again, err := counter.Attach(id)
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _ := add.Call(ctx, again, 2)
	fmt.Println(n)
	// Output: 42
}
