package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// The chart: one panel per scenario, RSS over time of each process as a line,
// Envoy's own heap (server.memory_allocated) dashed, the load's span shaded. Each
// panel has its own scale, written on its axis: the seed's hundreds of MiB would
// flatten everything else to the floor of a shared one.

const (
	panelWidth   = 400
	panelHeight  = 210
	panelLeft    = 58 // room for the y labels
	panelRight   = 12
	panelTop     = 44 // title and peaks
	panelBottom  = 34 // x labels
	chartColumns = 3
	headerHeight = 64
	legendWidth  = 1100
)

var processColors = map[string]string{
	"envoy":       "#1f77b4",
	"bodystream":  "#d62728",
	"seed-server": "#9467bd",
	"echo":        "#2ca02c",
	clientProcess: "#aaaaaa",
}

func processColor(name string) string {
	if c, ok := processColors[name]; ok {
		return c
	}
	return "#7f7f7f"
}

// writeSVG draws the chart of results.
func writeSVG(w io.Writer, title string, results []*Result) error {
	cols := min(chartColumns, max(len(results), 1))
	rows := (len(results) + cols - 1) / cols
	// Never narrower than the legend, which a chart of one or two panels would cut.
	width, height := max(cols*panelWidth, legendWidth), headerHeight+max(rows, 1)*panelHeight

	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(bw, `<text x="12" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", esc(title))

	// The legend: every process any panel shows.
	seen := map[string]bool{}
	for _, r := range results {
		for _, s := range r.Series {
			seen[s.Process] = true
		}
	}
	x := 12
	for _, name := range orderedNames(seen) {
		fmt.Fprintf(bw, `<line x1="%d" y1="42" x2="%d" y2="42" stroke="%s" stroke-width="2.5"/>`, x, x+22, processColor(name))
		fmt.Fprintf(bw, `<text x="%d" y="46">%s RSS</text>`+"\n", x+27, esc(name))
		x += 40 + 7*len(name) + 24
	}
	fmt.Fprintf(bw, `<line x1="%d" y1="42" x2="%d" y2="42" stroke="%s" stroke-width="1.5" stroke-dasharray="4 3"/>`, x, x+22, processColor("envoy"))
	fmt.Fprintf(bw, `<text x="%d" y="46">envoy heap in use (memory_allocated)</text>`+"\n", x+27)
	x += 27 + 230
	fmt.Fprintf(bw, `<rect x="%d" y="36" width="22" height="12" fill="#eeeeee"/><text x="%d" y="46">uploads running</text>`+"\n", x, x+27)

	for i, r := range results {
		writePanel(bw, (i%cols)*panelWidth, headerHeight+(i/cols)*panelHeight, r)
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func writePanel(w *bufio.Writer, x0, y0 int, r *Result) {
	plotW := float64(panelWidth - panelLeft - panelRight)
	plotH := float64(panelHeight - panelTop - panelBottom)
	left, top := float64(x0+panelLeft), float64(y0+panelTop)

	var maxT, maxMiB float64
	for _, s := range r.Series {
		for _, p := range s.Points {
			maxT = max(maxT, p.T)
			maxMiB = max(maxMiB, float64(p.RSS)/(1<<20))
		}
	}
	for _, p := range r.EnvoyMemory {
		maxMiB = max(maxMiB, float64(p.Allocated)/(1<<20))
	}
	yStep := niceStep(maxMiB, 4)
	yMax := math.Max(yStep, math.Ceil(maxMiB/yStep)*yStep)
	xStep := niceStep(maxT, 5)
	xMax := math.Max(xStep, math.Ceil(maxT/xStep)*xStep)
	px := func(t float64) float64 { return left + t/xMax*plotW }
	py := func(m float64) float64 { return top + plotH - m/yMax*plotH }

	fmt.Fprintf(w, `<g class="panel" data-scenario="%s">`+"\n", esc(r.Title))
	fmt.Fprintf(w, `<text x="%d" y="%d" font-size="12.5" font-weight="bold">%s`, x0+10, y0+16, esc(r.Title))
	if r.Errors > 0 {
		fmt.Fprintf(w, ` <tspan fill="#d62728">%d FAILED</tspan>`, r.Errors)
	}
	fmt.Fprintln(w, `</text>`)
	// The peaks, in each process's colour.
	fmt.Fprintf(w, `<text x="%d" y="%d" font-size="10.5">peak MiB:`, x0+10, y0+31)
	for _, p := range r.Processes {
		fmt.Fprintf(w, ` <tspan fill="%s">%s %s</tspan>`, processColor(p.Name), esc(p.Name), esc(mibNumber(p.PeakRSS)))
	}
	fmt.Fprintln(w, `</text>`)

	// The load's span, then the grid and axes.
	if r.LoadEnd > r.LoadStart {
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#eeeeee"/>`+"\n",
			px(r.LoadStart), top, px(r.LoadEnd)-px(r.LoadStart), plotH)
	}
	for m := 0.0; m <= yMax+yStep/2; m += yStep {
		y := py(m)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#cccccc" stroke-width="0.5"/>`, left, y, left+plotW, y)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-4, y+3.5, esc(axisNumber(m)+" MiB"))
	}
	for t := 0.0; t <= xMax+xStep/2; t += xStep {
		x := px(t)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888888"/>`, x, top+plotH, x, top+plotH+4)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, top+plotH+15, esc(axisNumber(t)+"s"))
	}
	fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888888"/>`+"\n", left, top, plotW, plotH)
	fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555555">seconds</text>`+"\n", left+plotW/2, y0+panelHeight-4)

	for _, s := range r.Series {
		var pts strings.Builder
		for _, p := range decimate(s.Points, int(plotW)) {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(p.T), py(float64(p.RSS)/(1<<20)))
		}
		fmt.Fprintf(w, `<polyline class="series" data-process="%s" fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`+"\n",
			esc(s.Process), processColor(s.Process), strings.TrimSpace(pts.String()))
	}
	if len(r.EnvoyMemory) > 0 {
		allocated := make([]Point, len(r.EnvoyMemory))
		for i, p := range r.EnvoyMemory {
			allocated[i] = Point{T: p.T, RSS: p.Allocated}
		}
		var pts strings.Builder
		for _, p := range decimate(allocated, int(plotW)) {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(p.T), py(float64(p.RSS)/(1<<20)))
		}
		fmt.Fprintf(w, `<polyline class="series" data-process="envoy-allocated" fill="none" stroke="%s" stroke-width="1.2" stroke-dasharray="4 3" points="%s"/>`+"\n",
			processColor("envoy"), strings.TrimSpace(pts.String()))
	}
	fmt.Fprintln(w, "</g>")
}

// decimate returns at most about 2n points of points: in each of n runs of time, the
// lowest and the highest sample, in time order. A panel is a few hundred pixels wide,
// so a 15-minute load sampled 9,000 times draws the same and weighs a tenth as much,
// and no peak is lost.
func decimate(points []Point, n int) []Point {
	if n < 1 || len(points) <= 2*n {
		return points
	}
	out := make([]Point, 0, 2*n+2)
	per := (len(points) + n - 1) / n
	for start := 0; start < len(points); start += per {
		run := points[start:min(start+per, len(points))]
		lo, hi := 0, 0
		for i, p := range run {
			if p.RSS < run[lo].RSS {
				lo = i
			}
			if p.RSS > run[hi].RSS {
				hi = i
			}
		}
		out = append(out, run[min(lo, hi)])
		if lo != hi {
			out = append(out, run[max(lo, hi)])
		}
	}
	return out
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that cuts 0..max into
// about n intervals.
func niceStep(max float64, n int) float64 {
	if max <= 0 || n < 1 {
		return 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch norm := raw / mag; {
	case norm <= 1:
		return mag
	case norm <= 2:
		return 2 * mag
	case norm <= 5:
		return 5 * mag
	}
	return 10 * mag
}

func axisNumber(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
