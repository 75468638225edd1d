package ui

import (
	"fmt"
	"math"
	"time"
)

// Charts are drawn on the server as SVG: no script, no inline style (the
// CSP allows neither), and a <title> on every bar for its exact figures.
// Colours come from the stylesheet through class names.

type svgRect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type svgTick struct {
	X, Y  float64
	Label string
}

// seriesChart is a stacked bar chart of requests per bucket: succeeded,
// denied and failed.
type seriesChart struct {
	W, H, Left, Bottom, Top float64
	Bars                    []svgRect
	YTicks, XTicks          []svgTick
	Empty                   bool
	Label                   string
}

type seriesPoint struct {
	Start                    time.Time
	Requests, Denied, Errors int64
}

func newSeriesChart(points []seriesPoint, bucket time.Duration) *seriesChart {
	c := &seriesChart{W: 960, H: 220, Left: 48, Bottom: 24, Top: 8}
	var peak int64
	for _, p := range points {
		peak = max(peak, p.Requests)
	}
	c.Empty = peak == 0
	ymax := niceCeil(float64(max(peak, 1)))
	plotW, plotH := c.W-c.Left-8, c.H-c.Bottom-c.Top
	n := float64(max(len(points), 1))
	step := plotW / n
	gap := math.Min(2, step*0.2)
	y := func(v float64) float64 { return c.Top + plotH - v/ymax*plotH }
	for i, p := range points {
		x := c.Left + float64(i)*step + gap/2
		ok := max(p.Requests-p.Denied-p.Errors, 0)
		base := 0.0
		title := fmt.Sprintf("%s: %d requests, %d denied, %d failed", p.Start.UTC().Format("Jan 2 15:04:05"), p.Requests, p.Denied, p.Errors)
		for _, part := range []struct {
			v     int64
			class string
		}{{ok, "bar-ok"}, {p.Denied, "bar-deny"}, {p.Errors, "bar-err"}} {
			if part.v == 0 {
				continue
			}
			top := y(base + float64(part.v))
			c.Bars = append(c.Bars, svgRect{X: x, Y: top, W: math.Max(step-gap, 1), H: y(base) - top, Class: part.class, Title: title})
			base += float64(part.v)
		}
	}
	for _, f := range []float64{0, 0.5, 1} {
		c.YTicks = append(c.YTicks, svgTick{X: c.Left - 6, Y: y(ymax * f), Label: compact(ymax * f)})
	}
	// About six time labels.
	every := max(len(points)/6, 1)
	layout := "15:04"
	if bucket >= 6*time.Hour {
		layout = "Jan 2 15:04"
	} else if bucket < time.Minute {
		layout = "15:04:05"
	}
	for i := 0; i < len(points); i += every {
		if x := c.Left + float64(i)*step + step/2; x > c.W-30 {
			break // a label at the right edge would be cut
		}
		c.XTicks = append(c.XTicks, svgTick{X: c.Left + float64(i)*step + step/2, Y: c.H - 6, Label: points[i].Start.UTC().Format(layout)})
	}
	return c
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func compact(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	}
	return trimZero(fmt.Sprintf("%.1f", v))
}

func trimZero(s string) string {
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		return s[:len(s)-2]
	}
	return s
}

// barRow is one row of a horizontal bar list (top agents, proxies,
// denial reasons): the bar's width is in percent of the largest.
type barRow struct {
	Label string
	Value int64
	Width float64
	Link  string
	Note  string
}

func bars(rows []barRow) []barRow {
	var peak int64
	for _, r := range rows {
		peak = max(peak, r.Value)
	}
	for i := range rows {
		if peak > 0 {
			rows[i].Width = math.Max(float64(rows[i].Value)/float64(peak)*100, 0.5)
		}
	}
	return rows
}
