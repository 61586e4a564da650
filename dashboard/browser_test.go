package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/certops/certops/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// tab is a page of a headless chromium, with what its console said.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// newTab starts Debian's chromium headless (with JavaScript unless noJS)
// for the test, or skips the test when chromium is not installed.
func newTab(t *testing.T, noJS bool) *tab {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium): the dashboard's browser tests need it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("lang", "en-US"))
	if noJS {
		opts = append(opts, chromedp.Flag("blink-settings", "scriptEnabled=false"))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser, with no timeout
		t.Fatalf("start chromium: %v", err)
	}
	tb := &tab{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, m)
			tb.mu.Unlock()
		}
	}()
	return tb
}

// timeout bounds each browser step.
const timeout = 30 * time.Second

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// open navigates to url and waits for the page to load.
func (tb *tab) open(url string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(url))
}

// follow clicks the element sel selects and waits for the page it leads to.
func (tb *tab) follow(sel string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		tb.t.Fatalf("follow %s: %v", sel, err)
	}
}

// eval returns the value of a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is the trimmed text of the first element sel selects ("" when none).
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return strings.Join(strings.Fields(eval[string](tb, `(document.querySelector(`+quoteJS(sel)+`) || {innerText: ""}).innerText`)), " ")
}

// count is how many elements sel selects.
func (tb *tab) count(sel string) int {
	tb.t.Helper()
	return eval[int](tb, `document.querySelectorAll(`+quoteJS(sel)+`).length`)
}

// location is the page's URL.
func (tb *tab) location() string {
	tb.t.Helper()
	return eval[string](tb, `location.href`)
}

func quoteJS(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// navTiming is the page's navigation timing, in milliseconds from the
// start of the navigation.
type navTiming struct {
	ResponseStart            float64 `json:"responseStart"`
	ResponseEnd              float64 `json:"responseEnd"`
	DOMContentLoadedEventEnd float64 `json:"domContentLoadedEventEnd"`
	LoadEventEnd             float64 `json:"loadEventEnd"`
}

func (tb *tab) timing() navTiming {
	tb.t.Helper()
	return eval[navTiming](tb, `performance.getEntriesByType("navigation")[0].toJSON()`)
}

// problems are the console's errors and warnings so far: a CSP violation
// is reported there ("Refused to load ..."), as is a failed request or a
// script error.
func (tb *tab) problems() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []string
	for _, m := range tb.console {
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.Type == chromedp.ConsoleException {
			out = append(out, string(m.Type)+": "+m.Text+" ("+m.URL+")")
		}
	}
	return out
}

// waitConsole waits until the console has said something matching want.
func (tb *tab) waitConsole(want string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range tb.problems() {
			if strings.Contains(p, want) {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// screenshot saves the page (the whole page when full, else what the
// window shows) as name.png among the test's artifacts
// ($CERTOPS_TEST_ARTIFACTS, else a temporary directory) and logs where.
func (tb *tab) screenshot(name string, full bool) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100)
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("CERTOPS_TEST_ARTIFACTS")
	if dir == "" {
		dir = tb.t.TempDir()
	} else {
		dir = filepath.Join(dir, "dashboard")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

func httptestTLS(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}
