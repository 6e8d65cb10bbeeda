package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/flash-go/flash/mothership"
)

// apiKeyFile is where flash run keeps the key it generated.
const apiKeyFile = ".flash/api_key"

// defaultMothership is where flash run starts the mothership by default.
const defaultMothership = "http://127.0.0.1:8080"

// mothershipURL picks the mothership: the flag, else FLASH_MOTHERSHIP_URL, else the local default.
func mothershipURL(flagValue string) string {
	for _, u := range []string{flagValue, os.Getenv("FLASH_MOTHERSHIP_URL")} {
		if u != "" {
			return strings.TrimRight(u, "/")
		}
	}
	return defaultMothership
}

// apiKey returns FLASH_API_KEY, else RUNPOD_API_KEY, else the key flash run wrote.
func apiKey() string {
	for _, k := range []string{os.Getenv("FLASH_API_KEY"), os.Getenv("RUNPOD_API_KEY")} {
		if k != "" {
			return k
		}
	}
	b, _ := os.ReadFile(apiKeyFile)
	return strings.TrimSpace(string(b))
}

// statusView is GET /flash/status.
type statusView = mothership.Status

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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return unreachable(base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("the mothership at %s refused the API key (401): set FLASH_API_KEY to the key it runs with (flash run writes it to %s)", base, apiKeyFile)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s %s%s answered %d: %s", method, base, path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s%s: unexpected answer: %w", method, base, path, err)
	}
	return nil
}

// unreachable explains a failed connection to the mothership.
func unreachable(base string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot reach the mothership at %s: nothing is listening there; start the app with `flash run`, or pass --mothership URL: %w", base, err)
	}
	return fmt.Errorf("cannot reach the mothership at %s: %w", base, err)
}
