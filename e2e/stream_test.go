package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type drainOut struct {
	Values  int    `json:"values"`
	InOrder bool   `json:"in_order"`
	Err     string `json:"err"`
}

// TestStreamBetweenEndpoints: testapp's drain on front reads a stream from
// another endpoint of the app with Stream on a plain handle, as Call is
// used: count from edge (NDJSON) and countq from back (/run +
// /stream/{id}), 10,000 values in order; a break half-way and a
// cancellation half-way each stop the producer on the other process.
func TestStreamBetweenEndpoints(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	ms := w.startMothership()
	ms.waitDeployed(t, 30*time.Second, "front", "back", "edge")
	stops := map[bool]func() int64{
		false: func() int64 {
			var s int64
			mustSend(t, http.MethodGet, ms.url+"/edge/stops", apiKey, nil).decode(t, &s)
			return s
		},
		true: func() int64 {
			var s int64
			runsync(t, ms.url+"/v2/back/runsync", "backstops", struct{}{}).result(t, &s)
			return s
		},
	}
	for _, queue := range []bool{false, true} {
		var out drainOut
		runsync(t, ms.url+"/v2/front/runsync", "drain", map[string]any{"n": 10000, "queue": queue}).result(t, &out)
		if out.Values != 10000 || !out.InOrder || out.Err != "" {
			t.Fatalf("drain queue=%v: %+v, want 10000 values in order", queue, out)
		}
		for _, cancel := range []bool{false, true} {
			before := stops[queue]()
			runsync(t, ms.url+"/v2/front/runsync", "drain",
				map[string]any{"n": 1 << 40, "stop_at": 5000, "cancel": cancel, "queue": queue}).result(t, &out)
			wantErr := ""
			if cancel {
				wantErr = "context canceled"
			}
			if out.Values != 5000 || !out.InOrder || !strings.Contains(out.Err, wantErr) || (wantErr == "") != (out.Err == "") {
				t.Fatalf("drain queue=%v cancel=%v: %+v, want 5000 values and error %q", queue, cancel, out, wantErr)
			}
			eventually(t, 10*time.Second, "the producer stopped", func() error {
				if s := stops[queue](); s <= before {
					return fmt.Errorf("queue=%v cancel=%v: %d producers stopped, %d before", queue, cancel, s, before)
				}
				return nil
			})
		}
	}
}

// TestServerSentEventsThroughGateway: an LB stream asked for with Accept:
// text/event-stream comes through the mothership's gateway as server-sent
// events, each event as soon as it is produced (hold yields one value and
// then waits: the event arrives while the stream is still open), and
// closing the connection stops the producer.
func TestServerSentEventsThroughGateway(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	ms := w.startMothership()
	ms.waitDeployed(t, 30*time.Second, "edge")

	r := mustSend(t, http.MethodPost, ms.url+"/edge/count", apiKey, map[string]int{"n": 3}, "Accept: text/event-stream")
	want := "data: 1\n\ndata: 2\n\ndata: 3\n\nevent: end\ndata: {\"values\":3}\n\n"
	if r.Code != http.StatusOK || r.Header.Get("Content-Type") != "text/event-stream" || string(r.Body) != want {
		t.Fatalf("SSE count: %s, want %q", r, want)
	}
	r = mustSend(t, http.MethodPost, ms.url+"/edge/count", apiKey, map[string]int{"n": 2})
	if r.Header.Get("Content-Type") != "application/x-ndjson" || string(r.Body) != "{\"output\":1}\n{\"output\":2}\n" {
		t.Fatalf("NDJSON count (the default): %s", r)
	}

	var before int64
	mustSend(t, http.MethodGet, ms.url+"/edge/stops", apiKey, nil).decode(t, &before)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ms.url+"/edge/hold", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || first != "data: \"first\"\n" {
		t.Fatalf("first event line %q (%v)", first, err)
	}
	resp.Body.Close() // mid-stream: the connection closes
	io.Copy(io.Discard, resp.Body)
	eventually(t, 10*time.Second, "hold's producer stopped", func() error {
		var s int64
		mustSend(t, http.MethodGet, ms.url+"/edge/stops", apiKey, nil).decode(t, &s)
		if s <= before {
			return fmt.Errorf("%d producers stopped, %d before", s, before)
		}
		return nil
	})
}

// checkSentences reads the pipeline's POST /sentences at base as
// server-sent events: one event per sentence of sampleText, each embedded
// by embed_sentences on the embedder and relayed by sentences on api, then
// the end event.
func checkSentences(t *testing.T, base string) {
	t.Helper()
	r := mustSend(t, http.MethodPost, base+"/sentences", apiKey, textIn{Text: sampleText}, "Accept: text/event-stream")
	events := strings.Split(strings.TrimSuffix(string(r.Body), "\n\n"), "\n\n")
	want := []string{"The quick brown fox jumps over the lazy dog", "It was not amused"}
	if r.Code != http.StatusOK || len(events) != len(want)+1 || events[len(want)] != "event: end\ndata: {\"values\":2}" {
		t.Fatalf("POST %s/sentences: %s, want %d data events and the end", base, r, len(want))
	}
	for i, ev := range events[:len(want)] {
		var s struct {
			Index    int               `json:"index"`
			Sentence string            `json:"sentence"`
			Vector   []float64         `json:"vector"`
			ServedBy map[string]string `json:"served_by"`
		}
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || json.Unmarshal([]byte(data), &s) != nil || s.Index != i || s.Sentence != want[i] || len(s.Vector) != 8 ||
			s.ServedBy["sentences"] != "api" || s.ServedBy["embed_sentences"] != "embedder" {
			t.Fatalf("event %d: %q, want sentence %q served by api and embedder", i, ev, want[i])
		}
	}
}
