package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/mothership"
)

func runStatus(e *env) int {
	fs := flag.NewFlagSet("flash status", flag.ContinueOnError)
	ms := fs.String("mothership", "", mothershipFlagHelp)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	ui := fs.Bool("ui", false, "print the dashboard's link (it carries the API key: keep it private)")
	prov := fs.String("provider", "", "runpod: the app's mothership and endpoints on Runpod")
	app := fs.String("app", "", "with --provider: the app (default: the last build's)")
	fs.Usage = func() { fmt.Fprintln(e.stderr, "Usage: flash status [--mothership URL] [--json]"); fs.PrintDefaults() }
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 0 {
		return fail(e, usageError{"status: takes no arguments"})
	}
	if *prov != "" {
		return runpodStatus(e, *prov, *app, *asJSON)
	}
	base, err := findMothership(*ms, "", e.self)
	if err != nil {
		return fail(e, err)
	}
	if *ui {
		fmt.Fprintln(e.stdout, dashboardLink(base, apiKey()))
		return exitOK
	}
	var st statusView
	if err := getJSON(e.ctx, base, "/flash/status", apiKey(), &st); err != nil {
		return fail(e, err)
	}
	if *asJSON {
		writeJSON(e, st)
		return exitOK
	}
	printStatus(e.stdout, base, st, time.Now())
	for _, r := range st.Resources {
		if r.Status == "failed" {
			return exitFail
		}
	}
	return exitOK
}

// dashboardLink is the mothership's dashboard with the key in the fragment,
// which the browser keeps to itself: the page reads it and logs in.
func dashboardLink(base, key string) string {
	link := strings.TrimRight(base, "/") + "/flash/ui"
	if key != "" {
		link += "#key=" + url.QueryEscape(key)
	}
	return link
}

func printStatus(w io.Writer, base string, st statusView, now time.Time) {
	fmt.Fprintf(w, "mothership %s — manifest version %d\n\n", base, st.Version)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tSTATUS\tREPLICAS\tURL\tCONFIG\tRESTARTS\tERROR / LAST EVENT")
	names := make([]string, 0, len(st.Resources))
	for n := range st.Resources {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := st.Resources[n]
		urls := r.EndpointURLs
		if len(urls) == 0 && r.EndpointURL != "" {
			urls = []string{r.EndpointURL}
		}
		note := r.Error
		if note == "" {
			note = r.LastEvent
		}
		replicas := strconv.Itoa(len(urls))
		if r.Scaling != "" {
			replicas += " (" + r.Scaling + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n, orDash(r.Status), replicas, orDash(strings.Join(urls, " ")), orDash(short(r.ConfigHash)), r.Restarts, orDash(note))
	}
	tw.Flush()
	printMotherships(w, st.Motherships, now)
	if len(st.Instances) == 0 {
		fmt.Fprintln(w, "\nno child has reported yet")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tRESOURCE\tAPPLIED\tLAST SEEN\tNOTE")
	for _, in := range st.Instances {
		note := ""
		switch {
		case in.State == mothership.InstanceGone || now.Sub(in.LastSeen) > instanceGoneAfter:
			note = "gone"
		case in.RejectedVersion > 0:
			note = fmt.Sprintf("rejected v%d: %s", in.RejectedVersion, in.RejectReason)
		case in.AppliedVersion < st.Version:
			note = "behind"
		default:
			note = "up to date"
		}
		fmt.Fprintf(tw, "%s\t%s\tv%d\t%s ago\t%s\n", in.Instance, in.Resource, in.AppliedVersion, now.Sub(in.LastSeen).Round(time.Second), note)
	}
	tw.Flush()
}

// printMotherships lists the motherships sharing the store (--ha), which
// one leads and since when; nothing when the mothership is alone.
func printMotherships(w io.Writer, ms []mothership.MothershipStatus, now time.Time) {
	if len(ms) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MOTHERSHIP\tROLE\tSERVES\tLAST SEEN")
	for _, m := range ms {
		role := "follower"
		switch {
		case !m.Up:
			role = "down"
		case m.Leader:
			role = fmt.Sprintf("leader since %s (%s ago)", m.Since.Local().Format(time.TimeOnly), now.Sub(m.Since).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\tv%d\t%s ago\n", m.URL, role, m.Version, now.Sub(m.LastSeen).Round(time.Second))
	}
	tw.Flush()
}

// instanceGoneAfter is how long an instance may stay unseen before status
// calls it gone: a live child asks for the manifest again at the end of every
// long poll (child.DefaultPollWait), so one missed poll means it stopped.
// The mothership marks the instances of endpoints it undeployed as gone, and
// drops instances unseen for two minutes from its answer.
const instanceGoneAfter = child.DefaultPollWait + 15*time.Second

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
