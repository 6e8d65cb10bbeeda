// Command pipeline is the flash demo app: three resources whose functions
// call each other, so that one request crosses three endpoints.
//
//	api        (load-balanced)  POST /process, GET /stats/{window}
//	embedder   (queue-based)    embed
//	summarizer (queue-based)    summarize, count_words; the object Session (session.go)
//
// process calls embed and summarize; summarize calls count_words. Every
// result says which resource served each step (served_by). The work is
// deterministic: no models.
//
// Run it as a whole topology with `flash run ./examples/pipeline`, or as one
// process serving everything with `go run ./examples/pipeline`.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/flash-go/flash"
)

// TextIn is the input of embed, count_words, summarize and process.
type TextIn struct {
	Text string `json:"text"`
}

// EmbedOut is embed's result.
type EmbedOut struct {
	Vector   []float64 `json:"vector"`
	ServedBy string    `json:"served_by"`
}

// CountOut is count_words' result.
type CountOut struct {
	Words    int    `json:"words"`
	ServedBy string `json:"served_by"`
}

// SummaryOut is summarize's result.
type SummaryOut struct {
	Summary  string `json:"summary"`
	Words    int    `json:"words"`
	ServedBy string `json:"served_by"`
	// CountedBy is the resource that ran count_words for this summary.
	CountedBy string `json:"counted_by"`
}

// ProcessOut is process's result: every step and who served it.
type ProcessOut struct {
	Summary  string            `json:"summary"`
	Words    int               `json:"words"`
	Vector   []float64         `json:"vector"`
	ServedBy map[string]string `json:"served_by"`
}

// StatsIn is the input of stats; Window comes from the path.
type StatsIn struct {
	Window string `json:"window"`
}

// StatsOut is stats' result.
type StatsOut struct {
	Window   string `json:"window"`
	ServedBy string `json:"served_by"`
}

func main() { newApp().Main() }

// newApp registers the demo's resources and functions.
func newApp() *flash.App {
	app := flash.NewApp("pipeline")

	embedder := app.Queue("embedder", flash.ResourceConfig{WorkersMax: 3, GPUIDs: "AMPERE_16"})
	embed := flash.Register(embedder, "embed", func(ctx context.Context, in TextIn) (EmbedOut, error) {
		return EmbedOut{Vector: vector(in.Text), ServedBy: app.Identity()}, nil
	})

	summarizer := app.Queue("summarizer", flash.ResourceConfig{Type: "CpuLiveServerless"})
	countWords := flash.Register(summarizer, "count_words", func(ctx context.Context, in TextIn) (CountOut, error) {
		return CountOut{Words: len(strings.Fields(in.Text)), ServedBy: app.Identity()}, nil
	})
	summarize := flash.Register(summarizer, "summarize", func(ctx context.Context, in TextIn) (SummaryOut, error) {
		c, err := countWords.Call(ctx, in)
		if err != nil {
			return SummaryOut{}, fmt.Errorf("count words: %w", err)
		}
		return SummaryOut{Summary: summary(in.Text), Words: c.Words, ServedBy: app.Identity(), CountedBy: c.ServedBy}, nil
	})

	api := app.LoadBalanced("api", flash.ResourceConfig{})
	flash.Route(api, "POST /process", "process", func(ctx context.Context, in TextIn) (ProcessOut, error) {
		if strings.TrimSpace(in.Text) == "" {
			return ProcessOut{}, fmt.Errorf("text is empty")
		}
		e, err := embed.Call(ctx, in)
		if err != nil {
			return ProcessOut{}, fmt.Errorf("embed: %w", err)
		}
		s, err := summarize.Call(ctx, in)
		if err != nil {
			return ProcessOut{}, fmt.Errorf("summarize: %w", err)
		}
		return ProcessOut{
			Summary: s.Summary, Words: s.Words, Vector: e.Vector,
			ServedBy: map[string]string{"process": app.Identity(), "embed": e.ServedBy, "summarize": s.ServedBy, "count_words": s.CountedBy},
		}, nil
	})
	flash.Route(api, "GET /stats/{window}", "stats", func(ctx context.Context, in StatsIn) (StatsOut, error) {
		return StatsOut{Window: in.Window, ServedBy: app.Identity()}, nil
	})
	registerSessions(app, summarizer, api)
	addSentences(app, embedder, api)
	return app
}

// vector derives 8 numbers in [0, 1) from the text's SHA-256.
func vector(text string) []float64 {
	sum := sha256.Sum256([]byte(text))
	v := make([]float64, 8)
	for i := range v {
		v[i] = float64(binary.BigEndian.Uint32(sum[i*4:])) / (1 << 32)
	}
	return v
}

// summary keeps the first sentence, cut to 12 words.
func summary(text string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(text), ".")
	words := strings.Fields(first)
	if len(words) > 12 {
		words = append(words[:12], "…")
	}
	return strings.Join(words, " ")
}
