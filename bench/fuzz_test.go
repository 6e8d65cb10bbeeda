package bench

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
)

// FuzzWriteSVG checks that any labels and values give a well-formed SVG
// without non-finite coordinates, and a CSV that reads back.
func FuzzWriteSVG(f *testing.F) {
	f.Add("title", "series <a>", 1.0, 10.0, 0.5, 1e9, true, false)
	f.Add("\x00\xff&\"'", "", -1.0, 0.0, -3.0, 0.0, true, true)
	f.Add("", "s", 5.0, 5.0, 1e-300, 1e300, false, true)
	f.Fuzz(func(t *testing.T, title, name string, x1, x2, y1, y2 float64, logX, logY bool) {
		c := Curve{Name: "f", Title: title, XLabel: name, YLabel: title, LogX: logX, LogY: logY,
			X: []float64{x1, x2}, Series: []Series{{name, []float64{y1, y2}}, {title, []float64{y2}}}}
		var buf bytes.Buffer
		if err := WriteSVG(&buf, c); err != nil {
			t.Fatal(err)
		}
		svgShape(t, buf.Bytes())
		for _, bad := range []string{"NaN", "Inf"} {
			if strings.Contains(buf.String(), `="`+bad) || strings.Contains(buf.String(), ","+bad) {
				t.Fatalf("non-finite coordinate in\n%s", buf.String())
			}
		}
		buf.Reset()
		if err := WriteCSV(&buf, c); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&buf).ReadAll()
		if err != nil || len(rows) != 3 {
			t.Fatalf("CSV does not read back: %v %q", err, rows)
		}
	})
}
