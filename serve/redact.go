package serve

import "regexp"

// urlPattern matches an absolute URL: an endpoint's internal address in a
// transport error, say ("Post \"http://127.0.0.1:41234/runsync\": …").
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]*[^\s"'<>.,;:)]`)

// bearerPattern matches a bearer credential someone put into a message.
var bearerPattern = regexp.MustCompile(`(?i)bearer\s+[^\s"']+`)

// publicMessage is a function error's message as callers outside the app
// may read it: internal URLs and bearer keys replaced. Stack traces never
// get here (a panic's stack goes to the log only).
func publicMessage(msg string) string {
	msg = urlPattern.ReplaceAllString(msg, "<internal address>")
	return bearerPattern.ReplaceAllString(msg, "Bearer ***")
}
