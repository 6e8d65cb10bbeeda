package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
)

// machine describes this machine and build.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), OS: runtime.GOOS,
		Arch: runtime.GOARCH, GoVersion: runtime.Version(), CPUModel: cpuModel()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				m.Revision = s.Value[:12]
			}
		}
	}
	return m
}

// cpuModel reads the CPU model name from /proc/cpuinfo ("unknown" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// WriteTable prints the run's header and its figures as an aligned table.
func (res *Result) WriteTable(w io.Writer) error {
	m := res.Machine
	fmt.Fprintf(w, "flash bench (%s) — %s — %s, %d cores (GOMAXPROCS %d), %s/%s, %s",
		res.Mode, res.Date.Format("2006-01-02 15:04 MST"), m.CPUModel, m.Cores, m.GOMAXPROCS, m.OS, m.Arch, m.GoVersion)
	if m.Revision != "" {
		fmt.Fprintf(w, ", rev %s", m.Revision)
	}
	fmt.Fprintf(w, "; took %s\n\n", res.Duration.Round(100_000_000))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tUNIT\tTARGET\tSTATUS")
	for _, f := range res.Figures {
		status := "-"
		if f.Met != nil {
			status = "met"
			if !*f.Met {
				status = "MISSED"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Name, FormatValue(f.Value), f.Unit, orDash(f.Target), status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "\nnote: %s", n)
	}
	if len(res.Notes) > 0 {
		fmt.Fprintln(w)
	}
	for _, e := range res.Errors {
		fmt.Fprintf(w, "\nerror: %s", e)
	}
	if len(res.Errors) > 0 {
		fmt.Fprintln(w)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// FormatValue prints a figure with the precision a noisy machine supports.
func FormatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// WriteFiles writes, into dir (created when missing), one SVG plot and one
// CSV table per curve, the table as table.txt and the whole result as
// result.json.
func (res *Result) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return nil
	}
	for _, c := range res.Curves {
		if err := write(c.Name+".svg", func(w io.Writer) error { return WriteSVG(w, c) }); err != nil {
			return err
		}
		if err := write(c.Name+".csv", func(w io.Writer) error { return WriteCSV(w, c) }); err != nil {
			return err
		}
	}
	if err := write("table.txt", res.WriteTable); err != nil {
		return err
	}
	return write("result.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res.forJSON())
	})
}

// forJSON is the result with curve values rounded and non-finite ones null.
func (res *Result) forJSON() any {
	type curve struct {
		Curve
		Series []struct {
			Name string     `json:"name"`
			Y    []*float64 `json:"y"`
		} `json:"series"`
	}
	type full struct {
		*Result
		Figures []Figure `json:"figures"`
		Curves  []curve  `json:"curves"`
	}
	out := full{Result: res}
	for _, f := range res.Figures {
		f.Value = roundSig(f.Value) // figure refuses values that are not finite
		out.Figures = append(out.Figures, f)
	}
	for _, c := range res.Curves {
		cc := curve{Curve: c}
		for _, s := range c.Series {
			var ys []*float64
			for _, y := range s.Y {
				if math.IsNaN(y) || math.IsInf(y, 0) {
					ys = append(ys, nil)
					continue
				}
				v := roundSig(y)
				ys = append(ys, &v)
			}
			cc.Series = append(cc.Series, struct {
				Name string     `json:"name"`
				Y    []*float64 `json:"y"`
			}{s.Name, ys})
		}
		out.Curves = append(out.Curves, cc)
	}
	return out
}
