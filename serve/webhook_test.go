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
	"testing/synctest"
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
	for _, ttl := range []string{"9999", "604800001", `"1h"`} {
		body := strings.Replace(envelopeFor("echo", 7), `{"input"`, `{"policy":{"ttl":`+ttl+`},"input"`, 1)
		if r := do(t, s, "POST", "/run", body); r.Code != http.StatusBadRequest {
			t.Errorf("ttl %s: %d %s", ttl, r.Code, r.Body)
		}
	}
	if h := s.jobs.health(); h.Completed+int64(h.InQueue+h.InProgress) != 0 {
		t.Errorf("a refused request ran: %+v", h)
	}
}

func FuzzExtrasOf(f *testing.F) {
	f.Add([]byte(`{"input":{},"webhook":"http://127.0.0.1:1/x"}`))
	f.Add([]byte(`{"webhook":12}`))
	f.Add([]byte(`{"input":{"webhook":"x"}}`))
	f.Add([]byte(`{"input":{},"policy":{"ttl":10000}}`))
	f.Add([]byte(`{"input":{},"policy":{"ttl":-1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		hook, ttl, err := extrasOf(body)
		if err != nil && (hook != "" || ttl != 0) {
			t.Fatalf("both a hook %q, ttl %v and an error %v", hook, ttl, err)
		}
		if ttl != 0 && (ttl < minJobTTL || ttl > maxJobTTL) {
			t.Fatalf("accepted ttl %v", ttl)
		}
		if hook != "" && !strings.HasPrefix(hook, "http://") && !strings.HasPrefix(hook, "https://") {
			t.Fatalf("accepted %q", hook)
		}
	})
}

// policy.ttl counts from submission: past it, a queued job never runs, a
// running one is cancelled, a finished one is forgotten; each answers 404.
func TestPolicyTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		s := newServer(t, Config{Workers: 1}, g)
		withTTL := func(fn string, in any, ms int) string {
			body := strings.Replace(envelopeFor(fn, in), `{"input"`, fmt.Sprintf(`{"policy":{"ttl":%d},"input"`, ms), 1)
			r := do(t, s, "POST", "/run", body)
			if r.Code != 200 {
				t.Fatalf("run: %d %s", r.Code, r.Body)
			}
			return fmt.Sprint(r.json(t)["id"])
		}
		done := withTTL("echo", 1, 20000)
		synctest.Wait()
		running := withTTL("block", map[string]any{"tag": "running"}, 10000)
		<-g.started
		queued := withTTL("block", map[string]any{"tag": "queued"}, 10000)
		if m := jobStatus(t, s, done); m["status"] != StatusCompleted {
			t.Fatalf("before its ttl: %v", m)
		}
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		for _, id := range []string{running, queued} {
			if r := do(t, s, "GET", "/status/"+id, ""); r.Code != http.StatusNotFound {
				t.Errorf("after its ttl: %d %s", r.Code, r.Body)
			}
		}
		if r := do(t, s, "GET", "/status/"+done, ""); r.Code != 200 {
			t.Errorf("a finished job before its ttl: %d %s", r.Code, r.Body)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if r := do(t, s, "GET", "/status/"+done, ""); r.Code != http.StatusNotFound {
			t.Errorf("a finished job after its ttl: %d %s", r.Code, r.Body)
		}
		if h := s.jobs.health(); h.Running+h.InQueue != 0 {
			t.Errorf("expired jobs still held: %+v", h)
		}
		select {
		case tag := <-g.started:
			t.Errorf("the expired queued job %q ran", tag)
		default:
		}
		s.jobs.mu.Lock()
		left, bytes := len(s.jobs.byID), s.jobs.keptBytes
		s.jobs.mu.Unlock()
		if left != 0 || bytes != 0 {
			t.Errorf("%d jobs and %d bytes kept after every ttl", left, bytes)
		}
	})
}
