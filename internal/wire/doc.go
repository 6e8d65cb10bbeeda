// Package wire is what two flash endpoints must agree on, written once for
// both ends: the job envelope and its answers (the Runpod shape of SPEC
// §5.3), the error body, the header names and their values, the metadata a
// call carries (request id, trace, hops, deadline), path parameters of
// load-balanced routes, and the pooled HTTP transport endpoints call each
// other with. A field of the contract changes here and nowhere else.
package wire
