package flash

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/flash-go/flash/serve"
)

type metaIn struct {
	N     int       `query:"n"`
	F     []float64 `query:"f"`
	B     bool      `header:"X-B"`
	U     uint8     `header:"X-U"`
	Inner string    `json:"inner"`
}

// FuzzBindMeta: any query string and header values bind or fail with an
// error, never a panic, and a bound value reads back what was sent.
func FuzzBindMeta(f *testing.F) {
	f.Add("n=1&f=1.5&f=2", "true", "7")
	f.Add("n=x", "maybe", "300")
	f.Add("%zz", "", "")
	b, err := newBinder(func(_ context.Context, in metaIn) (metaIn, error) { return in, nil }, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query, hb, hu string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		h := http.Header{}
		if hb != "" {
			h.Set("X-B", hb)
		}
		if hu != "" {
			h.Set("X-U", hu)
		}
		job, err := b(serve.Input{JSON: []byte(`{"inner":"i"}`), Query: q, Header: h})
		if err != nil {
			return
		}
		out, err := job(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		in := out.(metaIn)
		if in.Inner != "i" || (len(q["f"]) != len(in.F) && len(q["f"]) > 0) {
			t.Fatalf("bound %+v from %q", in, query)
		}
	})
}
