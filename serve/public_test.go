package serve

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestPublicSkipsOnlyItsRequests: Config.Public lets its requests through
// without the key; every other request still needs it.
func TestPublicSkipsOnlyItsRequests(t *testing.T) {
	s, err := New(Config{Identity: "t", APIKey: "k", Logger: discard(),
		Public: func(r *http.Request) bool { return r.URL.Path == "/page" }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	s.Handle("GET /page", ok)
	s.Handle("GET /data", ok)
	for _, tc := range []struct {
		path, key string
		want      int
	}{
		{"/page", "", http.StatusOK},
		{"/data", "", http.StatusUnauthorized},
		{"/data", "k", http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("GET %s (key %q): %d, want %d", tc.path, tc.key, rec.Code, tc.want)
		}
	}
}
