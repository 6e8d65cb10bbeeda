package mothership

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// servePurgeQueue serves POST /v2/{resource}/purge-queue: each replica keeps
// its own queue, so every one purges it, and the answer sums what they
// removed. Running jobs go on (Runpod's semantics).
func (m *Mothership) servePurgeQueue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("resource")
	if !gatewayName(name) {
		wire.WriteError(w, http.StatusNotFound, "unknown queue-based resource (not a resource name)")
		return
	}
	var urls []string
	if mf, _ := m.Current(); mf == nil || mf.Resources[name] == nil || mf.Resources[name].Status != manifest.StatusIdle {
		if urls = m.replicasOf(w, r, name, false); urls == nil {
			return
		}
	} // else scaled to zero: no replica, no queue, nothing to start
	client := &http.Client{Transport: m.transport}
	removed := 0
	for _, u := range urls {
		n, err := purgeReplica(r, client, strings.TrimSuffix(u, "/")+"/purge-queue")
		if err != nil {
			wire.WriteError(w, http.StatusBadGateway, fmt.Sprintf("resource %s: purge-queue: %s (%d job(s) removed by the replicas before it)",
				quote(name), RedactURLs(err.Error()), removed), "resource", name)
			return
		}
		removed += n
	}
	wire.WriteJSON(w, http.StatusOK, struct {
		Removed int    `json:"removed"`
		Status  string `json:"status"`
	}{removed, "completed"})
}

// purgeReplica asks one replica to purge its queue, with the caller's key.
func purgeReplica(in *http.Request, client *http.Client, target string) (int, error) {
	req, err := http.NewRequestWithContext(in.Context(), http.MethodPost, target, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", in.Header.Get("Authorization"))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return 0, err
	}
	var out struct {
		Removed int `json:"removed"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
		return 0, fmt.Errorf("answered %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return out.Removed, nil
}
