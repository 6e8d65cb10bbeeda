package main

import (
	"context"
	"strings"

	"github.com/flash-go/flash"
)

// Session is a stateful object on summarizer: the texts one client sent,
// kept in the memory of the replica that holds it (docs/objects.md).
type Session struct {
	texts, words int
}

// SessionIn is add's input: the session (its id, from the path) and a text.
type SessionIn struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// SessionOut is what a session has seen so far.
type SessionOut struct {
	Texts    int    `json:"texts"`
	Words    int    `json:"words"`
	ServedBy string `json:"served_by"`
}

// registerSessions adds the Session object to summarizer and its routes to
// api: POST /sessions opens one, POST /sessions/{id}/add feeds it.
func registerSessions(app *flash.App, summarizer, api *flash.Resource) {
	session := flash.RegisterObject(summarizer, "Session", func(ctx context.Context, _ struct{}) (*Session, error) {
		return &Session{}, nil
	})
	add := flash.Method(session, "add", func(ctx context.Context, s *Session, text string) (SessionOut, error) {
		s.texts++
		s.words += len(strings.Fields(text))
		return SessionOut{Texts: s.texts, Words: s.words, ServedBy: app.Identity()}, nil
	})
	flash.Route(api, "POST /sessions", "open_session", func(ctx context.Context, _ struct{}) (flash.Handle[Session], error) {
		return session.New(ctx, struct{}{})
	})
	flash.Route(api, "POST /sessions/{id}/add", "add_to_session", func(ctx context.Context, in SessionIn) (SessionOut, error) {
		h, err := session.Attach(in.ID)
		if err != nil {
			return SessionOut{}, err
		}
		return add.Call(ctx, h, in.Text)
	})
}
