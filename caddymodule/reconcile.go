package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Reconcile configures the reconciliation job: for orders the ledger holds
// as unpaid once their notification is overdue, it asks WeChat (orderquery),
// records and forwards a payment it finds (as the notification would have
// been), and optionally closes orders past their expiry. With several
// gateways on one ledger, one runs it at a time (a lease in storage).
type Reconcile struct {
	// Turns the job off.
	Disabled bool `json:"disabled,omitempty"`

	// How long after an order is placed it is first checked; later checks
	// back off (doubling) until the order's expiry (time_expire, or the
	// prepay_id's 2 hours). Default: 5m.
	Delay caddy.Duration `json:"delay,omitempty"`

	// Close orders still unpaid at their expiry (closeorder), so that they
	// can no longer be paid. Default: off.
	CloseExpired bool `json:"close_expired,omitempty"`
}

// delay is how long after placing an order its first check comes; 0 when
// the job is off. A nil Reconcile is the default: on, 5 minutes.
func (r *Reconcile) delay() time.Duration {
	switch {
	case r != nil && r.Disabled:
		return 0
	case r != nil && r.Delay > 0:
		return time.Duration(r.Delay)
	}
	return 5 * time.Minute
}
