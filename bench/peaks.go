package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
)

// The summary chart: each scenario's peak RSS per process as bars, every scenario on
// one y-axis, so that a process that holds hundreds of MiB (the seed's server) and
// one that holds tens (bodystream) look as different as they are. The client (the
// bench itself) is left out: it is not part of the stack.

const (
	peaksBarWidth  = 15
	peaksGroupGap  = 22
	peaksLeft      = 64
	peaksRight     = 150 // the last scenario's title runs to the right
	peaksTop       = 70
	peaksPlot      = 300
	peaksLabelRoom = 120 // scenario titles, slanted under the axis
	peaksMinWidth  = 760
)

// writePeaksSVG draws the summary chart of results: with rounds (-repeat), each
// scenario's largest peak over its rounds.
func writePeaksSVG(w io.Writer, title string, results []*Result) error {
	rounds := 1
	for _, r := range results {
		rounds = max(rounds, r.Round)
	}
	if rounds > 1 {
		results = aggregate(results)
	}
	seen := map[string]bool{}
	var top int64
	for _, r := range results {
		for _, p := range r.Processes {
			if p.Name != clientProcess {
				seen[p.Name] = true
				top = max(top, p.PeakRSS)
			}
		}
	}
	procs := orderedNames(seen)
	group := len(procs)*peaksBarWidth + peaksGroupGap
	width := max(peaksMinWidth, peaksLeft+len(results)*group+peaksRight)
	height := peaksTop + peaksPlot + peaksLabelRoom
	maxMiB := float64(top) / (1 << 20)
	step := niceStep(maxMiB, 6)
	yMax := math.Max(step, math.Ceil(maxMiB/step)*step)
	py := func(m float64) float64 { return peaksTop + peaksPlot - m/yMax*peaksPlot }

	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(bw, `<text x="12" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", esc(title))
	x := 12
	for _, name := range procs {
		fmt.Fprintf(bw, `<rect x="%d" y="36" width="14" height="12" fill="%s"/><text x="%d" y="46">%s</text>`+"\n", x, processColor(name), x+19, esc(name))
		x += 19 + 7*len(name) + 24
	}
	fmt.Fprintf(bw, `<text x="%d" y="46" fill="#555555">peak RSS during the load, MiB; one scale for all</text>`+"\n", x)

	right := float64(peaksLeft + len(results)*group)
	for m := 0.0; m <= yMax+step/2; m += step {
		y := py(m)
		fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#cccccc" stroke-width="0.5"/>`, peaksLeft, y, right, y)
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", peaksLeft-4, y+3.5, esc(axisNumber(m)+" MiB"))
	}
	for i, r := range results {
		gx := peaksLeft + peaksGroupGap/2 + i*group
		fmt.Fprintf(bw, `<g class="scenario" data-scenario="%s">`+"\n", esc(r.Title))
		for j, name := range procs {
			p, ok := r.process(name)
			if !ok || p.PeakRSS == 0 {
				continue
			}
			m := float64(p.PeakRSS) / (1 << 20)
			bx := gx + j*peaksBarWidth
			fmt.Fprintf(bw, `<rect class="bar" data-process="%s" data-mib="%.1f" x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"/>`+"\n",
				esc(name), m, bx, py(m), peaksBarWidth-2, py(0)-py(m), processColor(name))
			// The figure above its bar, upright: small bars are the point.
			fmt.Fprintf(bw, `<text x="%d" y="%.1f" font-size="9" text-anchor="start" transform="rotate(-90 %d %.1f)">%s</text>`+"\n",
				bx+10, py(m)-3, bx+10, py(m)-3, esc(fmt.Sprintf("%.0f", m)))
		}
		label := r.Title
		if r.Errors > 0 {
			label += fmt.Sprintf(" (%d FAILED)", r.Errors)
		}
		lx, ly := gx+len(procs)*peaksBarWidth/2, peaksTop+peaksPlot+12
		fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="start" transform="rotate(35 %d %d)"%s>%s</text>`+"\n",
			lx, ly, lx, ly, failFill(r), esc(label))
		fmt.Fprintln(bw, "</g>")
	}
	fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888888"/>`+"\n", peaksLeft, py(0), right, py(0))
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func failFill(r *Result) string {
	if r.Errors > 0 {
		return ` fill="#d62728"`
	}
	return ""
}
