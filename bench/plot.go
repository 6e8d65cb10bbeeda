package bench

import (
	"bufio"
	"encoding/csv"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Curve is one measured relation, y of each series against x, written as a
// CSV table and an SVG line plot.
type Curve struct {
	// Name is the file base name (e.g. "propagation").
	Name string `json:"name"`
	// Title is the plot's title.
	Title string `json:"title"`
	// XLabel and YLabel name the axes, units included.
	XLabel string `json:"x_label"`
	YLabel string `json:"y_label"`
	// LogX and LogY draw an axis on a logarithmic scale.
	LogX bool `json:"log_x,omitempty"`
	LogY bool `json:"log_y,omitempty"`
	// X are the measured points, in order.
	X []float64 `json:"x"`
	// Series are the lines; each has one Y per X (NaN: not measured).
	Series []Series `json:"series"`
}

// Series is one line of a Curve.
type Series struct {
	Name string    `json:"name"`
	Y    []float64 `json:"y"`
}

// WriteCSV writes c as a table: a header of the x label and the series
// names, then one row per x. Values not measured are empty cells.
func WriteCSV(w io.Writer, c Curve) error {
	cw := csv.NewWriter(w)
	header := []string{c.XLabel}
	for _, s := range c.Series {
		header = append(header, s.Name)
	}
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write csv %s: %w", c.Name, err)
	}
	for i, x := range c.X {
		row := []string{formatCSV(x)}
		for _, s := range c.Series {
			v := math.NaN()
			if i < len(s.Y) {
				v = s.Y[i]
			}
			row = append(row, formatCSV(v))
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv %s: %w", c.Name, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv %s: %w", c.Name, err)
	}
	return nil
}

func formatCSV(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// Plot geometry, in SVG user units; the width grows with the legend.
const (
	padL, padT   = 78, 48
	padB         = 62
	plotW, plotH = 540, 330
	svgH         = padT + plotH + padB
)

// palette is a colour-blind-friendly set (Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

// axis maps data values to pixels along one axis.
type axis struct {
	log    bool
	lo, hi float64 // data range (log10 of it on a log axis)
}

// ok reports whether v can be drawn on the axis.
func (a axis) ok(v float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && (!a.log || v > 0)
}

func (a axis) t(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	if a.hi == a.lo {
		return 0.5
	}
	return (v - a.lo) / (a.hi - a.lo)
}

// newXAxis fits an x axis to the measured points, with a small margin.
func newXAxis(vals []float64, log bool) axis {
	a := axis{log: log, lo: math.Inf(1), hi: math.Inf(-1)}
	for _, v := range vals {
		if a.ok(v) {
			if log {
				v = math.Log10(v)
			}
			a.lo, a.hi = min(a.lo, v), max(a.hi, v)
		}
	}
	if math.IsInf(a.lo, 0) {
		a.lo, a.hi = 0, 1
	}
	pad := (a.hi - a.lo) * 0.04
	if pad == 0 {
		pad = 0.5
	}
	a.lo, a.hi = a.lo-pad, a.hi+pad
	return a
}

// newAxis fits a y axis to vals; a linear axis starts at zero when all
// values are positive, so that ratios between lines read right.
func newAxis(vals []float64, log, fromZero bool) axis {
	a := axis{log: log, lo: math.Inf(1), hi: math.Inf(-1)}
	for _, v := range vals {
		if !a.ok(v) {
			continue
		}
		if log {
			v = math.Log10(v)
		}
		a.lo, a.hi = min(a.lo, v), max(a.hi, v)
	}
	if math.IsInf(a.lo, 0) { // nothing drawable
		a.lo, a.hi = 0, 1
		return a
	}
	if log {
		a.lo, a.hi = math.Floor(a.lo), math.Ceil(a.hi)
		if a.hi == a.lo {
			a.hi = a.lo + 1
		}
		return a
	}
	if fromZero && a.lo > 0 {
		a.lo = 0
	}
	if a.hi == a.lo {
		a.hi = a.lo + math.Max(1, math.Abs(a.lo))
	}
	step := niceStep((a.hi - a.lo) / 5)
	a.lo = math.Floor(a.lo/step) * step
	a.hi = math.Ceil(a.hi/step) * step
	return a
}

// niceStep rounds a raw tick step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// ticks returns the tick values of a y axis.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for e := a.lo; e <= a.hi+1e-9 && len(out) < 20; e++ {
			out = append(out, math.Pow(10, e))
		}
		return out
	}
	step := niceStep((a.hi - a.lo) / 5)
	for v := a.lo; v <= a.hi+step/1e6 && len(out) < 20; v += step {
		out = append(out, v)
	}
	return out
}

