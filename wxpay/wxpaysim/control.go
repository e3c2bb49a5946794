package wxpaysim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// maxControlBody bounds the JSON body of a control route.
const maxControlBody = 64 << 10

// payRequest is the JSON body of POST /sim/pay.
type payRequest struct {
	PrepayID   string            `json:"prepay_id"`
	OutTradeNo string            `json:"out_trade_no"`
	MchID      string            `json:"mch_id"`
	Fail       bool              `json:"fail"`
	Duplicate  bool              `json:"duplicate"`
	TotalFee   int64             `json:"total_fee"`
	Lost       bool              `json:"lost"`
	Extra      map[string]string `json:"extra"`
	V3Fault    V3Fault           `json:"v3_fault"`
}

// notifyRequest is the JSON body of POST /sim/notify.
type notifyRequest struct {
	MchID      string `json:"mch_id"`
	OutTradeNo string `json:"out_trade_no"`
}

// faultRequest is the JSON body of POST /sim/faults.
type faultRequest struct {
	API     string `json:"api"`
	Count   *int   `json:"count"` // 1 when absent; 0 drops the faults queued
	ErrCode string `json:"err_code"`
	Delay   string `json:"delay"` // a Go duration: "10s", "1500ms"
}

// servePay answers POST /sim/pay.
func (s *Simulator) servePay(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	var req payRequest
	if err := decodeJSON(r, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	opts := PayOptions{
		PrepayID: req.PrepayID, OutTradeNo: req.OutTradeNo, MchID: req.MchID,
		Fail: req.Fail, Duplicate: req.Duplicate, TotalFee: req.TotalFee, Lost: req.Lost,
		V3Fault: req.V3Fault,
	}
	for _, name := range slices.Sorted(maps.Keys(req.Extra)) {
		opts.Extra = append(opts.Extra, wxpay.Param{Name: name, Value: req.Extra[name]})
	}
	p, err := s.Pay(r.Context(), opts)
	if err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, ErrUnknownOrder):
			status = http.StatusNotFound
		case errors.Is(err, ErrOrderPaid), errors.Is(err, ErrOrderClosed), errors.Is(err, ErrOrderExpired):
			status = http.StatusConflict
		case errors.Is(err, ErrClosed):
			status = http.StatusServiceUnavailable
		}
		writeJSONError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// serveFaults answers POST /sim/faults.
func (s *Simulator) serveFaults(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	var req faultRequest
	if err := decodeJSON(r, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	api := normalizeAPI(req.API)
	if !knownAPI(api) {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("unknown api %q (want one of %s)", req.API, strings.Join(apiNames, ", ")))
		return
	}
	count := 1
	if req.Count != nil {
		count = *req.Count
	}
	if count < 0 {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("count %d is negative", count))
		return
	}
	var delay time.Duration
	if req.Delay != "" {
		d, err := time.ParseDuration(req.Delay)
		if err != nil || d < 0 {
			writeJSONError(w, http.StatusBadRequest, fmt.Errorf("delay %q is not a non-negative duration such as \"10s\"", req.Delay))
			return
		}
		delay = d
	}
	if count > 0 && req.ErrCode == "" && req.Delay == "" {
		writeJSONError(w, http.StatusBadRequest, errors.New(`give "err_code", "delay" or both`))
		return
	}
	if req.ErrCode != "" || count == 0 {
		s.FailNext(api, count, req.ErrCode)
	}
	if req.Delay != "" || count == 0 {
		s.DelayNext(api, count, delay)
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveNotify answers POST /sim/notify: SendNotification.
func (s *Simulator) serveNotify(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	var req notifyRequest
	if err := decodeJSON(r, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if req.MchID == "" || req.OutTradeNo == "" {
		writeJSONError(w, http.StatusBadRequest, errors.New(`give "mch_id" and "out_trade_no"`))
		return
	}
	if err := s.SendNotification(r.Context(), req.MchID, req.OutTradeNo); err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, ErrUnknownOrder):
			status = http.StatusNotFound
		case errors.Is(err, ErrNotPaid):
			status = http.StatusConflict
		case errors.Is(err, ErrClosed):
			status = http.StatusServiceUnavailable
		}
		writeJSONError(w, status, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// serveRefunds answers GET /sim/refunds.
func (s *Simulator) serveRefunds(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	writeJSON(w, http.StatusOK, s.Refunds())
}

// serveNotifications answers GET /sim/notifications.
func (s *Simulator) serveNotifications(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	writeJSON(w, http.StatusOK, s.Notifications())
}

// serveOrders answers GET /sim/orders.
func (s *Simulator) serveOrders(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	writeJSON(w, http.StatusOK, s.Orders())
}

// allowMethod answers 405 and reports false when r's method is not one of
// methods.
func allowMethod(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeJSONError(w, http.StatusMethodNotAllowed, fmt.Errorf("use %s", strings.Join(methods, " or ")))
	return false
}

// decodeJSON decodes exactly one JSON object with known fields from r.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON body: more than one value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // keep XML bodies readable
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
