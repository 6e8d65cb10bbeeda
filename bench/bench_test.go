package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if helper, err := MaybeHelper(context.Background()); helper {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestPercentile(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"empty", nil, 50, nan},
		{"one", []float64{7}, 99, 7},
		{"median odd", []float64{3, 1, 2}, 50, 2},
		{"median even interpolates", []float64{4, 1, 3, 2}, 50, 2.5},
		{"min", []float64{5, 1, 9}, 0, 1},
		{"max", []float64{5, 1, 9}, 100, 9},
		{"p99 of 1..100", seq(100), 99, 99.01},
		{"p90 of 1..11", seq(11), 90, 10},
		{"below 0 clamps", []float64{1, 2}, -5, 1},
		{"above 100 clamps", []float64{1, 2}, 500, 2},
		{"nan p", []float64{1, 2}, nan, nan},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := slices.Clone(c.xs)
			got := Percentile(c.xs, c.p)
			if math.IsNaN(c.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-c.want) > 1e-9) {
				t.Errorf("Percentile(%v, %v) = %v, want %v", c.xs, c.p, got, c.want)
			}
			if !slices.Equal(in, c.xs) {
				t.Errorf("Percentile modified its input: %v", c.xs)
			}
		})
	}
	if got := Median([]float64{10, 30, 20}); got != 20 {
		t.Errorf("Median = %v", got)
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[n-1-i] = float64(i + 1) // reversed: Percentile must sort
	}
	return out
}

var testCurve = Curve{
	Name: "t", Title: `Latency <p99> & "friends"`, XLabel: "clients", YLabel: "ms", LogX: true,
	X: []float64{10, 100, 1000},
	Series: []Series{
		{"p50", []float64{1, 2.5, math.NaN()}},
		{"p99, worst", []float64{3, 4, 12.25}},
		{"short", []float64{5}},
	},
}

func TestWriteCSV(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCSV(&buf, testCurve); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, buf.String())
	}
	want := [][]string{
		{"clients", "p50", "p99, worst", "short"},
		{"10", "1", "3", "5"},
		{"100", "2.5", "4", ""},
		{"1000", "", "12.25", ""},
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("rows = %q\nwant %q", rows, want)
	}
}

func TestWriteCSVError(t *testing.T) {
	if err := WriteCSV(failWriter{}, testCurve); err == nil {
		t.Error("no error from a failing writer")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// svgShape parses an SVG and counts its elements; it fails the test when
// the document is not well-formed XML.
func svgShape(t *testing.T, data []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	counts := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, data)
		}
		if se, ok := tok.(xml.StartElement); ok {
			counts[se.Name.Local]++
		}
	}
	if counts["svg"] != 1 {
		t.Fatalf("want one <svg> root, got %d", counts["svg"])
	}
	return counts
}

func TestWriteSVG(t *testing.T) {
	cases := []struct {
		name      string
		c         Curve
		polylines int // a line per run of two or more drawable points
		circles   int // a marker per drawable point
		text      []string
	}{
		{"mixed", testCurve, 2, 6, []string{"Latency &lt;p99&gt; &amp; &#34;friends&#34;", "p99, worst", "clients (log scale)", "1k"}},
		{"gap breaks the line", Curve{Name: "g", X: []float64{1, 2, 3, 4, 5}, Series: []Series{{"s", []float64{1, 2, math.NaN(), 4, 5}}}}, 2, 4, nil},
		{"log y drops non-positive", Curve{Name: "l", LogY: true, X: []float64{1, 2, 3}, Series: []Series{{"s", []float64{0, 10, 100}}}}, 1, 2, []string{"100"}},
		{"one point", Curve{Name: "o", X: []float64{64}, Series: []Series{{"s", []float64{3}}}}, 0, 1, nil},
		{"flat line", Curve{Name: "f", X: []float64{1, 2}, Series: []Series{{"s", []float64{0, 0}}}}, 1, 2, nil},
		{"empty", Curve{Name: "e", Title: "nothing"}, 0, 0, []string{"no data"}},
		{"infinities", Curve{Name: "i", X: []float64{1, math.Inf(1)}, Series: []Series{{"s", []float64{math.Inf(-1), 2}}}}, 0, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteSVG(&buf, c.c); err != nil {
				t.Fatal(err)
			}
			got := svgShape(t, buf.Bytes())
			if got["polyline"] != c.polylines || got["circle"] != c.circles {
				t.Errorf("%d polylines and %d circles, want %d and %d\n%s", got["polyline"], got["circle"], c.polylines, c.circles, buf.String())
			}
			if got["text"] < 1 {
				t.Error("no text at all")
			}
			for _, s := range c.text {
				if !strings.Contains(buf.String(), s) {
					t.Errorf("missing %q", s)
				}
			}
			if strings.Contains(buf.String(), "NaN") || strings.Contains(buf.String(), "Inf") {
				t.Errorf("non-finite coordinate written:\n%s", buf.String())
			}
		})
	}
}

