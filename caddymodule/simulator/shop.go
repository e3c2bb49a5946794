package simulator

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/caddymodule"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// shopPage is the demo shop's only page: the amount and the pay button,
// and, back from the payment sheet (?out_trade_no=), the order's state and
// the events the stand-in backend received for it.
//
//go:embed shop.html
var shopPage []byte

// maxShopAmount bounds what the demo shop charges: 1000 yuan, in fen.
const maxShopAmount = 100000

// shopAmount matches an amount in yuan with at most two decimals.
var shopAmount = regexp.MustCompile(`^[0-9]{1,6}(\.[0-9]{1,2})?$`)

// demoShop is the stand-in backend's shop, the part of a merchant's
// backend that a checkout page talks to. It decides the order (amount,
// goods, H5 scene) and answers it as application/vnd.wxpay.order+json,
// which wxpay_checkout in front of it turns into WeChat's mweb_url; back
// from the payment sheet, it queries the order from the gateway with the
// API token, as a backend does after an H5 payment (the return to
// redirect_url says nothing about whether the payer paid).
type demoShop struct {
	client  *http.Client
	backend *demoBackend

	mu      sync.Mutex
	gateway string // the gateway's base URL, …/wxpay
	token   string
	orders  map[string]int64 // out_trade_no → total_fee, the last maxShopOrders
	placed  []string         // out_trade_no in the order placed
}

// maxShopOrders bounds the orders the demo shop remembers.
const maxShopOrders = 1000

func newDemoShop(backend *demoBackend) *demoShop {
	return &demoShop{backend: backend, client: &http.Client{Timeout: 15 * time.Second}, orders: make(map[string]int64)}
}

// configure sets the gateway the shop queries and the API token it sends
// (a reload may change them; the orders placed stay known).
func (s *demoShop) configure(gateway, token string) {
	s.mu.Lock()
	s.gateway, s.token = strings.TrimSuffix(gateway, "/"), token
	s.mu.Unlock()
}

// ServeHTTP serves GET /shop/ (the page), POST /shop/checkout (an order to
// place) and GET /shop/orders/{out_trade_no} (the order and its events).
func (s *demoShop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/shop" || p == "/shop/":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		_, _ = w.Write(shopPage)
	case p == "/shop/checkout":
		if allow(w, r, http.MethodPost) {
			s.checkout(w, r)
		}
	case strings.HasPrefix(p, "/shop/orders/"):
		if allow(w, r, http.MethodGet) {
			s.order(w, r, strings.TrimPrefix(p, "/shop/orders/"))
		}
	default:
		shopError(w, http.StatusNotFound, "no such page: "+p)
	}
}

// checkout answers the order for the amount the page asks: the backend
// decides, within its limits, and never lets the client set anything else.
func (s *demoShop) checkout(w http.ResponseWriter, r *http.Request) {
	// JSON only: another site's form cannot send it (a cross-site
	// application/json request needs a preflight this shop never grants).
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		shopError(w, http.StatusUnsupportedMediaType, "send Content-Type: application/json")
		return
	}
	var in struct {
		Amount string `json:"amount"` // yuan
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&in); err != nil {
		shopError(w, http.StatusBadRequest, "send JSON {\"amount\": \"12.34\"}")
		return
	}
	fee, err := parseYuan(in.Amount)
	if err != nil {
		shopError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The shop's own order number: "shop", Beijing time, 6 random characters.
	no := "shop" + time.Now().In(wxpay.Beijing).Format("20060102150405") + wxpay.NonceStr()[:6]
	scene, _ := json.Marshal(map[string]any{"h5_info": map[string]string{
		"type": "Wap", "wap_url": "http://" + r.Host + "/shop/", "wap_name": "caddy-wxpay demo shop",
	}})
	order := map[string]any{
		"out_trade_no": no, "total_fee": fee, "body": "caddy-wxpay 演示商品",
		"trade_type": wxpay.TradeTypeMWEB, "scene_info": string(scene),
	}
	s.mu.Lock()
	s.orders[no] = fee
	s.placed = append(s.placed, no)
	if over := len(s.placed) - maxShopOrders; over > 0 {
		for _, old := range s.placed[:over] {
			delete(s.orders, old)
		}
		s.placed = append(s.placed[:0], s.placed[over:]...)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", caddymodule.OrderMediaType)
	_ = json.NewEncoder(w).Encode(order)
}

// parseYuan turns "12.34" into 1234 fen, within the shop's limits.
func parseYuan(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if !shopAmount.MatchString(s) {
		return 0, fmt.Errorf("amount %q is not an amount in yuan with at most two decimals", s)
	}
	whole, frac, _ := strings.Cut(s, ".")
	for len(frac) < 2 {
		frac += "0"
	}
	y, _ := strconv.ParseInt(whole, 10, 64)
	f, _ := strconv.ParseInt(frac, 10, 64)
	fee := y*100 + f
	if fee < 1 || fee > maxShopAmount {
		return 0, fmt.Errorf("amount %s is outside the demo shop's 0.01 to %d yuan", s, maxShopAmount/100)
	}
	return fee, nil
}

// order answers the order's state, as the gateway's query has it, and the
// events the stand-in backend received for it.
func (s *demoShop) order(w http.ResponseWriter, r *http.Request, no string) {
	s.mu.Lock()
	_, ours := s.orders[no]
	s.mu.Unlock()
	if !ours {
		shopError(w, http.StatusNotFound, "the shop placed no order "+no)
		return
	}
	status, answer, err := s.query(r.Context(), no)
	out := map[string]any{"out_trade_no": no, "query_status": status, "events": s.backend.eventsOf(no)}
	if err != nil {
		out["query_error"] = err.Error()
	} else {
		out["order"] = answer
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// query asks the gateway for the order: GET {gateway}/orders/{no}.
func (s *demoShop) query(ctx context.Context, no string) (int, json.RawMessage, error) {
	s.mu.Lock()
	gateway, token := s.gateway, s.token
	s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, gateway+"/orders/"+url.PathEscape(no), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("querying the gateway: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	if !json.Valid(body) {
		return resp.StatusCode, nil, fmt.Errorf("the gateway answered %d without JSON", resp.StatusCode)
	}
	return resp.StatusCode, body, nil
}

// allow answers 405 unless the request uses one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	shopError(w, http.StatusMethodNotAllowed, "use "+strings.Join(methods, " or "))
	return false
}

func shopError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "SHOP", "message": msg}})
}
