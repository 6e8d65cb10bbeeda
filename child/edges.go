package child

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// Pace of edge reports: at most one each EdgeReportEvery, and one each
// edgeKeepAlive even when no call was made, so that the mothership does
// not forget an idle caller.
const (
	EdgeReportEvery = 2 * time.Second
	edgeKeepAlive   = 30 * time.Second
	edgeTimeout     = 5 * time.Second
)

// ReportEdges posts counts() (this process's outgoing calls so far, per
// target) to the mothership's /flash/edges each period (EdgeReportEvery) while they
// change, until ctx ends. It is how the dashboard shows call and error rates
// on the edges between resources: the counters are the ones the calls update
// anyway, read here, off the call path. Reports are best effort: one that
// fails is not retried (the next one carries the totals), and the reporter
// moves to the next mothership of the list.
func (s *Sync) ReportEdges(ctx context.Context, period time.Duration, counts func() []wire.EdgeCount) {
	at := spread(s.cfg.Identity+"/"+s.cfg.Instance, len(s.bases))
	tick := time.NewTicker(period)
	defer tick.Stop()
	var sent []wire.EdgeCount
	var sentAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := counts()
		if len(now) == 0 || (slices.Equal(now, sent) && time.Since(sentAt) < edgeKeepAlive) {
			continue
		}
		if err := s.postEdges(ctx, s.bases[at], now); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Debug("edge report not delivered", "err", err)
			at = (at + 1) % len(s.bases)
			continue
		}
		sent, sentAt = now, time.Now()
	}
}

func (s *Sync) postEdges(ctx context.Context, base string, edges []wire.EdgeCount) error {
	body, err := json.Marshal(wire.EdgeReport{Resource: s.cfg.Identity, Instance: s.cfg.Instance, Edges: edges})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, edgeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+wire.PathEdges, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", wire.ContentTypeJSON)
	if s.cfg.APIKey != "" {
		req.Header.Set(wire.HeaderAuthorization, "Bearer "+s.cfg.APIKey)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s", wire.PathEdges, resp.Status)
	}
	return nil
}
