package main

import (
	"context"
	"iter"
	"strings"

	"github.com/flash-go/flash"
)

// SentenceOut is one sentence of a text with its vector: a value of the
// streams embed_sentences (embedder, a queue function read through
// /stream/{id}) and sentences (api, POST /sentences, NDJSON or server-sent
// events), which relays embed_sentences' values as they come.
type SentenceOut struct {
	Index    int               `json:"index"`
	Sentence string            `json:"sentence"`
	Vector   []float64         `json:"vector"`
	ServedBy map[string]string `json:"served_by"`
}

// addSentences registers the two streams.
func addSentences(app *flash.App, embedder, api *flash.Resource) {
	embedSentences := flash.RegisterStream(embedder, "embed_sentences", func(ctx context.Context, in TextIn) iter.Seq2[SentenceOut, error] {
		return func(yield func(SentenceOut, error) bool) {
			for i, s := range sentences(in.Text) {
				out := SentenceOut{Index: i, Sentence: s, Vector: vector(s), ServedBy: map[string]string{"embed_sentences": app.Identity()}}
				if !yield(out, nil) {
					return // the caller stopped reading
				}
			}
		}
	})
	flash.RouteStream(api, "POST /sentences", "sentences", func(ctx context.Context, in TextIn) iter.Seq2[SentenceOut, error] {
		return func(yield func(SentenceOut, error) bool) {
			if strings.TrimSpace(in.Text) == "" {
				yield(SentenceOut{}, flash.Errorf(flash.CodeInvalidArgument, "text is empty"))
				return
			}
			// Here or on the embedder endpoint, as the manifest says.
			for s, err := range embedSentences.Stream(ctx, in) {
				if err == nil {
					s.ServedBy["sentences"] = app.Identity()
				}
				if !yield(s, err) || err != nil {
					return
				}
			}
		}
	})
}

// sentences splits text at '.', '!' and '?', dropping empty pieces.
func sentences(text string) []string {
	var out []string
	for _, s := range strings.FieldsFunc(text, func(r rune) bool { return r == '.' || r == '!' || r == '?' }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
