package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
)

// POST /wxpay/refunds[?app_id=]
func (h *Handler) refund(svc *gateway.Service, w http.ResponseWriter, r *http.Request) (any, error) {
	body, err := readLimited(w, r, gateway.MaxBodySize)
	if err != nil {
		return nil, err
	}
	req, err := gateway.DecodeRefundRequest(body)
	if err != nil {
		return nil, err
	}
	if req.AppID == "" {
		req.AppID = r.URL.Query().Get("app_id")
	}
	resp, err := svc.Refund(r.Context(), h.merchant, req)
	if err != nil {
		logError(h.logger, h.Merchant, gateway.ErrorFor(err),
			zap.String("out_refund_no", gateway.LogText(req.OutRefundNo)), zap.String("out_trade_no", gateway.LogText(req.OutTradeNo)),
			zap.String("transaction_id", gateway.LogText(req.TransactionID)))
		return nil, alreadyLogged{err}
	}
	return resp, nil
}

// GET /wxpay/refunds/{out_refund_no}[?app_id=]
func (h *Handler) queryRefund(svc *gateway.Service, _ http.ResponseWriter, r *http.Request) (any, error) {
	return svc.QueryRefund(r.Context(), h.merchant, r.PathValue("out_refund_no"), r.URL.Query().Get("app_id"))
}

// GET /wxpay/bills/{yyyyMMdd}[?type=ALL|SUCCESS|REFUND|RECHARGE_REFUND&gzip=1&app_id=]
// streams WeChat's CSV (or gzip) as it comes. A download that breaks off,
// or (APIv3) whose hash does not match at its end, is aborted: the caller
// sees the response cut short (no clean end of the body), never a
// complete-looking bill.
func (h *Handler) serveBill(w http.ResponseWriter, r *http.Request) {
	svc, err := h.app.serviceFor(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	q := r.URL.Query()
	date := r.PathValue("date")
	gz := q.Get("gzip") == "1" || q.Get("gzip") == "true"
	rc, err := svc.DownloadBill(r.Context(), h.merchant, date, q.Get("type"), gz, q.Get("app_id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	defer rc.Close()
	if gz {
		w.Header().Set("Content-Type", "application/gzip")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="bill-%s.csv.gz"`, date))
	} else {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="bill-%s.csv"`, date))
	}
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, bufio.NewReader(rc)); err != nil {
		if r.Context().Err() != nil { // the caller went away: its own doing
			h.logger.Info("bill download ended: the caller went away", zap.String("date", date))
		} else {
			h.logger.Error("bill download aborted: the caller's copy is cut short", zap.String("date", date), zap.Error(err))
		}
		// The status is sent: only an unclean end tells the caller (as
		// reverse_proxy does when its upstream breaks off mid-body).
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
}
