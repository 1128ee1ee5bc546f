package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// The page is html/template over one embedded file: no network is needed to
// view it (inline CSS, inline SVG, a few lines of inline script to sort the
// table), and every value is escaped by the template engine, so a team id or
// model id cannot inject markup.
//
//go:embed page.html.tmpl
var pageTemplate string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"money": money,
	"exact": func(d decimal.Decimal) string { return d.String() },
	"num":   num,
	"bars":  bars,
	"daily": daily,
	// csvHref links a CSV where the store keeps it. The store location is
	// the operator's own flag and the key is meter's layout, so the link is
	// trusted as a URL (file:// and s3:// are schemes html/template would
	// otherwise blank out).
	"csvHref": func(r *Report, key string) template.URL {
		return template.URL(strings.TrimSuffix(r.StoreURI, "/") + "/" + key)
	},
	"pct":      func(f float64) string { return strconv.FormatFloat(100*f, 'f', 0, 64) + "%" },
	"barWidth": func(f float64) string { return strconv.FormatFloat(120*f, 'f', 0, 64) },
	"over": func(b Budget) bool {
		return b.Budget.IsPositive() && b.Spent.GreaterThan(b.Budget)
	},
}).Parse(pageTemplate))

// Write renders the page.
func (r *Report) Write(w io.Writer) error {
	var buf bytes.Buffer
	if err := page.Execute(&buf, r); err != nil {
		return fmt.Errorf("rendering the report: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// money shows a USD amount to the cent with thousands separators; the exact
// value goes beside it in a data-value attribute.
func money(d decimal.Decimal) string {
	s := d.StringFixed(2)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	out := "$" + groupDigits(intPart) + "." + frac
	if neg {
		out = "-" + out
	}
	return out
}

func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + groupDigits(s[1:])
	}
	return groupDigits(s)
}

func groupDigits(digits string) string {
	if len(digits) <= 3 {
		return digits
	}
	var b strings.Builder
	pre := len(digits) % 3
	if pre > 0 {
		b.WriteString(digits[:pre])
	}
	for i := pre; i < len(digits); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(digits[i : i+3])
	}
	return b.String()
}

// Bar is one horizontal bar of a chart: its label, exact value, and
// geometry in the SVG's coordinates.
type Bar struct {
	Label string
	Value decimal.Decimal
	Y     int
	Width float64
}

// BarChart is a horizontal bar chart of lines' costs.
type BarChart struct {
	Bars   []Bar
	Height int
}

const barHeight, barGap, barMax = 18, 6, 560.0

// bars lays out one bar per line, scaled to the dearest (floats are layout
// only; every value shown is the exact decimal).
func bars(lines []Line) BarChart {
	var c BarChart
	max := decimal.Zero
	for _, l := range lines {
		max = decimal.Max(max, l.Cost)
	}
	for i, l := range lines {
		b := Bar{Label: l.Key, Value: l.Cost, Y: i * (barHeight + barGap)}
		if max.IsPositive() {
			f, _ := l.Cost.Div(max).Float64()
			b.Width = f * barMax
		}
		c.Bars = append(c.Bars, b)
	}
	c.Height = len(lines)*(barHeight+barGap) + barGap
	return c
}

// Segment is one team's part of one day's bar.
type Segment struct {
	Team   string
	Value  decimal.Decimal
	Y, H   float64
	Colour string
}

// DayBar is one day's stacked bar.
type DayBar struct {
	Day      string
	Value    decimal.Decimal
	X        float64
	Segments []Segment
}

// Series is one team of the daily chart, with its colour.
type Series struct {
	Team   string
	Colour string
}

// DailyChart is the stacked daily cost per team.
type DailyChart struct {
	Days   []DayBar
	Series []Series
	Width  float64
	BarW   float64
}

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

const dailyHeight = 220.0

// daily lays out one stacked bar per day with a chargeback, one segment per
// team that spent that day, teams in the order of their total cost.
func daily(r *Report) DailyChart {
	c := DailyChart{BarW: 14}
	if n := len(r.Days); n > 40 {
		c.BarW = max(2, 600/float64(n))
	}
	colour := map[string]string{}
	for i, t := range r.Teams {
		colour[t.Key] = palette[i%len(palette)]
		c.Series = append(c.Series, Series{Team: t.Key, Colour: colour[t.Key]})
	}
	max := decimal.Zero
	for _, d := range r.Days {
		max = decimal.Max(max, d.Cost)
	}
	for i, d := range r.Days {
		bar := DayBar{Day: d.Day, Value: d.Cost, X: float64(i) * (c.BarW + 2)}
		y := dailyHeight
		for _, t := range r.Teams {
			v, ok := d.ByTeam[t.Key]
			if !ok {
				continue
			}
			h := 0.0
			if max.IsPositive() {
				f, _ := v.Div(max).Float64()
				h = f * dailyHeight
			}
			y -= h
			bar.Segments = append(bar.Segments, Segment{Team: t.Key, Value: v, Y: y, H: h, Colour: colour[t.Key]})
		}
		c.Days = append(c.Days, bar)
	}
	c.Width = float64(len(r.Days)) * (c.BarW + 2)
	return c
}
