package etcd_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
)

// benchManifest is about the size of a real manifest with a handful of
// resources (the same as store/sqlite's benchmarks use).
var benchManifest = bytes.Repeat([]byte(`{"resource":"gpu-worker","hash":"0123456789abcdef"},`), 40)

// benchStores are the stores compared: a three-member etcd cluster on
// loopback that fsyncs (as production does), the same without fsync, and
// SQLite at synchronous=FULL.
func benchStores(b *testing.B) map[string]func(b *testing.B) store.Store {
	etcdStore := func(c *lazyCluster) func(b *testing.B) store.Store {
		return func(b *testing.B) store.Store { return openStore(b, c.get(b), newPrefix()) }
	}
	return map[string]func(b *testing.B) store.Store{
		"etcd3":         etcdStore(&durable),
		"etcd3-nofsync": etcdStore(&shared),
		"sqlite": func(b *testing.B) store.Store {
			s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "state.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
}

var benchOrder = []string{"etcd3", "etcd3-nofsync", "sqlite"}

// BenchmarkPublish measures one compare-and-swap publish after another.
func BenchmarkPublish(b *testing.B) {
	stores := benchStores(b)
	for _, name := range benchOrder {
		b.Run(name, func(b *testing.B) {
			s := stores[name](b)
			var prev int64
			b.ReportAllocs()
			for b.Loop() {
				p, err := s.Publish(b.Context(), prev, benchManifest)
				if err != nil {
					b.Fatal(err)
				}
				prev = p.Version
			}
		})
	}
}

// BenchmarkLatest measures reading the newest version (a linearizable read on etcd).
func BenchmarkLatest(b *testing.B) {
	stores := benchStores(b)
	for _, name := range benchOrder {
		b.Run(name, func(b *testing.B) {
			s := stores[name](b)
			var prev int64
			for range 60 {
				p, err := s.Publish(b.Context(), prev, benchManifest)
				if err != nil {
					b.Fatal(err)
				}
				prev = p.Version
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Latest(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFailover measures from the moment a leader stops (it resigns, or
// it crashes: its store closes without resigning, so its lease of
// LeaseTTL = 2 s must expire) until a waiting candidate leads.
// Run with -benchtime=5x or so: a crash costs a lease TTL per iteration.
func BenchmarkFailover(b *testing.B) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "resign", true: "crash-ttl2s"}[crash]
		b.Run(name, func(b *testing.B) {
			c := shared.get(b)
			prefix := newPrefix()
			waiting := openStore(b, c, prefix)
			for b.Loop() {
				b.StopTimer()
				leader := openStore(b, c, prefix)
				l, err := leader.Campaign(b.Context(), store.LeaderInfo{ID: "old"})
				if err != nil {
					b.Fatal(err)
				}
				next := campaign(b.Context(), waiting, "new")
				b.StartTimer()
				if crash {
					leader.Close()
				} else if err := l.Resign(b.Context()); err != nil {
					b.Fatal(err)
				}
				r := <-next
				if r.err != nil {
					b.Fatal(r.err)
				}
				b.StopTimer()
				if err := r.l.Resign(b.Context()); err != nil {
					b.Fatal(err)
				}
				leader.Close()
				b.StartTimer()
			}
		})
	}
}
