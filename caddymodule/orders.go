package caddymodule

import (
	"net/http"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
)

// A route that answers JSON: the service's answer with 200, or its error.
type jsonRoute func(svc *gateway.Service, w http.ResponseWriter, r *http.Request) (any, error)

// serveJSON runs a route once the service is there, and answers it.
func (h *Handler) serveJSON(route jsonRoute) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		svc, err := h.app.serviceFor(r.Context())
		if err == nil {
			var answer any
			if answer, err = route(svc, w, r); err == nil {
				writeJSON(w, http.StatusOK, answer)
				return
			}
		}
		h.fail(w, err)
	}
}

// POST /wxpay/orders
func (h *Handler) createOrder(svc *gateway.Service, w http.ResponseWriter, r *http.Request) (any, error) {
	body, err := readLimited(w, r, gateway.MaxBodySize)
	if err != nil {
		return nil, err
	}
	req, err := gateway.DecodeOrderRequest(body)
	if err != nil {
		// Refused before the service (its trade type unread): counted here.
		metricsObserver{}.OrderPlaced(h.merchant.Name, "unknown", gateway.ErrorFor(err).Code)
		return nil, err
	}
	resp, err := svc.PlaceOrder(r.Context(), h.merchant, req, clientIP(r))
	if err != nil {
		return nil, alreadyLogged{err} // the service logged the order's outcome
	}
	return resp, nil
}

// GET /wxpay/orders/{out_trade_no}[?app_id=]
func (h *Handler) queryOrder(svc *gateway.Service, _ http.ResponseWriter, r *http.Request) (any, error) {
	return svc.QueryOrder(r.Context(), h.merchant, r.PathValue("out_trade_no"), r.URL.Query().Get("app_id"))
}

// POST /wxpay/orders/{out_trade_no}/close[?app_id=]
func (h *Handler) closeOrder(svc *gateway.Service, _ http.ResponseWriter, r *http.Request) (any, error) {
	no := r.PathValue("out_trade_no")
	if err := svc.CloseOrder(r.Context(), h.merchant, no, r.URL.Query().Get("app_id")); err != nil {
		return nil, err
	}
	return map[string]string{"out_trade_no": no, "trade_state": gateway.TradeStateClosed}, nil
}
