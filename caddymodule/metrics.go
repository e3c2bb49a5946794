package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// The gateway's metrics, in Caddy's registry (served at /metrics on the
// admin endpoint, beside Caddy's own). The collectors live as long as the
// process; every configuration load registers them in its registry (a new
// one per load), so that a reload keeps them and their counts. Label
// values are bounded: merchant names from the configuration, trade types,
// API names, WeChat's error codes, fixed outcomes and reasons; never an
// order number, an openid or an amount.
var metrics = struct {
	orders        *prometheus.CounterVec
	wechatCalls   *prometheus.HistogramVec
	notifications *prometheus.CounterVec
	deliveries    *prometheus.HistogramVec
	reconcile     *prometheus.CounterVec
	outbox        prometheus.Collector
}{
	orders: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "wxpay", Name: "orders_total",
		Help: "Order placements, by merchant, trade type and outcome (ok, or the error code answered: WeChat's or the gateway's).",
	}, []string{"merchant", "trade_type", "outcome"}),
	wechatCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "wxpay", Name: "wechat_request_duration_seconds",
		Help:    "Calls to WeChat Pay, by merchant, API and outcome (ok, WeChat's error code, timeout, unreachable, bad_signature, bad_reply).",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"merchant", "api", "outcome"}),
	notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "wxpay", Name: "notifications_total",
		Help: "WeChat's notifications answered, by merchant, kind (payment, refund), result (stored, duplicate, mismatch, delivered, refused) and the reason of a refusal.",
	}, []string{"merchant", "kind", "result", "reason"}),
	deliveries: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "wxpay", Name: "delivery_attempt_duration_seconds",
		Help:    "Attempts to deliver an event to the backend, by outcome (delivered, failed: retried, dead: given up), and how long the backend took.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"outcome"}),
	reconcile: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "wxpay", Name: "reconcile_findings_total",
		Help: "What the reconciliation found, by merchant: paid (a payment no notification brought), closed (an expired order closed), refund_settled, refund_forgotten.",
	}, []string{"merchant", "finding"}),
	outbox: outboxCollector{desc: prometheus.NewDesc("wxpay_outbox_events",
		"Events in the ledger, by state: pending (waiting for delivery), delivered, dead (given up: replay them), held.",
		[]string{"state"}, nil)},
}

// registerMetrics registers the collectors in this configuration's
// registry.
func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.orders, metrics.wechatCalls, metrics.notifications,
		metrics.deliveries, metrics.reconcile, metrics.outbox} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// metricsObserver feeds the collectors from the gateway, its merchants'
// protocols and the delivery worker.
type metricsObserver struct{}

func (metricsObserver) OrderPlaced(merchant, tradeType, outcome string) {
	metrics.orders.WithLabelValues(merchant, tradeType, outcome).Inc()
}

func (metricsObserver) WeChatCalled(merchant, api, outcome string, d time.Duration) {
	metrics.wechatCalls.WithLabelValues(merchant, api, outcome).Observe(d.Seconds())
}

func (metricsObserver) NotificationTaken(merchant, kind, result, reason string) {
	metrics.notifications.WithLabelValues(merchant, kind, result, reason).Inc()
}

func (metricsObserver) Reconciled(merchant, finding string) {
	metrics.reconcile.WithLabelValues(merchant, finding).Inc()
}

func (metricsObserver) Attempted(outcome string, d time.Duration) {
	metrics.deliveries.WithLabelValues(outcome).Observe(d.Seconds())
}

// outboxCollector reports the events per state of the open ledgers when
// scraped (with several gateways on one database, each reports the
// shared ledger's).
type outboxCollector struct{ desc *prometheus.Desc }

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	totals := map[string]int{}
	open := false
	ledgers.Range(func(_, v any) bool {
		h, ok := v.(*ledgerHandle)
		if !ok {
			return true
		}
		open = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		counts, err := h.store.CountEvents(ctx)
		if err != nil {
			return true // a ledger that cannot be read reports nothing
		}
		for state, n := range counts {
			totals[state] += n
		}
		return true
	})
	if !open {
		return // no ledger (ack upstream, or none open yet)
	}
	for _, state := range []string{ledger.EventPending, ledger.EventDelivered, ledger.EventDead, ledger.EventHeld} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(totals[state]), state)
	}
}

// Interface guards
var (
	_ gateway.Observer     = metricsObserver{}
	_ delivery.Observer    = metricsObserver{}
	_ prometheus.Collector = outboxCollector{}
)
