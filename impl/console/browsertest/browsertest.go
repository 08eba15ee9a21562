// Package browsertest drives the web console in a real browser for tests:
// Debian's headless Chromium through github.com/chromedp/chromedp, with
// screenshots saved as test artifacts. It is test infrastructure (it
// starts a browser process and writes files), used by the broker's and
// the cloud's console tests.
package browsertest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser is a headless Chromium for one test.
type Browser struct {
	t   testing.TB
	Ctx context.Context
	dir string
}

// chromium finds the browser: $SKYBRIDGE_CHROMIUM, else chromium or
// chromium-browser on the PATH.
func chromium() string {
	if p := os.Getenv("SKYBRIDGE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Option adjusts the browser Start starts.
type Option func(*[]chromedp.ExecAllocatorOption)

// TrustCert makes the browser accept TLS servers whose chain holds cert
// (DER), such as skybridge-cloud's own CA, and no other certificate it
// could not verify: Chromium ignores certificate errors for the public
// keys listed in --ignore-certificate-errors-spki-list.
func TrustCert(der []byte) Option {
	return func(opts *[]chromedp.ExecAllocatorOption) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			panic("browsertest: TrustCert: " + err.Error()) // a test's own certificate
		}
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		*opts = append(*opts, chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(sum[:])))
	}
}

// Start starts a headless browser for t, stopped when t ends. Without a
// browser on the machine the test is skipped, unless
// SKYBRIDGE_REQUIRE_BROWSER is set (CI sets it: there a missing browser
// is a failure, not a skip).
func Start(t testing.TB, timeout time.Duration, options ...Option) *Browser {
	t.Helper()
	path := chromium()
	if path == "" {
		if os.Getenv("SKYBRIDGE_REQUIRE_BROWSER") != "" {
			t.Fatal("no chromium on this machine (apt-get install chromium), and SKYBRIDGE_REQUIRE_BROWSER is set")
		}
		t.Skip("no chromium on this machine: apt-get install chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in CI containers
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	for _, o := range options {
		o(&opts)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return &Browser{t: t, Ctx: ctx, dir: artifacts(t)}
}

// artifacts is where screenshots go: $SKYBRIDGE_ARTIFACTS/<test name>, or
// a temporary directory that the test removes.
func artifacts(t testing.TB) string {
	base := os.Getenv("SKYBRIDGE_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, filepath.FromSlash(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Do runs actions, failing the test with what was being done.
func (b *Browser) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.Ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Text returns the text of the element sel selects (once visible).
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.Ctx, chromedp.Text(sel))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// WaitFor waits until the JavaScript expression is true in the page (for
// at most timeout), failing the test with what it waited for.
func (b *Browser) WaitFor(what, expr string, timeout time.Duration) {
	b.t.Helper()
	if _, err := chromedp.Run(b.Ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		b.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// Eval returns the value of a JavaScript expression that yields a boolean.
func (b *Browser) Eval(expr string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// Screenshot saves the page as name.png among the test's artifacts.
func (b *Browser) Screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

// SetValue sets the value of the input the CSS selector selects (replacing
// what it holds) and tells the page it changed.
func (b *Browser) SetValue(css, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false;
		e.value = %q; e.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, css, value)
	ok, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](js))
	if err != nil || !ok {
		b.t.Fatalf("setting %s: %v (found: %v)", css, err, ok)
	}
}
