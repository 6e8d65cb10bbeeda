package wire

// PathEdges is the mothership's route where a child reports its outgoing
// calls (POST, JSON EdgeReport), for the dashboard's call rates per edge.
const PathEdges = "/flash/edges"

// EdgeReport is one child instance's outgoing calls so far, per target
// resource: counters since the process started, so that a lost report
// loses nothing and a restart shows as a counter that went down.
type EdgeReport struct {
	Resource string      `json:"resource"`
	Instance string      `json:"instance"`
	Edges    []EdgeCount `json:"edges"`
}

// EdgeCount is the calls made to one target resource.
type EdgeCount struct {
	Target  string  `json:"target"`
	Calls   uint64  `json:"calls"`
	Errors  uint64  `json:"errors"`  // calls whose outcome was not ok
	Seconds float64 `json:"seconds"` // their total latency
}
