// Command handwritten is the load test's hand-written peer (issue #13):
// the v2 order flow as a team would write it with a WeChat Pay SDK, in a
// plain net/http service, with no Caddy and no ledger. It is the yardstick
// the gateway is compared with in bench/load.sh.
//
// POST /orders takes the gateway's order JSON ({"out_trade_no",
// "total_fee", "body", "trade_type":"JSAPI", "openid"}), and with the
// project's wxpay package as the SDK signs a unifiedorder, posts it to the
// endpoint (the load test's fake WeChat), parses and verifies the answer,
// signs the JSAPI pay parameters and answers them as JSON. It checks what
// such a service would (a bearer token, the JSON, the amount) and nothing
// more: no record of the order, no idempotency, no event.
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/bench"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

type orderRequest struct {
	OutTradeNo string `json:"out_trade_no"`
	TotalFee   int64  `json:"total_fee"`
	Body       string `json:"body"`
	TradeType  string `json:"trade_type"`
	OpenID     string `json:"openid"`
}

type orderResponse struct {
	OutTradeNo string                `json:"out_trade_no"`
	PrepayID   string                `json:"prepay_id"`
	PayParams  *wxpay.JSAPIPayParams `json:"pay_params"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18083", "loopback address to listen on")
	endpoint := flag.String("endpoint", "http://127.0.0.1:18081", "WeChat Pay's endpoint (the fake's)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("handwritten: -listen %q is not a loopback address", *listen)
	}
	client := &wxpay.Client{MchID: bench.MchID, Key: bench.Key, Endpoint: *endpoint,
		HTTPClient: wxpay.NewHTTPClient(256), Timeout: 6 * time.Second}
	token := []byte("Bearer " + bench.APIToken)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), token) != 1 {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		var req orderRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.TotalFee <= 0 || req.OutTradeNo == "" {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 6*time.Second)
		defer cancel()
		resp, err := client.UnifiedOrder(ctx, &wxpay.UnifiedOrderRequest{
			AppID: bench.AppID, Body: req.Body, OutTradeNo: req.OutTradeNo, TotalFee: req.TotalFee,
			SpbillCreateIP: "127.0.0.1", NotifyURL: bench.NotifyURL, TradeType: req.TradeType, OpenID: req.OpenID,
		})
		if err != nil {
			status := http.StatusBadGateway
			var ae *wxpay.APIError
			if errors.As(err, &ae) {
				status = http.StatusConflict
			}
			http.Error(w, `{"error":"unifiedorder failed"}`, status)
			return
		}
		pp, err := wxpay.NewJSAPIPayParams(bench.AppID, resp.PrepayID, bench.Key, wxpay.SignTypeMD5, time.Now(), wxpay.NonceStr())
		if err != nil {
			http.Error(w, `{"error":"pay params"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(orderResponse{OutTradeNo: req.OutTradeNo, PrepayID: resp.PrepayID, PayParams: pp})
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })

	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("handwritten: %v", err)
	}
}
