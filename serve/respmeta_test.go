package serve

import (
	"context"
	"net/http"
	"testing"
)

func TestSetStatusAndHeader(t *testing.T) {
	ctx := context.WithValue(context.Background(), answerMetaKey{}, &answerMeta{})
	tests := []struct {
		name string
		set  func() error
		ok   bool
	}{
		{"201", func() error { return SetStatus(ctx, 201) }, true},
		{"302", func() error { return SetStatus(ctx, 302) }, true},
		{"404 is an error's", func() error { return SetStatus(ctx, 404) }, false},
		{"199", func() error { return SetStatus(ctx, 199) }, false},
		{"header", func() error { return SetHeader(ctx, "x-request-cost", "3") }, true},
		{"content-length reserved", func() error { return SetHeader(ctx, "content-length", "1") }, false},
		{"content-type reserved", func() error { return SetHeader(ctx, "Content-Type", "text/html") }, false},
		{"CRLF in value", func() error { return SetHeader(ctx, "X-A", "a\r\nSet-Cookie: x") }, false},
		{"bad name", func() error { return SetHeader(ctx, "X A", "b") }, false},
		{"empty name", func() error { return SetHeader(ctx, "", "b") }, false},
		{"outside a call", func() error { return SetStatus(context.Background(), 201) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.set(); (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
		})
	}
	h := http.Header{}
	m := ctx.Value(answerMetaKey{}).(*answerMeta)
	if got := m.apply(h, 200); got != 302 || h.Get("X-Request-Cost") != "3" || h.Get("Content-Length") != "" {
		t.Fatalf("apply: status %d, header %v", got, h)
	}
}