func TestAxisTicks(t *testing.T) {
	a := newAxis([]float64{3, 97}, false, true)
	if a.lo != 0 || a.hi != 100 {
		t.Errorf("linear axis = [%v, %v], want [0, 100]", a.lo, a.hi)
	}
	if got := a.ticks(); !slices.Equal(got, []float64{0, 20, 40, 60, 80, 100}) {
		t.Errorf("ticks = %v", got)
	}
	l := newAxis([]float64{0.3, 4000}, true, true)
	if got := l.ticks(); !slices.Equal(got, []float64{0.1, 1, 10, 100, 1000, 10000}) {
		t.Errorf("log ticks = %v", got)
	}
	for _, c := range []struct {
		raw, want float64
	}{{0.7, 1}, {1.5, 2}, {3, 5}, {7, 10}, {23, 50}, {0, 1}} {
		if got := niceStep(c.raw); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("niceStep(%v) = %v, want %v", c.raw, got, c.want)
		}
	}
}

func TestFiguresJSON(t *testing.T) {
	fs := Figures{{Name: "b", Value: 2.123456}, {Name: "a", Value: 12345.678}, {Name: "c", Value: math.NaN()}, {Name: "d", Value: 0.000123456}}
	b, err := json.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"b":2.123,"a":12346,"c":null,"d":0.0001235}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

func TestTargets(t *testing.T) {
	r := &runner{res: &Result{}}
	r.figure("route_local_ns", 19.99, "ns", "")
	r.figure("manifest_get_ratio", 0.79, "×", "")
	r.figure("route_local_allocs", 0, "allocs", "")
	r.figure("untargeted", 5, "x", "")
	r.figure("propagation_p99_ms_n100", math.NaN(), "ms", "")
	want := map[string]string{"route_local_ns": "met", "manifest_get_ratio": "missed", "route_local_allocs": "met", "untargeted": "none"}
	for name, w := range want {
		f, ok := r.res.Figures.Get(name)
		if !ok {
			t.Fatalf("%s not recorded", name)
		}
		got := "none"
		if f.Met != nil {
			got = map[bool]string{true: "met", false: "missed"}[*f.Met]
		}
		if got != w {
			t.Errorf("%s = %v (target %q): %s, want %s", name, f.Value, f.Target, got, w)
		}
	}
	if _, ok := r.res.Figures.Get("propagation_p99_ms_n100"); ok || len(r.res.Errors) != 1 {
		t.Errorf("a NaN figure must be an error, not a figure: %v", r.res.Errors)
	}
}

func TestRunRejectsUnknownGroup(t *testing.T) {
	if _, err := Run(t.Context(), Config{Only: []string{"nope"}}); err == nil {
		t.Error("no error for an unknown group")
	}
}

