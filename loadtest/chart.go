package loadtest

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	chartWidth  = 900
	panelHeight = 150
	panelGap    = 40
	marginLeft  = 70
	marginRight = 20
	marginTop   = 40
)

// panel is one plotted series.
type panel struct {
	title string
	unit  string
	color string
	value func(Sample) float64
	max   float64 // 0: from the data
}

// WriteSVG draws the run's timeline as an SVG chart: participants and
// subscriptions, the busiest media node's CPU, and packet loss over time.
func WriteSVG(w io.Writer, res *Result) error {
	panels := []panel{
		{title: "participants", unit: "", color: "#1f77b4", value: func(s Sample) float64 { return float64(s.Participants) }},
		{title: "subscriptions", unit: "", color: "#2ca02c", value: func(s Sample) float64 { return float64(s.Subscribers) }},
		{title: "media node CPU (busiest)", unit: "%", color: "#d62728", value: func(s Sample) float64 { return s.NodeCPUPercent }, max: 100},
		{title: "packet loss", unit: "%", color: "#9467bd", value: func(s Sample) float64 { return 100 * s.LossRatio }},
	}
	height := marginTop + len(panels)*(panelHeight+panelGap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := fmt.Sprintf("chorus loadtest: %d sessions, %s, %d publishers, %d subscriptions",
		res.Sessions, res.Params.Video, res.Publishers, res.Subscribers)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s</text>`+"\n", marginLeft, html.EscapeString(title))
	tMax := 1.0
	if n := len(res.Timeline); n > 0 {
		tMax = max(tMax, res.Timeline[n-1].AtS)
	}
	plotW := float64(chartWidth - marginLeft - marginRight)
	for i, p := range panels {
		top := float64(marginTop + i*(panelHeight+panelGap))
		vMax := p.max
		for _, s := range res.Timeline {
			vMax = max(vMax, p.value(s))
		}
		if vMax == 0 {
			vMax = 1
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">%s (max %.4g%s)</text>`+"\n", marginLeft, top-6, html.EscapeString(p.title), vMax, p.unit)
		fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", marginLeft, top, plotW, panelHeight)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.4g%s</text>`+"\n", marginLeft-6, top+10, vMax, p.unit)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">0</text>`+"\n", marginLeft-6, top+panelHeight)
		var pts []string
		for _, s := range res.Timeline {
			x := float64(marginLeft) + plotW*s.AtS/tMax
			y := top + panelHeight - float64(panelHeight)*p.value(s)/vMax
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", p.color, strings.Join(pts, " "))
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">time (s), 0 to %.0f</text>`+"\n", chartWidth-marginRight, height-8, tMax)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
