package e2e

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash"
)

// The Counter object of testapp, declared as another Go program would to
// call it: the same names and resources, no bodies of its own.
type (
	counterE2E  struct{}
	counterInit struct {
		Start int `json:"start"`
	}
	incIn struct {
		By int `json:"by"`
	}
	incOut struct {
		N   int `json:"n"`
		PID int `json:"pid"`
	}
	bumpIn struct {
		Counter flash.Handle[counterE2E] `json:"counter"`
		By      int                      `json:"by"`
	}
)

type counterHandles struct {
	counter *flash.Object[counterE2E, counterInit]
	inc     *flash.MethodFunc[counterE2E, incIn, incOut]
	open    *flash.Func[counterInit, flash.Handle[counterE2E]]
	bump    *flash.Func[bumpIn, incOut]
}

func testappCounter(c *flash.Client) counterHandles {
	app := flash.NewApp("testapp")
	counter := flash.RegisterObject(app.Queue("keeper", flash.ResourceConfig{}), "Counter",
		func(context.Context, counterInit) (*counterE2E, error) { return nil, errors.New("runs remotely") })
	inc := flash.Method(counter, "inc", func(context.Context, *counterE2E, incIn) (incOut, error) {
		return incOut{}, errors.New("runs remotely")
	})
	front := app.Queue("front", flash.ResourceConfig{})
	open := flash.Register(front, "open", func(context.Context, counterInit) (flash.Handle[counterE2E], error) {
		return flash.Handle[counterE2E]{}, errors.New("runs remotely")
	})
	bump := flash.Register(front, "bump", func(context.Context, bumpIn) (incOut, error) {
		return incOut{}, errors.New("runs remotely")
	})
	return counterHandles{counter: flash.BindObject(c, counter), inc: inc, open: flash.Bind(c, open), bump: flash.Bind(c, bump)}
}

// TestObjectAffinity: with keeper at 3 replicas, Counter instances made
// through the gateway (and from front, a child) spread over the replicas
// and keep their state; every call — a Go client's through the gateway,
// front's straight to the replica — reaches the process that holds the
// instance. A replica killed with SIGKILL loses its instances: the next
// call of one fails with ErrObjectLost, by both paths, while the instances
// of the other replicas keep working.
func TestObjectAffinity(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	mf := w.appManifest(t)
	object(t, object(t, mf, "resources"), "keeper")["workersMin"] = 3
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	st := ms.waitDeployed(t, 60*time.Second, "front", "back", "edge", "keeper")
	if n := len(st.Resources["keeper"].EndpointURLs); n != 3 {
		t.Fatalf("keeper has %d replicas, want 3", n)
	}
	c, err := flash.NewClient(ms.url, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	h := testappCounter(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	type inst struct {
		h   flash.Handle[counterE2E]
		n   int
		pid int
	}
	var all []*inst
	pids := map[int]int{} // pid → instances
	for i := range 9 {
		var hd flash.Handle[counterE2E]
		var err error
		if i%3 == 2 {
			hd, err = h.open.Call(ctx, counterInit{Start: 1000 * i}) // made from front
		} else {
			hd, err = h.counter.New(ctx, counterInit{Start: 1000 * i})
		}
		if err != nil {
			t.Fatalf("new instance %d: %v", i, err)
		}
		if hd.Object != "Counter" || hd.ID == "" {
			t.Fatalf("instance %d: handle %+v", i, hd)
		}
		if i%3 == 2 {
			// A handle that came back as JSON: attach it to the client.
			if hd, err = h.counter.Attach(hd.ID); err != nil {
				t.Fatal(err)
			}
		}
		out, err := h.inc.Call(ctx, hd, incIn{By: 1})
		if err != nil || out.N != 1000*i+1 {
			t.Fatalf("first inc of instance %d: %+v, %v", i, out, err)
		}
		all = append(all, &inst{h: hd, n: out.N, pid: out.PID})
		pids[out.PID]++
	}
	if len(pids) < 2 {
		t.Fatalf("9 instances on %d process(es) %v: want them spread over the replicas", len(pids), pids)
	}
	step(t, "calls reach the holder through the gateway and from front", func(t *testing.T) {
		for round := range 3 {
			for i, in := range all {
				var out incOut
				var err error
				if round == 1 {
					out, err = h.bump.Call(ctx, bumpIn{Counter: in.h, By: 5})
					in.n += 5
				} else {
					out, err = h.inc.Call(ctx, in.h, incIn{By: 1})
					in.n++
				}
				if err != nil || out.N != in.n || out.PID != in.pid {
					t.Fatalf("round %d, instance %d (pid %d, n %d): %+v, %v", round, i, in.pid, in.n, out, err)
				}
			}
		}
	})
	victim := all[0].pid
	w.signal(t, victim, syscall.SIGKILL)
	step(t, "instances of the killed replica are lost, the others live on", func(t *testing.T) {
		for i, in := range all {
			out, err := h.inc.Call(ctx, in.h, incIn{By: 1})
			if in.pid == victim {
				if !errors.Is(err, flash.ErrObjectLost) {
					t.Errorf("instance %d on the killed pid %d: %+v, %v; want ErrObjectLost", i, victim, out, err)
				}
				if _, err := h.bump.Call(ctx, bumpIn{Counter: in.h, By: 1}); !errors.Is(err, flash.ErrObjectLost) {
					t.Errorf("instance %d on the killed pid %d, from front: %v; want ErrObjectLost", i, victim, err)
				}
				continue
			}
			in.n++
			if err != nil || out.N != in.n || out.PID != in.pid {
				t.Errorf("instance %d (pid %d, n %d) after pid %d was killed: %+v, %v", i, in.pid, in.n, victim, out, err)
			}
		}
	})
	step(t, "Close ends an instance", func(t *testing.T) {
		for _, in := range all {
			if in.pid == victim {
				continue
			}
			if err := h.counter.Close(ctx, in.h); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := h.inc.Call(ctx, in.h, incIn{By: 1}); !errors.Is(err, flash.ErrObjectLost) {
				t.Fatalf("inc after Close: %v, want ErrObjectLost", err)
			}
			return
		}
	})
}
