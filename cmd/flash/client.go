package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/mothership"
)

// httpClient carries every request the CLI makes to a mothership: the one
// pooled transport of internal/wire, not http.DefaultClient's.
var httpClient = &http.Client{Transport: wire.NewTransport()}

// apiKey returns FLASH_API_KEY, else RUNPOD_API_KEY, else the directory's key
// that flash run keeps in .flash/api_key.
func apiKey() string {
	for _, k := range []string{os.Getenv("FLASH_API_KEY"), os.Getenv("RUNPOD_API_KEY")} {
		if k != "" {
			return k
		}
	}
	b, _ := os.ReadFile(layout.In("").APIKey())
	return strings.TrimSpace(string(b))
}

// statusView is GET /flash/status.
type statusView = mothership.Status

// statusResource is one resource of statusView.
type statusResource = mothership.ResourceStatus

// getJSON GETs base+path with the API key and decodes the JSON answer.
func getJSON(ctx context.Context, base, path, key string, v any) error {
	return callJSON(ctx, http.MethodGet, base, path, key, v)
}

// callJSON sends an empty request to base+path with the API key and decodes
// the JSON answer.
func callJSON(ctx context.Context, method, base, path, key string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return fmt.Errorf("mothership URL %q: %w", base, err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return unreachable(base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err := notFlash(base, resp); err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return refusedKey(base)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s %s%s answered %d: %s", method, base, path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s%s: unexpected answer: %w", method, base, path, err)
	}
	return nil
}

// notFlash recognises an answer that no mothership gives: every answer of
// flash's API, errors included, is JSON. Other servers' pages stay unprinted.
func notFlash(base string, resp *http.Response) error {
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct == "application/json" || ct == "application/x-ndjson" {
		return nil
	}
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Errorf("the server at %s is not a flash mothership (it answered %d with %s); check the address (--mothership, FLASH_MOTHERSHIP_URL)",
		base, resp.StatusCode, ct)
}

func refusedKey(base string) error {
	return fmt.Errorf("the mothership at %s refused the API key (401): it runs with another key; set FLASH_API_KEY to it (flash run keeps this directory's key in %s)",
		base, layout.In("").APIKey())
}

// unreachable explains a failed connection to the mothership.
func unreachable(base string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot reach the mothership at %s: nothing is listening there (is the app running? check --mothership or FLASH_MOTHERSHIP_URL): %w", base, err)
	}
	return fmt.Errorf("cannot reach the mothership at %s: %w", base, err)
}
