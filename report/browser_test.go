package report_test

// TestPageInABrowser loads a generated month's page in headless Chromium
// (Debian's chromium, which test.sh installs), driven by chromedp, and checks
// what a reader sees against what the generator wrote into the chargeback
// CSVs. The page is opened from a file with the network refused: it must need
// none. With -screenshot FILE it also writes a full-page screenshot there
// (the README's is made that way; see BENCHMARKS.md).

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/report"
)

var screenshot = flag.String("screenshot", "", "write a full-page screenshot of the test report to this PNG file")

type pageFacts struct {
	Total      string            `json:"total"`
	TeamBars   map[string]string `json:"teamBars"`
	TeamRows   map[string]string `json:"teamRows"`
	ModelBars  int               `json:"modelBars"`
	DayBars    int               `json:"dayBars"`
	DaySums    map[string]string `json:"daySums"`
	Series     []string          `json:"series"`
	Segments   int               `json:"segments"`
	Revised    []string          `json:"revised"`
	Moved      []string          `json:"moved"`
	Unmetered  []string          `json:"unmetered"`
	FirstCost  string            `json:"firstCost"`
	SortedCost string            `json:"sortedCost"`
	SortedDesc string            `json:"sortedDesc"`
}

const factsJS = `(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const byKey = (sel, attr) => Object.fromEntries(q(sel).map(e => [e.getAttribute(attr), e.getAttribute("data-value")]));
  const f = {
    total: document.querySelector('[data-testid="total"]').getAttribute("data-value"),
    teamBars: byKey('[data-testid="chart-team"] rect.bar', "data-key"),
    teamRows: Object.fromEntries(q('[data-testid="table-team"] tbody tr').map(r => [r.cells[0].textContent, r.cells[4].getAttribute("data-value")])),
    modelBars: q('[data-testid="chart-model"] rect.bar').length,
    dayBars: q('[data-testid="chart-daily"] g.day').length,
    daySums: byKey('[data-testid="chart-daily"] g.day', "data-day"),
    series: q('[data-testid="legend-daily"] li.series').map(e => e.getAttribute("data-team")),
    segments: q('[data-testid="chart-daily"] rect.seg').length,
    revised: q('[data-testid="table-days"] tr').filter(r => r.querySelector('[data-revised]')).map(r => r.getAttribute("data-day")),
    moved: q('[data-moved]').map(e => e.getAttribute("data-moved")),
    unmetered: q('[data-unmetered]').map(e => e.getAttribute("data-unmetered")),
  };
  const cost = () => document.querySelector('#team-model tbody tr').cells[10].getAttribute("data-value");
  f.firstCost = cost();
  const head = q('#team-model th.sortable')[10];
  head.click();
  f.sortedCost = cost();
  head.click();
  f.sortedDesc = cost();
  return f;
})()`

func TestPageInABrowser(t *testing.T) {
	chromium := testenv.Chromium(t)
	st, truth := month(t)
	r, err := report.Build(context.Background(), report.Config{Store: st, From: "2026-11-01", To: "2026-11-30", StoreURI: "file:///srv/meter/store"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(chromium), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900)}
	for _, fl := range testenv.ChromiumFlags {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(fl, "--"), "=")
		if hasValue {
			opts = append(opts, chromedp.Flag(name, value))
		} else {
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	var mu sync.Mutex
	var problems, requests []string
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				problems = append(problems, "console "+string(e.Type))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		}
	}))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	if err := chromedp.Do(ctx); err != nil { // starts the browser and attaches the tab
		t.Fatal(err)
	}
	// Offline: the page must show everything without the network.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+path), chromedp.WaitVisible(chromedp.CSS(`[data-testid="total"]`))); err != nil {
		t.Fatal(err)
	}
	facts, err := chromedp.Run(ctx, chromedp.Evaluate[pageFacts](factsJS))
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged: %v", problems)
	}
	for _, u := range requests {
		if !strings.HasPrefix(u, "file://") {
			t.Errorf("the page asked the network for %s", u)
		}
	}
	if facts.Total != truth.Total.String() {
		t.Errorf("total shown %s, the CSVs add up to %s", facts.Total, truth.Total)
	}
	eq := func(a string, b decimal.Decimal) bool {
		d, err := decimal.NewFromString(a)
		return err == nil && d.Equal(b)
	}
	if len(facts.TeamBars) != len(truth.ByTeam) || len(facts.TeamRows) != len(truth.ByTeam) {
		t.Errorf("%d team bars and %d team rows for %d teams", len(facts.TeamBars), len(facts.TeamRows), len(truth.ByTeam))
	}
	for team, want := range truth.ByTeam {
		if !eq(facts.TeamBars[team], want) || !eq(facts.TeamRows[team], want) {
			t.Errorf("team %s: bar %s, row %s; the CSVs say %s", team, facts.TeamBars[team], facts.TeamRows[team], want)
		}
	}
	if facts.ModelBars != len(truth.ByModel) {
		t.Errorf("%d model bars for %d models", facts.ModelBars, len(truth.ByModel))
	}
	if facts.DayBars != truth.DaysWithData || len(facts.Series) != len(truth.Teams) || facts.Segments != truth.DaysWithData*len(truth.Teams) {
		t.Errorf("daily chart: %d bars, %d series, %d segments; want %d, %d, %d", facts.DayBars, len(facts.Series), facts.Segments,
			truth.DaysWithData, len(truth.Teams), truth.DaysWithData*len(truth.Teams))
	}
	sum := decimal.Zero
	for _, v := range facts.DaySums {
		d, _ := decimal.NewFromString(v)
		sum = sum.Add(d)
	}
	if !sum.Equal(truth.Total) {
		t.Errorf("the daily bars add up to %s, the CSVs to %s", sum, truth.Total)
	}
	if len(facts.Revised) != 1 || facts.Revised[0] != "2026-11-10" || len(facts.Moved) != 1 || facts.Moved[0] != "12.5" {
		t.Errorf("revised days %v moved %v, want 2026-11-10 with 12.5", facts.Revised, facts.Moved)
	}
	if len(facts.Unmetered) != 1 || facts.Unmetered[0] != "2" {
		t.Errorf("unmetered %v, want one day with 2", facts.Unmetered)
	}
	// A click on the cost heading sorts the team x model table ascending, a
	// second one descending.
	cheapest, dearest := r.TeamModel[0].Cost, r.TeamModel[0].Cost
	for _, l := range r.TeamModel {
		cheapest, dearest = decimal.Min(cheapest, l.Cost), decimal.Max(dearest, l.Cost)
	}
	if !eq(facts.SortedCost, cheapest) || !eq(facts.SortedDesc, dearest) || cheapest.Equal(dearest) {
		t.Errorf("sorting by cost: first row %s, then %s; want %s, then %s", facts.SortedCost, facts.SortedDesc, cheapest, dearest)
	}
	out := filepath.Join(t.TempDir(), "report.png")
	if *screenshot != "" {
		out = *screenshot
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(png) < 10_000 {
		t.Errorf("the screenshot has %d bytes", len(png))
	}
}