// TestSmokeHasEveryFigure runs the whole harness at its smallest sizes and
// checks that it yields every promised figure and curve. Under -short it
// skips the topology (which builds examples/pipeline).
func TestSmokeHasEveryFigure(t *testing.T) {
	cfg := Config{Mode: Smoke, SourceDir: ".."}
	wantMissing := []string(nil)
	if testing.Short() {
		for _, g := range Groups() {
			if g != GroupTopology {
				cfg.Only = append(cfg.Only, g)
			}
		}
		wantMissing = []string{"topology_up_ms"}
	}
	var progress bytes.Buffer
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := res.Missing(); !slices.Equal(got, wantMissing) {
		t.Errorf("missing figures %v, want %v", got, wantMissing)
	}
	for _, f := range res.Figures {
		// A difference of two timings may come out below zero in a smoke
		// run; nothing else may (the parked-poll memory is measured in fresh
		// processes, so it cannot).
		noisy := strings.HasSuffix(f.Name, "_overhead_ns")
		if math.IsNaN(f.Value) || math.IsInf(f.Value, 0) || f.Value < 0 && !noisy {
			t.Errorf("%s = %v", f.Name, f.Value)
		}
		if f.About == "" || f.Unit == "" {
			t.Errorf("%s has no description or unit", f.Name)
		}
		if _, ok := targets[f.Name]; ok != (f.Met != nil) {
			t.Errorf("%s: target checked = %v", f.Name, f.Met != nil)
		}
	}
	// Figures that are exact on any machine.
	for name, want := range map[string]float64{"fanin_upstream_fetches_k1000": 1, "reconcile_unchanged_provider_calls": 0, "route_local_allocs": 0} {
		if f, _ := res.Figures.Get(name); f.Value != want {
			t.Errorf("%s = %v, want %v", name, f.Value, want)
		}
	}
	var names []string
	for _, c := range res.Curves {
		names = append(names, c.Name)
		for _, s := range c.Series {
			if len(s.Y) != len(c.X) {
				t.Errorf("curve %s series %s: %d values for %d points", c.Name, s.Name, len(s.Y), len(c.X))
			}
		}
	}
	slices.Sort(names)
	if want := []string{"manifest_size", "memory_parked", "propagation", "remote_p99", "remote_p99_inproc", "remote_throughput", "remote_throughput_inproc"}; !slices.Equal(names, want) {
		t.Errorf("curves %v, want %v", names, want)
	}

	var js bytes.Buffer
	if err := json.NewEncoder(&js).Encode(res.Figures); err != nil {
		t.Fatal(err)
	}
	var obj map[string]*float64
	if err := json.Unmarshal(js.Bytes(), &obj); err != nil {
		t.Fatalf("figures JSON is not one object of numbers: %v\n%s", err, js.String())
	}
	for _, n := range RequiredFigures() {
		if _, ok := obj[n]; !ok && !slices.Contains(wantMissing, n) {
			t.Errorf("JSON lacks %s", n)
		}
	}

	dir := t.TempDir()
	if err := res.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		for _, ext := range []string{".svg", ".csv"} {
			data, err := os.ReadFile(filepath.Join(dir, n+ext))
			if err != nil {
				t.Fatal(err)
			}
			if ext == ".svg" {
				svgShape(t, data)
			}
		}
	}
	table, err := os.ReadFile(filepath.Join(dir, "table.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range RequiredFigures() {
		if !strings.Contains(string(table), n) && !slices.Contains(wantMissing, n) {
			t.Errorf("table lacks %s", n)
		}
	}
	if _, err := os.ReadFile(filepath.Join(dir, "result.json")); err != nil {
		t.Fatal(err)
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:1/manifest
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.00us  300.00us   8.20ms   90.00%
  Latency Distribution
     50%  500.00us
     75%  700.00us
     90%    1.00ms
     99%    2.50ms
  55612 requests in 1.00s, 80.00MB read
Requests/sec:  55612.34
Transfer/sec:     80.00MB
`
	res, err := parseWrk(out)
	if err != nil || res.rps != 55612.34 || res.p99MS != 2.5 {
		t.Fatalf("parseWrk = %+v, %v", res, err)
	}
	if _, err := parseWrk(strings.Replace(out, "Requests/sec", "Transfer", 1)); err == nil {
		t.Error("no requests/s: want an error")
	}
	if _, err := parseWrk(out + "  Non-2xx or 3xx responses: 12\n"); err == nil {
		t.Error("non-2xx answers: want an error")
	}
	for in, want := range map[string]float64{"812.00us": 0.812, "8.20ms": 8.2, "1.50s": 1500} {
		if got, ok := wrkMillis(in); !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("wrkMillis(%q) = %v, %v", in, got, ok)
		}
	}
}
