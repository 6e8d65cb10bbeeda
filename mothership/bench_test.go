package mothership

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// discardWriter is a minimal ResponseWriter, so that the benchmarks measure
// the handlers and not a recorder.
type discardWriter struct {
	h    http.Header
	code int
	at   time.Time
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code, w.at = code, time.Now() }

func benchMothership(b *testing.B) *Mothership {
	m, err := New(b.Context(), Config{Store: newMemStore(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	var rs []res
	for i := range 20 {
		rs = append(rs, res{name: "r" + strconv.Itoa(i)})
	}
	if _, err := m.Publish(b.Context(), buildManifest(b, rs...)); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkManifestGET compares GET /manifest with a bare handler writing the
// same bytes and headers: the difference is the mothership's own cost.
func BenchmarkManifestGET(b *testing.B) {
	m := benchMothership(b)
	s := m.snap.Load()
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set(wire.HeaderManifestVersion, s.verStr)
		h.Set("Etag", s.etag)
		h.Set("Cache-Control", "no-cache")
		wire.WriteRawJSON(w, http.StatusOK, s.body)
	})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"handler", http.HandlerFunc(m.serveManifest)}, {"bare", bare}} {
		b.Run("direct/"+c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/manifest", nil)
			req.Header.Set(wire.HeaderResource, "r1")
			req.Header.Set(wire.HeaderInstance, "r1-0")
			req.Header.Set(wire.HeaderAppliedVersion, "1")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.SetBytes(int64(len(s.body)))
			for b.Loop() {
				clear(w.h)
				c.h.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatal(w.code)
				}
			}
		})
		b.Run("http/"+c.name, func(b *testing.B) {
			srv := httptest.NewServer(c.h)
			defer srv.Close()
			client := srv.Client()
			b.ReportAllocs()
			b.SetBytes(int64(len(s.body)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(srv.URL + "/manifest")
					if err != nil {
						b.Error(err)
						return
					}
					var buf [4096]byte
					for {
						if _, err := resp.Body.Read(buf[:]); err != nil {
							break
						}
					}
					resp.Body.Close()
				}
			})
			client.CloseIdleConnections()
		})
	}
}

// BenchmarkLongPollWake parks N long polls, publishes, and measures how long
// after the publish call each one is answered (p50/p99 in ms).
func BenchmarkLongPollWake(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			m := benchMothership(b)
			mf, _ := m.Current()
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				_, v := m.Current()
				query := "/manifest?version=" + strconv.FormatInt(v, 10) + "&wait=60"
				var wg sync.WaitGroup
				ws := make([]*discardWriter, n)
				for j := range n {
					ws[j] = &discardWriter{h: http.Header{}}
					req := httptest.NewRequest(http.MethodGet, query, nil)
					wg.Go(func() { m.serveManifest(ws[j], req) })
				}
				deadline := time.Now().Add(10 * time.Second)
				for m.parked.Load() != int64(n) {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d parked", m.parked.Load(), n)
					}
					time.Sleep(100 * time.Microsecond)
				}
				start := time.Now()
				if _, err := m.Publish(context.Background(), mf.WithTop("generated_at", strconv.Itoa(i))); err != nil {
					b.Fatal(err)
				}
				wg.Wait()
				for _, w := range ws {
					if w.code != http.StatusOK {
						b.Fatalf("status %d", w.code)
					}
					lat = append(lat, w.at.Sub(start))
				}
			}
			slices.Sort(lat)
			ms := func(q float64) float64 {
				return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
		})
	}
}
