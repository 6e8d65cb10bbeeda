package wire

import "testing"

// BenchmarkDecodeJobRequest decodes the envelope flash callers send: the
// fast path against encoding/json (the general decoder, baseline).
func BenchmarkDecodeJobRequest(b *testing.B) {
	body := AppendJobRequest(nil, "work", []byte(`{"text":"the quick brown fox jumps over the lazy dog","n":41}`))
	for _, c := range []struct {
		name   string
		decode func([]byte) (Invocation, error)
	}{{"canonical", DecodeJobRequest}, {"general", decodeJobRequest}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
