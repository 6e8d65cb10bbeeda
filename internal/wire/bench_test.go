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

// BenchmarkDecodeJobAnswer decodes a COMPLETED answer as endpoints write it:
// the fast path against encoding/json (the general decoder, baseline).
func BenchmarkDecodeJobAnswer(b *testing.B) {
	body := []byte(`{"id":"k2J3bm9wcXJzdHV2d3h5eg","status":"COMPLETED","output":{"success":true,"json_result":{"len":43,"n":42}},"delayTime":0,"executionTime":0}`)
	for _, c := range []struct {
		name   string
		decode func([]byte) (JobAnswer, error)
	}{{"completed", DecodeJobAnswer}, {"general", decodeJobAnswer}} {
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