// WriteSVG writes c as a self-contained SVG line plot: axes with ticks and
// grid, one polyline with markers per series (broken where a value is
// missing), a legend and the title. It needs no plotting library.
func WriteSVG(w io.Writer, c Curve) error {
	bw := bufio.NewWriter(w)
	var ys []float64
	for _, s := range c.Series {
		ys = append(ys, s.Y...)
	}
	ax := newXAxis(c.X, c.LogX)
	ay := newAxis(ys, c.LogY, true)
	legend := 0 // longest series name, in characters
	for _, s := range c.Series {
		legend = max(legend, utf8.RuneCountInString(s.Name))
	}
	padR := 30 + 7*min(legend, 60) + 40
	svgW := padL + plotW + padR
	px := func(v float64) float64 { return padL + ax.t(v)*plotW }
	py := func(v float64) float64 { return padT + (1-ay.t(v))*plotH }

	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgW, svgH, svgW, svgH)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgW, svgH)
	fmt.Fprintf(bw, `<text x="%d" y="26" font-size="15" font-weight="bold">%s</text>`+"\n", padL, esc(c.Title))

	// Grid and y ticks.
	for _, v := range ay.ticks() {
		y := py(v)
		fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e4e4e4"/>`+"\n", padL, y, padL+plotW, y)
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, y+4, esc(tickLabel(v)))
	}
	// X ticks at the measured points: curves have a handful of them.
	seen := map[string]bool{}
	for _, v := range c.X {
		if !ax.ok(v) {
			continue
		}
		x := px(v)
		label := tickLabel(v)
		if seen[label] {
			continue
		}
		seen[label] = true
		fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e4e4e4"/>`+"\n", x, padT, x, padT+plotH)
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, padT+plotH+18, esc(label))
	}
	// Axes and their labels.
	fmt.Fprintf(bw, `<path d="M%d %d V%d H%d" fill="none" stroke="#333"/>`+"\n", padL, padT, padT+plotH, padL+plotW)
	fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", padL+plotW/2, svgH-16, esc(c.XLabel+scaleNote(c.LogX)))
	fmt.Fprintf(bw, `<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", padT+plotH/2, esc(c.YLabel+scaleNote(c.LogY)))

	for i, s := range c.Series {
		color := palette[i%len(palette)]
		var seg []string
		flush := func() {
			if len(seg) > 1 {
				fmt.Fprintf(bw, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(seg, " "))
			}
			seg = seg[:0]
		}
		for j, x := range c.X {
			if j >= len(s.Y) || !ax.ok(x) || !ay.ok(s.Y[j]) {
				flush()
				continue
			}
			seg = append(seg, fmt.Sprintf("%.1f,%.1f", px(x), py(s.Y[j])))
		}
		flush()
		for j, x := range c.X {
			if j < len(s.Y) && ax.ok(x) && ay.ok(s.Y[j]) {
				fmt.Fprintf(bw, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s</title></circle>`+"\n",
					px(x), py(s.Y[j]), color, esc(s.Name), esc(tickLabel(x)+" → "+tickLabel(s.Y[j])))
			}
		}
		ly := padT + 10 + i*22
		fmt.Fprintf(bw, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", padL+plotW+16, ly, padL+plotW+40, ly, color)
		fmt.Fprintf(bw, `<text x="%d" y="%d">%s</text>`+"\n", padL+plotW+46, ly+4, esc(s.Name))
	}
	if len(ys) == 0 {
		fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="middle" fill="#888">no data</text>`+"\n", padL+plotW/2, padT+plotH/2)
	}
	fmt.Fprintln(bw, `</svg>`)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write svg %s: %w", c.Name, err)
	}
	return nil
}

func scaleNote(log bool) string {
	if log {
		return " (log scale)"
	}
	return ""
}

// tickLabel prints an axis value short: 1500 → "1.5k", 0.25 → "0.25".
func tickLabel(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// esc escapes text for XML character data and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(strings.ToValidUTF8(s, "\uFFFD")))
	return b.String()
}
