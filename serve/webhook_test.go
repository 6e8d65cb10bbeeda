package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// A /run job's outcome is posted to its webhook; a failing receiver gets two
// more attempts, then no more.
func TestWebhookDelivery(t *testing.T) {
	for _, c := range []struct {
		name          string
		failFirst     int
		wantAttempts  int
		wantDelivered bool
	}{
		{"first attempt", 0, 1, true},
		{"third attempt", 2, 3, true},
		{"never", 5, 3, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var bodies []map[string]any
			attempts := 0
			recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				defer mu.Unlock()
				attempts++
				if attempts <= c.failFirst {
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				var m map[string]any
				json.Unmarshal(b, &m)
				bodies = append(bodies, m)
			}))
			defer recv.Close()
			s := newServer(t, Config{}, newGate())
			s.hooks.pause = time.Millisecond
			body := strings.Replace(envelopeFor("echo", 7), `{"input"`, `{"webhook":"`+recv.URL+`/hook","input"`, 1)
			r := do(t, s, "POST", "/run", body)
			if r.Code != 200 {
				t.Fatalf("run: %d %s", r.Code, r.Body)
			}
			id := r.json(t)["id"]
			waitStatus(t, s, fmt.Sprint(id), StatusCompleted)
			eventually(t, "the attempts", func() bool { mu.Lock(); defer mu.Unlock(); return attempts >= c.wantAttempts })
			s.hooks.close(context.Background()) // waits for the deliveries: none is left to try again
			mu.Lock()
			defer mu.Unlock()
			if attempts != c.wantAttempts {
				t.Errorf("%d attempts, want %d", attempts, c.wantAttempts)
			}
			if !c.wantDelivered {
				if len(bodies) != 0 {
					t.Errorf("delivered: %v", bodies)
				}
				return
			}
			if len(bodies) != 1 || bodies[0]["id"] != id || bodies[0]["status"] != StatusCompleted || fmt.Sprint(bodies[0]["output"]) != "map[json_result:7 success:true]" {
				t.Errorf("delivered %v", bodies)
			}
		})
	}
}

func TestWebhookRefused(t *testing.T) {
	s := newServer(t, Config{}, newGate())
	for _, hook := range []string{`"ftp://x/y"`, `"/relative"`, `"http://"`, `12`, `"` + strings.Repeat("a", maxWebhookURL+1) + `"`} {
		body := strings.Replace(envelopeFor("echo", 7), `{"input"`, `{"webhook":`+hook+`,"input"`, 1)
		if r := do(t, s, "POST", "/run", body); r.Code != http.StatusBadRequest || !strings.Contains(string(r.Body), "webhook") {
			t.Errorf("webhook %.40s: %d %s", hook, r.Code, r.Body)
		}
	}
	if h := s.jobs.health(); h.Completed+int64(h.InQueue+h.InProgress) != 0 {
		t.Errorf("a refused request ran: %+v", h)
	}
}

func FuzzWebhookOf(f *testing.F) {
	f.Add([]byte(`{"input":{},"webhook":"http://127.0.0.1:1/x"}`))
	f.Add([]byte(`{"webhook":12}`))
	f.Add([]byte(`{"input":{"webhook":"x"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		hook, err := webhookOf(body)
		if err != nil && hook != "" {
			t.Fatalf("both a hook %q and an error %v", hook, err)
		}
		if hook != "" && !strings.HasPrefix(hook, "http://") && !strings.HasPrefix(hook, "https://") {
			t.Fatalf("accepted %q", hook)
		}
	})
}
