package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// The rest of an order's life: query, close, refund, refund query, refund
// notifications and bills. All but the refund notification need the API
// token; all answer JSON (bills answer the CSV).

// appIDFor picks the app id to ask WeChat with: the caller's (one of the
// merchant's), the recorded order's, or the merchant's default.
func (h *Handler) appIDFor(ctx context.Context, r *http.Request, outTradeNo string) (string, *apiError) {
	if id := r.URL.Query().Get("app_id"); id != "" {
		if !h.merchant.hasAppID(id) {
			return "", badRequest("app_id %q is not one of merchant %s's app ids", id, h.Merchant)
		}
		return id, nil
	}
	if h.app.ledger != nil && outTradeNo != "" {
		if o, err := h.app.ledger.store.GetOrder(ctx, h.merchant.mchID, outTradeNo); err == nil && o.AppID != "" {
			return o.AppID, nil
		}
	}
	return h.merchant.appIDs[0], nil
}

// OrderState is the answer of GET /wxpay/orders/{out_trade_no}.
type OrderState struct {
	OutTradeNo     string `json:"out_trade_no"`
	TradeState     string `json:"trade_state"`
	TradeStateDesc string `json:"trade_state_desc,omitempty"`
	TransactionID  string `json:"transaction_id,omitempty"`
	TradeType      string `json:"trade_type,omitempty"`
	TotalFee       int64  `json:"total_fee,omitempty"`
	CashFee        int64  `json:"cash_fee,omitempty"`
	TimeEnd        string `json:"time_end,omitempty"`
	OpenID         string `json:"openid,omitempty"`
	BankType       string `json:"bank_type,omitempty"`
	Attach         string `json:"attach,omitempty"`
}

func (h *Handler) serveQueryOrder(w http.ResponseWriter, r *http.Request, outTradeNo string) {
	if err := wxpay.ValidateOutTradeNo("out_trade_no", outTradeNo); err != nil {
		h.writeRouteError(w, r, badRequest("%v", err))
		return
	}
	appID, aerr := h.appIDFor(r.Context(), r, outTradeNo)
	if aerr != nil {
		h.writeRouteError(w, r, aerr)
		return
	}
	resp, err := h.merchant.client.QueryOrder(r.Context(), appID, outTradeNo)
	if err != nil {
		h.writeRouteError(w, r, weChatError(err))
		return
	}
	if resp.Paid() && h.app.ledger != nil {
		// A payment whose notification never came: record and forward it
		// now, under the id the notification would have had.
		if _, _, err := h.app.recordQueriedPayment(r.Context(), h.merchant, resp, h.now()); err != nil {
			h.logger.Error("recording a payment found by orderquery", zap.String("out_trade_no", outTradeNo), zap.Error(err))
		}
	}
	writeJSON(w, http.StatusOK, OrderState{
		OutTradeNo: outTradeNo, TradeState: resp.TradeState, TradeStateDesc: resp.TradeStateDesc,
		TransactionID: resp.TransactionID, TradeType: resp.TradeType, TotalFee: resp.TotalFee, CashFee: resp.CashFee,
		TimeEnd: resp.TimeEnd, OpenID: resp.OpenID, BankType: resp.BankType, Attach: resp.Attach,
	})
}

// recordQueriedPayment turns a paid orderquery answer into the notification
// WeChat would have sent (its fields, without the query's own) and records
// it like one: a later notification of the same payment is a duplicate.
func (a *App) recordQueriedPayment(ctx context.Context, m *merchant, q *wxpay.OrderQueryResponse, now time.Time) (*event.Event, bool, error) {
	p := wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"}}
	for _, f := range q.Raw {
		switch f.Name {
		case "return_code", "return_msg", "result_code", "err_code", "err_code_des", "sign", "sign_type",
			"nonce_str", "trade_state", "trade_state_desc":
			continue
		}
		p = append(p, f)
	}
	return a.recordNotification(ctx, m, &wxpay.Notification{Params: p}, now)
}

func (h *Handler) serveCloseOrder(w http.ResponseWriter, r *http.Request, outTradeNo string) {
	if err := wxpay.ValidateOutTradeNo("out_trade_no", outTradeNo); err != nil {
		h.writeRouteError(w, r, badRequest("%v", err))
		return
	}
	appID, aerr := h.appIDFor(r.Context(), r, outTradeNo)
	if aerr != nil {
		h.writeRouteError(w, r, aerr)
		return
	}
	if err := h.merchant.client.CloseOrder(r.Context(), appID, outTradeNo); err != nil {
		h.writeRouteError(w, r, weChatError(err))
		return
	}
	h.app.orderClosed(r.Context(), h.merchant, outTradeNo)
	writeJSON(w, http.StatusOK, map[string]string{"out_trade_no": outTradeNo, "trade_state": wxpay.TradeStateClosed})
}

