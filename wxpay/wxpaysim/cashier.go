package wxpaysim

import (
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// MWebURLLifetime is how long an mweb_url opens the payment sheet: WeChat
// documents it as valid for 5 minutes (mweb_url的有效期为5分钟); a later
// visit is refused, and the merchant places the order again for a new one.
const MWebURLLifetime = 5 * time.Minute

// defaultMWebBase is WeChat's H5 payment address, which mweb_url names
// when Config.CashierURL is not set.
const defaultMWebBase = "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb"

//go:embed cashier.html
var cashierHTML string

var cashierPage = template.Must(template.New("cashier").Parse(cashierHTML))

// SetCashierURL sets Config.CashierURL for the orders placed from now on;
// "" goes back to WeChat's address.
func (s *Simulator) SetCashierURL(u string) {
	s.mu.Lock()
	s.cashierURL = u
	s.mu.Unlock()
}

// mwebURLLocked is a new MWEB order's mweb_url: WeChat's shape
// (…?prepay_id=…&package=<10 digits>) on the cashier's address.
func (s *Simulator) mwebURLLocked(prepayID string) string {
	base := s.cashierURL
	if base == "" {
		base = defaultMWebBase
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "prepay_id=" + url.QueryEscape(prepayID) + "&package=" + randomString(digits, 10)
}

// cashierView is what the payment sheet shows.
type cashierView struct {
	Title       string
	Problem     string // the sheet cannot be paid: why
	Done        string // it was paid or cancelled and has nowhere to return to
	MchID       string
	Body        string
	Amount      string // yuan, two decimals
	OutTradeNo  string
	PrepayID    string
	Package     string
	RedirectURL string
	Payable     bool
}

// serveCashier plays WeChat's H5 payment sheet, the page an mweb_url
// opens in the payer's browser. GET shows the order (merchant, goods,
// amount) with a confirm and a cancel button; POST (the sheet's form,
// action=pay or action=cancel) pays the order as POST /sim/pay does,
// notifying the merchant, or leaves it unpaid, then sends the browser to
// the redirect_url the merchant appended to mweb_url, as WeChat does. The
// link must be one the simulator issued (prepay_id and package), not older
// than MWebURLLifetime; redirect_url must be an absolute http(s) URL.
func (s *Simulator) serveCashier(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxControlBody)
		if err := r.ParseForm(); err != nil {
			renderCashier(w, http.StatusBadRequest, cashierView{Title: "请求无效", Problem: "the form cannot be read: " + err.Error()})
			return
		}
	}
	get := func(name string) string {
		if r.Method == http.MethodPost {
			return r.PostForm.Get(name)
		}
		return r.URL.Query().Get(name)
	}
	v := cashierView{PrepayID: get("prepay_id"), Package: get("package"), RedirectURL: get("redirect_url")}
	if v.RedirectURL != "" {
		if u, err := url.Parse(v.RedirectURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			renderCashier(w, http.StatusBadRequest, cashierView{Title: "商家参数格式有误", Problem: "redirect_url must be an absolute http(s) URL, URL-encoded"})
			return
		}
	}
	o, status, problem := s.cashierOrder(v.PrepayID, v.Package)
	if problem != "" {
		v.Title, v.Problem = "无法支付", problem
		renderCashier(w, status, v)
		return
	}
	v.MchID, v.Body, v.Amount, v.OutTradeNo = o.MchID, o.Params.Get("body"), yuan(o.TotalFee), o.OutTradeNo
	if r.Method == http.MethodGet {
		switch o.State {
		case StateNotPay, StatePayError:
			v.Title, v.Payable = "确认支付", true
			renderCashier(w, http.StatusOK, v)
		case StateSuccess:
			v.Title, v.Done = "已支付", "This order is paid already."
			renderCashier(w, http.StatusOK, v)
		default:
			v.Title, v.Problem = "订单已关闭", "This order is closed: the merchant must place a new one."
			renderCashier(w, http.StatusConflict, v)
		}
		return
	}
	switch action := get("action"); action {
	case "pay":
		if _, err := s.Pay(r.Context(), PayOptions{PrepayID: v.PrepayID}); err != nil {
			status := http.StatusConflict
			if errors.Is(err, ErrClosed) {
				status = http.StatusServiceUnavailable
			}
			v.Title, v.Problem = "支付失败", err.Error()
			renderCashier(w, status, v)
			return
		}
		v.Title, v.Done = "支付成功", "Paid: WeChat notifies the merchant."
	case "cancel":
		s.logf("wxpaysim: cashier: order %s of mch_id %s: the payer cancelled", o.OutTradeNo, o.MchID)
		v.Title, v.Done = "已取消支付", "Cancelled: the order stays unpaid."
	default:
		renderCashier(w, http.StatusBadRequest, cashierView{Title: "请求无效", Problem: fmt.Sprintf("action must be pay or cancel, got %q", action)})
		return
	}
	if v.RedirectURL != "" {
		http.Redirect(w, r, v.RedirectURL, http.StatusSeeOther)
		return
	}
	renderCashier(w, http.StatusOK, v)
}

// cashierOrder finds the MWEB order an mweb_url names, or says why the
// link opens no payment sheet (with the status to answer).
func (s *Simulator) cashierOrder(prepayID, pkg string) (Order, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byPrepay[prepayID]
	if !ok || prepayID == "" {
		return Order{}, http.StatusNotFound, "no order has this prepay_id"
	}
	issued, err := url.Parse(o.MWebURL)
	if err != nil || o.TradeType != wxpay.TradeTypeMWEB || issued.Query().Get("package") != pkg {
		return Order{}, http.StatusBadRequest, "this is not an mweb_url the simulator issued (prepay_id and package must be the answer's)"
	}
	issuedAt := o.mwebIssued
	if issuedAt.IsZero() {
		issuedAt = o.CreatedAt
	}
	if age := s.now().Sub(issuedAt); age >= MWebURLLifetime {
		return Order{}, http.StatusGone, fmt.Sprintf("the mweb_url expired: it is valid for %v after it was issued (WeChat's limit); place the order again for a new one", MWebURLLifetime)
	}
	return o.snapshot(), 0, ""
}

func renderCashier(w http.ResponseWriter, status int, v cashierView) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The page runs no script and is framed by no one. (No form-action:
	// Chromium applies it to the redirect after the form, to the merchant.)
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = cashierPage.Execute(w, v)
}
