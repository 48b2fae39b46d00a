package gateway_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A small client of the Chrome DevTools Protocol, enough to load a page in
// Debian's headless Chromium, read its DOM with Runtime.evaluate and take a
// screenshot. It speaks JSON over gorilla/websocket (already in the module
// graph through mochi) instead of pulling in chromedp and its generated
// protocol packages for four methods.

// browser is a headless Chromium process and its DevTools connection.
type browser struct {
	t    *testing.T
	cmd  *exec.Cmd
	conn *websocket.Conn

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpReply
	done    chan struct{} // closed when the connection's reader ends
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var devtoolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// startChromium starts `chromium --headless --no-sandbox` with a fresh profile
// in a temp dir and connects to it. The process group is killed at cleanup.
func startChromium(t *testing.T) *browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	profile := t.TempDir()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--user-data-dir="+profile,
		"--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
		"--disable-background-networking", "--disable-sync", "--metrics-recording-only", "--mute-audio",
		"--hide-scrollbars", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, cmd: cmd, pending: map[int64]chan cdpReply{}, done: make(chan struct{})}
	t.Cleanup(b.close)
	found := make(chan string, 1)
	var logMu sync.Mutex
	var log []string
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			logMu.Lock()
			log = append(log, s.Text())
			logMu.Unlock()
			if m := devtoolsURL.FindStringSubmatch(s.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var ws string
	select {
	case ws = <-found:
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium did not announce its DevTools address; stderr:\n%s", log)
	}
	b.conn, _, err = websocket.DefaultDialer.Dial(ws, nil)
	if err != nil {
		t.Fatalf("connect to DevTools %s: %v", ws, err)
	}
	go b.read()
	return b
}

// read dispatches replies to their callers; events are ignored.
func (b *browser) read() {
	defer close(b.done)
	for {
		var msg struct {
			ID int64 `json:"id"`
			cdpReply
		}
		if err := b.conn.ReadJSON(&msg); err != nil {
			return
		}
		if msg.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.pending[msg.ID]
		delete(b.pending, msg.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- msg.cdpReply
		}
	}
}

// call sends method (to the page session, or the browser when session is "")
// and decodes its result into out (if not nil).
func (b *browser) call(session, method string, params, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	req := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		req["sessionId"] = session
	}
	err := b.conn.WriteJSON(req)
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-b.done:
		return fmt.Errorf("%s: DevTools connection closed", method)
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%s: no reply in 20s", method)
	}
}

// page is one tab.
type page struct {
	b       *browser
	session string
}

// newPage opens a tab with a phone-sized viewport (412x915 CSS pixels, mobile).
func (b *browser) newPage() *page {
	b.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		b.t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		b.t.Fatal(err)
	}
	p := &page{b: b, session: att.SessionID}
	p.must("Page.enable", map[string]any{}, nil)
	p.must("Emulation.setDeviceMetricsOverride", map[string]any{"width": 412, "height": 915, "deviceScaleFactor": 1, "mobile": true}, nil)
	return p
}

func (p *page) must(method string, params, out any) {
	p.b.t.Helper()
	if err := p.b.call(p.session, method, params, out); err != nil {
		p.b.t.Fatal(err)
	}
}

func (p *page) navigate(url string) {
	p.b.t.Helper()
	var r struct {
		ErrorText string `json:"errorText"`
	}
	p.must("Page.navigate", map[string]any{"url": url}, &r)
	if r.ErrorText != "" {
		p.b.t.Fatalf("navigate %s: %s", url, r.ErrorText)
	}
}

// eval evaluates a JavaScript expression and returns its value as JSON.
func (p *page) eval(expr string) json.RawMessage {
	p.b.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	p.must("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	if r.Exception != nil {
		p.b.t.Fatalf("evaluate %s: %s", expr, r.Exception.Text)
	}
	return r.Result.Value
}

// text returns the textContent of the first element matching a CSS selector
// ("" if none).
func (p *page) text(selector string) string {
	p.b.t.Helper()
	sel, _ := json.Marshal(selector)
	var s string
	_ = json.Unmarshal(p.eval(fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, sel)), &s)
	return s
}

// await polls cond every 50ms until it holds, for at most 15s: the DOM
// changes when the page's own poll (every 2s) brings news.
func (p *page) await(what string, cond func() bool) {
	p.b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			p.b.t.Fatalf("page: timed out waiting for %s; body text:\n%s", what, p.text("body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot returns a PNG of the whole page.
func (p *page) screenshot() []byte {
	p.b.t.Helper()
	var m struct {
		Content struct {
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	p.must("Page.getLayoutMetrics", map[string]any{}, &m)
	h := max(int(m.Content.Height), 915)
	p.must("Emulation.setDeviceMetricsOverride", map[string]any{"width": 412, "height": h, "deviceScaleFactor": 1, "mobile": true}, nil)
	var r struct {
		Data string `json:"data"`
	}
	p.must("Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.b.t.Fatal(err)
	}
	return png
}

// close asks Chromium to quit, then kills its process group if it lingers.
func (b *browser) close() {
	if b.conn != nil {
		_ = b.call("", "Browser.close", map[string]any{}, nil)
		_ = b.conn.Close()
	}
	exited := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL) // helpers (zygote, renderers) left behind
	<-exited
}

// keepArtifact writes data to name in the test's temp dir, and into
// $EDGEGW_ARTIFACTS when set; it logs the paths.
func keepArtifact(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := dir + "/" + name
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s (%d bytes)", path, len(data))
	if keep := os.Getenv("EDGEGW_ARTIFACTS"); keep != "" {
		if err := os.MkdirAll(keep, 0o755); err != nil {
			t.Fatal(err)
		}
		kept := keep + "/" + name
		if err := os.WriteFile(kept, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("artifact kept: %s", kept)
	}
	return path
}
