package caddymodule

import (
	"context"
	"net/http"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
)

// maxNotificationSize bounds the body of a notification that is read.
const maxNotificationSize = 64 << 10

// POST /wxpay/notify: WeChat's payment notifications. The reply is
// WeChat's exact document (or status), never the gateway's JSON: anything
// but success makes WeChat send the notification again.
func (h *Handler) serveNotify(w http.ResponseWriter, r *http.Request) {
	h.takeNotification(w, r, gateway.KindPayment, (*gateway.Service).AcceptPaymentNotification)
}

// POST /wxpay/notify/refund: WeChat's refund notifications.
func (h *Handler) serveRefundNotify(w http.ResponseWriter, r *http.Request) {
	h.takeNotification(w, r, gateway.KindRefund, (*gateway.Service).AcceptRefundNotification)
}

type acceptFunc func(*gateway.Service, context.Context, *gateway.Merchant, gateway.Notification) gateway.Reply

func (h *Handler) takeNotification(w http.ResponseWriter, r *http.Request, kind string, accept acceptFunc) {
	n := gateway.Notification{Header: r.Header, RemoteIP: clientIP(r), Kind: kind}
	svc, err := h.app.serviceFor(r.Context())
	if err != nil {
		writeReply(w, h.merchant.NotifyReply(r.Header, nil, http.StatusServiceUnavailable, "starting"))
		return
	}
	body, err := readLimited(w, r, maxNotificationSize)
	if err != nil {
		e := gateway.ErrorFor(err)
		writeReply(w, svc.RefuseNotification(h.merchant, n, e.Status, e.Message, nil))
		return
	}
	n.Body = body
	writeReply(w, accept(svc, r.Context(), h.merchant, n))
}
