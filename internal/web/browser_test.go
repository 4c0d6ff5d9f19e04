package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/mcpi"
)

// chromium returns the path of a Chromium, or skips the test (fails under CI).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium, and CI is set: the browser test must run (apt-get install chromium)")
	}
	t.Skip("no chromium: skipping the browser test (apt-get install chromium)")
	return ""
}

// artifacts returns the folder for test artifacts: $PICLUSTER_ARTIFACTS, or
// a folder in the system's temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("PICLUSTER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "picluster-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// bigJob is a job whose N passes 2⁶⁴ and that has anonymous batches.
type bigJob struct{ *collector.Collector }

func (b bigJob) Snapshot() *collector.Snapshot {
	s := *b.Collector.Snapshot()
	var big mcpi.Count
	_ = big.UnmarshalJSON([]byte("1180591620717411303424")) // 2⁷⁰
	s.N, s.AnonymousN, s.Anonymous = s.N.Add(big), big, 3
	return &s
}

func (b bigJob) History() []collector.Point {
	h := b.Collector.History()
	for i := range h {
		h[i].N += 1 << 70
	}
	return h
}

// TestDashboardInChromium loads the dashboard in a real headless Chromium:
// no console error, the charts receive points, the numbers on the page are
// those of /api/state, and a screenshot is saved as a test artifact.
func TestDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	exe := chromium(t)
	c := bigJob{job(t)}
	srv := httptest.NewServer(Handler(c, quiet))
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	var problems []string
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, fmt.Sprintf("exception: %s at %s:%d", ev.ExceptionDetails.Text, ev.ExceptionDetails.URL, ev.ExceptionDetails.LineNumber))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				problems = append(problems, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.Poll[chromedp.Void](`window.picluster && window.picluster.points() > 0 && document.getElementById("n").dataset.value`,
			chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Sleep(600*time.Millisecond), // a couple more events, and the charts drawn
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	points, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.picluster.points()`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := chromedp.Run(ctx, chromedp.AttributeValue("#n", "data-value"))
	if err != nil {
		t.Fatal(err)
	}
	pi, err := chromedp.Run(ctx, chromedp.AttributeValue("#pi", "data-value"))
	if err != nil {
		t.Fatal(err)
	}
	rejected, err := chromedp.Run(ctx, chromedp.Text("#rejected"))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 gives a PNG
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifacts(t), "dashboard.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)

	_, body := get(t, srv.URL+"/api/state")
	var s collector.Summary
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if n.Value != s.N.String() || pi.Value != fmt.Sprint(float64(s.Pi)) || rejected != fmt.Sprint(s.Rejected) {
		t.Errorf("page shows n %s, π %s, rejected %s; /api/state has %s, %v, %d", n.Value, pi.Value, rejected, s.N, float64(s.Pi), s.Rejected)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.querySelector("#pi .certain").textContent, document.querySelector("#pi .uncertain").textContent]`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{s.PiDigits.Certain, s.PiDigits.More}; fmt.Sprint(shown) != fmt.Sprint(want) {
		t.Errorf("the page shows the digits %q, /api/state has %q", shown, want)
	}
	// The shared digits table, through the page's renderer.
	table, err := os.ReadFile("../../collector/testdata/digits.json")
	if err != nil {
		t.Fatal(err)
	}
	lit, _ := json.Marshal(string(table)) // a JSON string is a JavaScript string literal
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](`JSON.parse(`+string(lit)+`).map((row) => {
		const el = document.createElement("span");
		window.picluster.renderPi(el, {certain: row.certain, more: row.more});
		return [el.querySelector(".certain").textContent, el.querySelector(".uncertain").textContent];
	})`))
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct{ Why, Certain, More string }
	if err := json.Unmarshal(table, &rows); err != nil {
		t.Fatal(err)
	}
	for i, row := range rows {
		want := []string{row.Certain, row.More}
		if row.Certain == "" && row.More == "" {
			want[1] = "—"
		}
		if i >= len(got) || fmt.Sprint(got[i]) != fmt.Sprint(want) {
			t.Errorf("%s: the page renders %q, want %q", row.Why, got[min(i, len(got)-1)], want)
		}
	}
	// N past 2⁶⁴, exact on the page; the anonymous batches counted and listed.
	if n.Value != "1180591620717451303424" { // 2⁷⁰ + the job's own 4·10⁷
		t.Errorf("the page shows N %s, want 2⁷⁰ + 4·10⁷ exactly", n.Value)
	}
	workers, err := chromedp.Run(ctx, chromedp.Text("#workers"))
	if err != nil {
		t.Fatal(err)
	}
	anonRow, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#workers-table tbody tr")].map((tr) => tr.textContent).filter((t) => t.startsWith("(anonymous)"))`))
	if err != nil {
		t.Fatal(err)
	}
	if rows, err := chromedp.Run(ctx, chromedp.Text("#rows")); err != nil || rows != "workers 1–2 of 2" {
		t.Errorf("the pager shows %q (%v), want %q", rows, err, "workers 1–2 of 2")
	}
	if !strings.HasSuffix(workers, "+ 3 anonymous batches") || len(anonRow) != 1 || !strings.Contains(anonRow[0], "3 batches") {
		t.Errorf("the page shows workers %q and anonymous rows %q, want the 3 anonymous batches in both", workers, anonRow)
	}
	// The counts are read as strings, and only the counts: not a key's
	// name inside a string.
	parsed, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
		const s = window.picluster.parseState('{"id":"x\\"n\\":1","n":36893488147419103233,"w":[{"hits":9007199254740993}],"anonymous_n":0,"nn":12}');
		return [s.id, s.n, s.w[0].hits, s.anonymous_n, typeof s.nn];
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`x"n":1`, "36893488147419103233", "9007199254740993", "0", "number"}; fmt.Sprint(parsed) != fmt.Sprint(want) {
		t.Errorf("parseState gives %q, want %q", parsed, want)
	}
	if points != len(c.History()) {
		t.Errorf("the charts hold %d points, the history has %d", points, len(c.History()))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(problems, "\n"))
	}
}