// orderClosed records a close in the ledger.
func (a *App) orderClosed(ctx context.Context, m *merchant, outTradeNo string) {
	if a.ledger == nil {
		return
	}
	st := a.ledger.store
	if err := st.SetOrderState(ctx, m.mchID, outTradeNo, ledger.OrderClosed, time.Now()); err != nil && !errors.Is(err, ledger.ErrNotFound) {
		a.logger.Error("recording a closed order", zap.String("out_trade_no", outTradeNo), zap.Error(err))
	}
	if err := st.ScheduleCheck(ctx, m.mchID, outTradeNo, time.Time{}, 0); err != nil && !errors.Is(err, ledger.ErrNotFound) {
		a.logger.Error("unscheduling a closed order's checks", zap.String("out_trade_no", outTradeNo), zap.Error(err))
	}
}

// refundError is weChatError for refunds: WeChat answers a refund of more
// than is left of the order with err_code INVALID_REQUEST
// ("refund_fee大于可退金额") and any refund of an order refunded in full
// with ERROR ("订单已全额退款"); both conflict with the order's state (409),
// and the caller sees WeChat's code and words.
func refundError(err error) *apiError {
	ae := weChatError(err)
	if ae.status == http.StatusBadGateway && (ae.code == "INVALID_REQUEST" || ae.code == "ERROR") {
		ae.status = http.StatusConflict
	}
	return ae
}

// RefundBody is the body of POST /wxpay/refunds.
type RefundBody struct {
	OutTradeNo    string          `json:"out_trade_no,omitempty"`
	TransactionID string          `json:"transaction_id,omitempty"`
	OutRefundNo   string          `json:"out_refund_no"`
	TotalFee      json.RawMessage `json:"total_fee"`
	RefundFee     json.RawMessage `json:"refund_fee"`
	RefundDesc    string          `json:"refund_desc,omitempty"`
	NotifyURL     string          `json:"notify_url,omitempty"`
	AppID         string          `json:"app_id,omitempty"`
}

