package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// newBrowser starts headless Chromium (Debian's chromium package; .ci/run
// installs it) with a phone-sized window, the size of an H5 payment.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := requireTool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// The sandbox needs user namespaces that containers and root
		// lack; the browser only loads this test's own pages.
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(430, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// screenshot checks that the visible page renders to a PNG, and writes it
// to $WXPAY_SCREENSHOTS/<name>.png when that is set (how docs/ got its
// pictures: WXPAY_SCREENSHOTS=$PWD/docs go test ./caddymodule -run
// TestCheckoutPageInChromium/v2).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 500 {
		t.Fatalf("screenshot %s is %v", name, b)
	}
	if dir := os.Getenv("WXPAY_SCREENSHOTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The demo's checkout page, clicked through in a real browser: the shop
// page (served by the stand-in backend behind wxpay_checkout) places an H5
// order, the browser follows the mweb_url to the simulator's payment
// sheet, a click pays, WeChat's redirect brings the browser back, and the
// page shows the order as the gateway queries it and the signed event the
// backend received. Then a payment cancelled in the sheet: back on the
// page the order is NOTPAY and no event exists. On API v2 and on APIv3
// (Caddyfile.example's "#v3 " lines): the page cannot tell.
func TestCheckoutPageInChromium(t *testing.T) {
	browser := newBrowser(t)
	for _, v3 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v2", true: "v3"}[v3], func(t *testing.T) {
			gwURL, simURL := startExampleDemo(t, v3)
			ctx, cancel := chromedp.NewContext(browser) // a new tab
			defer cancel()
			ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
			defer cancelTimeout()

			// A payment.
			if err := chromedp.Do(ctx,
				chromedp.Navigate(gwURL+"/shop/"),
				chromedp.WaitVisible(chromedp.ID("pay")),
				chromedp.SetValue(chromedp.ID("amount"), "12.34"),
				chromedp.Click(chromedp.ID("pay")),
				chromedp.WaitVisible(chromedp.ID("confirm")),
			); err != nil {
				t.Fatalf("from the shop to the payment sheet: %v", err)
			}
			sheetURL := run(t, ctx, chromedp.Location())
			amount := run(t, ctx, chromedp.Text(chromedp.ID("amount")))
			goods := run(t, ctx, chromedp.Text(chromedp.ID("goods")))
			if !strings.HasPrefix(sheetURL, simURL+"/sim/cashier?prepay_id=") || !strings.Contains(sheetURL, "&redirect_url="+url.QueryEscape(gwURL+"/shop/?out_trade_no=")) {
				t.Fatalf("the sheet's address %s: not the mweb_url with the shop's redirect_url", sheetURL)
			}
			if !strings.Contains(amount, "12.34") || goods != "caddy-wxpay 演示商品" {
				t.Fatalf("the sheet shows %q, %q", amount, goods)
			}
			if !v3 {
				screenshot(t, ctx, "checkout-sheet")
			}
			paid := finishOnSheet(t, ctx, gwURL, "confirm", "SUCCESS", "1")
			eventText := run(t, ctx, chromedp.Text(chromedp.ID("events")))
			stateDesc := run(t, ctx, chromedp.Text(chromedp.ID("order")))
			if !strings.Contains(eventText, "payment.succeeded") || !strings.Contains(eventText, "signature verified") || !strings.Contains(eventText, paid) {
				t.Fatalf("the page shows the events:\n%s", eventText)
			}
			if !strings.Contains(stateDesc, "¥12.34") || !strings.Contains(stateDesc, "transaction_id") {
				t.Fatalf("the page shows the order:\n%s", stateDesc)
			}
			if !v3 {
				screenshot(t, ctx, "checkout-result")
			}
			// What the page showed is what happened: the backend holds the
			// verified event, the simulator the paid order.
			ev := backendEventOf(t, simURL, paid)
			if ev == nil || !ev.Verified || ev.Event.Type != "payment.succeeded" || ev.Event.Data["total_fee"] != float64(1234) {
				t.Fatalf("the stand-in backend's event for %s: %+v", paid, ev)
			}
			if o := simOrder(t, simURL, paid); o.State != "SUCCESS" || o.TotalFee != 1234 || o.TradeType != "MWEB" || o.APIVersion != map[bool]int{false: 2, true: 3}[v3] {
				t.Fatalf("the simulator's order %s: %+v", paid, o)
			}

			// A payment cancelled in the sheet.
			if err := chromedp.Do(ctx,
				chromedp.Navigate(gwURL+"/shop/"),
				chromedp.WaitVisible(chromedp.ID("pay")),
				chromedp.SetValue(chromedp.ID("amount"), "5"),
				chromedp.Click(chromedp.ID("pay")),
				chromedp.WaitVisible(chromedp.ID("cancel")),
			); err != nil {
				t.Fatalf("from the shop to the payment sheet: %v", err)
			}
			cancelled := finishOnSheet(t, ctx, gwURL, "cancel", "NOTPAY", "0")
			if o := simOrder(t, simURL, cancelled); o.State != "NOTPAY" || o.TotalFee != 500 {
				t.Fatalf("the simulator's order %s: %+v", cancelled, o)
			}
			if ev := backendEventOf(t, simURL, cancelled); ev != nil {
				t.Fatalf("an event for the cancelled order: %+v", ev)
			}
		})
	}
}

