package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestStatusPrintsDashboardLink: the link carries the key in its fragment,
// escaped, so that the page can log in.
func TestStatusPrintsDashboardLink(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	t.Setenv("FLASH_API_KEY", "k&y+1")
	code, out, errOut := runCLI(t, "status", "--ui", "--mothership", srv.URL)
	if want := srv.URL + "/flash/ui#key=k%26y%2B1\n"; code != exitOK || out != want {
		t.Fatalf("exit %d, printed %q (%s); want %q", code, out, errOut, want)
	}
}