// RefundAnswer is the answer of POST /wxpay/refunds.
type RefundAnswer struct {
	OutRefundNo   string `json:"out_refund_no"`
	RefundID      string `json:"refund_id"`
	OutTradeNo    string `json:"out_trade_no,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	TotalFee      int64  `json:"total_fee"`
	RefundFee     int64  `json:"refund_fee"`
	CashFee       int64  `json:"cash_fee,omitempty"`
	// Accepted is not refunded: the outcome arrives as a refund.* event.
	Status string `json:"status"`
}

func (h *Handler) serveRefund(w http.ResponseWriter, r *http.Request) {
	body, aerr := readLimited(w, r, maxOrderBody)
	if aerr != nil {
		h.writeRouteError(w, r, aerr)
		return
	}
	var b RefundBody
	if err := decodeStrict(body, &b); err != nil {
		h.writeRouteError(w, r, badRequest("refund is not a valid JSON object: %v", err))
		return
	}
	total, aerr := jsonAmount("total_fee", b.TotalFee)
	if aerr != nil {
		h.writeRouteError(w, r, aerr)
		return
	}
	fee, aerr := jsonAmount("refund_fee", b.RefundFee)
	if aerr != nil {
		h.writeRouteError(w, r, aerr)
		return
	}
	appID := b.AppID
	if appID == "" {
		var aerr *apiError
		if appID, aerr = h.appIDFor(r.Context(), r, b.OutTradeNo); aerr != nil {
			h.writeRouteError(w, r, aerr)
			return
		}
	} else if !h.merchant.hasAppID(appID) {
		h.writeRouteError(w, r, badRequest("app_id %q is not one of merchant %s's app ids", appID, h.Merchant))
		return
	}
	notify := b.NotifyURL
	if notify == "" {
		notify = h.merchant.refundNotifyURL
	}
	req := &wxpay.RefundRequest{
		AppID: appID, OutTradeNo: b.OutTradeNo, TransactionID: b.TransactionID, OutRefundNo: b.OutRefundNo,
		TotalFee: total, RefundFee: fee, RefundDesc: b.RefundDesc, NotifyURL: notify,
	}
	if err := req.Validate(); err != nil {
		var fe *wxpay.FieldError
		if errors.As(err, &fe) {
			h.writeRouteError(w, r, badRequest("%s %s", fe.Field, fe.Reason))
		} else {
			h.writeRouteError(w, r, badRequest("%v", err))
		}
		return
	}
	if h.merchant.tlsHTTP == nil {
		h.writeRouteError(w, r, &apiError{status: http.StatusNotImplemented, code: "NO_CLIENT_CERT",
			message: "refunds need the merchant's API client certificate: set client_cert for merchant " + h.Merchant})
		return
	}
	st := h.app.store()
	if st != nil {
		// The same out_refund_no is one refund: with other amounts it is
		// refused before WeChat is asked.
		if known, err := st.GetRefund(r.Context(), h.merchant.mchID, b.OutRefundNo); err == nil &&
			(known.RefundFee != fee || known.TotalFee != total) {
			h.writeRouteError(w, r, &apiError{status: http.StatusConflict, code: "OUT_REFUND_NO_USED",
				message: fmt.Sprintf("out_refund_no %s was used for a refund of %d of %d fen", b.OutRefundNo, known.RefundFee, known.TotalFee)})
			return
		}
	}
	resp, err := h.merchant.client.Refund(r.Context(), req)
	if err != nil {
		h.writeRouteError(w, r, refundError(err))
		return
	}
	if st != nil {
		rf := &ledger.Refund{MchID: h.merchant.mchID, OutRefundNo: b.OutRefundNo, OutTradeNo: resp.OutTradeNo,
			TransactionID: resp.TransactionID, RefundID: resp.RefundID, TotalFee: total, RefundFee: fee}
		if err := st.PutRefund(r.Context(), rf); err != nil && !errors.Is(err, ledger.ErrExists) {
			h.logger.Error("recording a refund", zap.String("out_refund_no", b.OutRefundNo), zap.Error(err))
		}
	}
	h.logger.Info("refund accepted by WeChat", zap.String("merchant", h.Merchant), zap.String("out_refund_no", b.OutRefundNo),
		zap.String("refund_id", resp.RefundID), zap.Int64("refund_fee", fee))
	writeJSON(w, http.StatusOK, RefundAnswer{
		OutRefundNo: b.OutRefundNo, RefundID: resp.RefundID, OutTradeNo: resp.OutTradeNo, TransactionID: resp.TransactionID,
		TotalFee: total, RefundFee: fee, CashFee: resp.CashFee, Status: wxpay.RefundStatusProcessing,
	})
}

// RefundState is the answer of GET /wxpay/refunds/{out_refund_no}.
type RefundState struct {
	OutTradeNo    string        `json:"out_trade_no,omitempty"`
	TransactionID string        `json:"transaction_id,omitempty"`
	TotalFee      int64         `json:"total_fee,omitempty"`
	Refunds       []RefundEntry `json:"refunds"`
}

// RefundEntry is one refund of an order.
type RefundEntry struct {
	OutRefundNo  string `json:"out_refund_no"`
	RefundID     string `json:"refund_id"`
	RefundFee    int64  `json:"refund_fee"`
	RefundStatus string `json:"refund_status"`
	SuccessTime  string `json:"success_time,omitempty"`
	RecvAccount  string `json:"refund_recv_account,omitempty"`
}

func (h *Handler) serveQueryRefund(w http.ResponseWriter, r *http.Request, outRefundNo string) {
	appID, aerr := h.appIDFor(r.Context(), r, "")
	if aerr != nil {
		h.writeRouteError(w, r, aerr)
		return
	}
	resp, err := h.merchant.client.QueryRefund(r.Context(), appID, outRefundNo)
	if err != nil {
		var fe *wxpay.FieldError
		if errors.As(err, &fe) {
			h.writeRouteError(w, r, badRequest("%s %s", fe.Field, fe.Reason))
			return
		}
		h.writeRouteError(w, r, weChatError(err))
		return
	}
	out := RefundState{OutTradeNo: resp.OutTradeNo, TransactionID: resp.TransactionID, TotalFee: resp.TotalFee, Refunds: []RefundEntry{}}
	for _, s := range resp.Refunds {
		out.Refunds = append(out.Refunds, RefundEntry{OutRefundNo: s.OutRefundNo, RefundID: s.RefundID, RefundFee: s.RefundFee,
			RefundStatus: s.RefundStatus, SuccessTime: s.SuccessTime, RecvAccount: s.RecvAccount})
	}
	writeJSON(w, http.StatusOK, out)
}

// serveRefundNotify handles WeChat's refund notification: decrypt req_info
// with MD5 of the key, check the merchant and the refund the gateway
// placed, store the event (or deliver it, with ack upstream), then answer.
func (h *Handler) serveRefundNotify(w http.ResponseWriter, r *http.Request) {
	body, aerr := readLimited(w, r, wxpay.MaxNotificationSize)
	if aerr != nil {
		h.notifyFail(w, r, aerr.status, aerr.message, nil)
		return
	}
	n, err := wxpay.DecryptRefundNotification(body, h.merchant.key)
	if err != nil {
		h.notifyFail(w, r, http.StatusBadRequest, "invalid refund notification", err)
		return
	}
	if n.MchID() != h.merchant.mchID || !h.merchant.hasAppID(n.AppID()) {
		h.notifyFail(w, r, http.StatusBadRequest, "mch_id or appid mismatch", fmt.Errorf("refund notification for mch_id %q appid %q reached merchant %s", n.MchID(), n.AppID(), h.Merchant))
		return
	}
	now := h.now()
	ev, err := event.FromRefundNotification(n, now)
	if err != nil {
		h.notifyFail(w, r, http.StatusBadRequest, "invalid refund notification", err)
		return
	}
	st := h.app.store()
	if st != nil {
		if known, err := st.GetRefund(r.Context(), h.merchant.mchID, n.OutRefundNo()); err == nil {
			if fee, ferr := n.RefundFee(); ferr != nil || fee != known.RefundFee {
				ev.Type = event.RefundMismatch
				ev.Data["mismatch"] = map[string]event.Discrepancy{"refund_fee": {Order: known.RefundFee, Notification: n.Get("refund_fee")}}
				h.logger.Error("refund notification disagrees with the refund placed: forwarded as refund.mismatch",
					zap.String("out_refund_no", n.OutRefundNo()), zap.Int64("refund_fee_placed", known.RefundFee), zap.String("refund_fee_notified", n.Get("refund_fee")))
			} else if err := st.SetRefundState(r.Context(), h.merchant.mchID, n.OutRefundNo(), n.RefundStatus(), n.RefundID(), now); err != nil {
				h.logger.Error("recording a refund's state", zap.String("out_refund_no", n.OutRefundNo()), zap.Error(err))
			}
		}
	}
	payload, err := ev.Marshal()
	if err != nil {
		h.notifyFail(w, r, http.StatusInternalServerError, "internal error", err)
		return
	}
	if st == nil {
		if err := h.app.upstream.deliver(r.Context(), ev.ID, payload, now); err != nil {
			h.notifyFail(w, r, http.StatusServiceUnavailable, "backend did not take the event", err)
			return
		}
	} else {
		created, err := st.RecordEvent(r.Context(), &ledger.Event{
			ID: ev.ID, MchID: h.merchant.mchID, Type: ev.Type, OutTradeNo: n.OutTradeNo(), TransactionID: n.TransactionID(),
			Payload: payload, CreatedAt: now, NextAttemptAt: now,
		}, "")
		if err != nil {
			h.notifyFail(w, r, http.StatusServiceUnavailable, "storage failure", err)
			return
		}
		if created {
			h.app.ledger.worker.Notify()
		}
	}
	h.logger.Info("refund notification received", zap.String("merchant", h.Merchant), zap.String("event_id", ev.ID),
		zap.String("type", ev.Type), zap.String("out_refund_no", n.OutRefundNo()))
	writeNotifyReply(w, http.StatusOK, []byte(wxpay.NotifyReplySuccess))
}

func (h *Handler) serveBill(w http.ResponseWriter, r *http.Request, date string) {
	q := r.URL.Query()
	billType := q.Get("type")
	if billType == "" {
		billType = "ALL"
	}
	switch billType {
	case "ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND":
	default:
		h.writeRouteError(w, r, badRequest("type %q: want ALL, SUCCESS, REFUND or RECHARGE_REFUND", billType))
		return
	}
	if _, err := time.Parse("20060102", date); err != nil {
		h.writeRouteError(w, r, badRequest("bill date %q: want yyyyMMdd", date))
		return
	}
	appID, aerr := h.appIDFor(r.Context(), r, "")
	if aerr != nil {
		h.writeRouteError(w, r, aerr)
		return
	}
	gz := q.Get("gzip") == "1" || q.Get("gzip") == "true"
	rc, err := h.merchant.client.DownloadBill(r.Context(), appID, date, billType, gz)
	if err != nil {
		h.writeRouteError(w, r, weChatError(err))
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
		h.logger.Warn("bill download interrupted", zap.String("date", date), zap.Error(err))
	}
}

// writeRouteError logs and answers an API error.
func (h *Handler) writeRouteError(w http.ResponseWriter, r *http.Request, aerr *apiError) {
	h.logOrderError(r, aerr)
	writeAPIError(w, aerr)
}

// store returns the ledger's store, nil with ack upstream.
func (a *App) store() ledger.Store {
	if a.ledger == nil {
		return nil
	}
	return a.ledger.store
}

// decodeStrict decodes one JSON object, refusing unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}