// run runs an action that returns a value, failing t on an error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// finishOnSheet clicks the payment sheet's button (its id) and waits until
// the page the browser returns to shows state with that many events; it
// returns the order's out_trade_no.
func finishOnSheet(t *testing.T, ctx context.Context, gwURL, button, state, events string) string {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID(button)),
		chromedp.WaitVisible(chromedp.ID("result")),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](`document.body.dataset.state === "`+state+`" && document.body.dataset.events === "`+events+`"`, chromedp.WithPollingTimeout(30*time.Second))(ctx, tg)
			return err
		}),
	); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("after %s, waiting for %s with %s events: %v\nthe page: %s", button, state, events, err, body)
	}
	back := run(t, ctx, chromedp.Location())
	shown := run(t, ctx, chromedp.Text(chromedp.ID("state")))
	if shown != state {
		t.Fatalf("the page shows %q, want %q", shown, state)
	}
	u, err := url.Parse(back)
	if err != nil || !strings.HasPrefix(back, gwURL+"/shop/?") {
		t.Fatalf("the browser came back to %s", back)
	}
	no := u.Query().Get("out_trade_no")
	if !strings.HasPrefix(no, "shop") {
		t.Fatalf("out_trade_no %q", no)
	}
	if state == "NOTPAY" {
		// The page looks again for a while; a payment that is not there
		// does not turn up.
		run(t, ctx, chromedp.Poll[bool](`document.body.dataset.settled === "true"`, chromedp.WithPollingTimeout(45*time.Second)))
		if !run(t, ctx, chromedp.Evaluate[bool](`document.body.dataset.state === "NOTPAY" && document.body.dataset.events === "0"`)) {
			t.Fatal("the cancelled order's page changed while it looked again")
		}
	}
	return no
}

// shownEvent is an event as the stand-in backend lists it (GET
// /backend/events).
type shownEvent struct {
	Verified bool `json:"signature_verified"`
	Event    struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	} `json:"event"`
}

// backendEventOf returns the stand-in backend's event for an order, nil
// when it has none.
func backendEventOf(t *testing.T, simURL, outTradeNo string) *shownEvent {
	t.Helper()
	var events []shownEvent
	getJSON(t, simURL+"/backend/events", &events)
	for i := range events {
		if events[i].Event.Data["out_trade_no"] == outTradeNo {
			return &events[i]
		}
	}
	return nil
}

type simOrderView struct {
	OutTradeNo string `json:"out_trade_no"`
	State      string `json:"state"`
	TotalFee   int64  `json:"total_fee"`
	TradeType  string `json:"trade_type"`
	APIVersion int    `json:"api_version"`
}

func simOrder(t *testing.T, simURL, outTradeNo string) simOrderView {
	t.Helper()
	var orders []simOrderView
	getJSON(t, simURL+"/sim/orders", &orders)
	for _, o := range orders {
		if o.OutTradeNo == outTradeNo {
			return o
		}
	}
	t.Fatalf("the simulator has no order %s", outTradeNo)
	return simOrderView{}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", u, err, body)
	}
}
