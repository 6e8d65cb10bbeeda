package store

import "time"

// Desired is a recorded desired state (SPEC §4.3): what the last deploy asked for.
type Desired struct {
	Version    int64  // 1, 2, …: grows by one per recorded deploy
	Manifest   []byte // the desired manifest JSON
	Artifact   string // digest ("sha256:<hex>") of the binary the local provider runs; "" = the mothership's own
	RecordedAt time.Time
}
