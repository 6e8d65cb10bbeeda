package wire

// PathLoad is where every endpoint reports the work it holds (GET, behind
// the API key): the local autoscaler's load signal, and what a draining
// replica is watched on until it holds nothing.
const PathLoad = "/flash/load"

// Load is an endpoint's answer on PathLoad.
type Load struct {
	Queued       int    `json:"queued"`             // jobs and calls waiting for a slot
	Running      int    `json:"running"`            // jobs and calls running
	OldestWaitMs int64  `json:"oldest_wait_ms"`     // how long the oldest queued job has waited
	Instance     string `json:"instance,omitempty"` // the endpoint's instance id (FLASH_INSTANCE_ID)
}
