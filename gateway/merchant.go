package gateway

import (
	"net/http"
	"slices"
)

// Merchant is one WeChat Pay merchant account (商户号) as the gateway serves
// it: who it is, which app ids may use it, where WeChat notifies, and the
// API version that speaks for it.
type Merchant struct {
	// Name is the merchant's name in the configuration (for logs and
	// messages).
	Name string
	// MchID is WeChat's merchant number.
	MchID string
	// AppIDs are the app ids bound to the merchant; the first is the
	// default of an order that names none.
	AppIDs []string
	// NotifyURL is where WeChat sends payment notifications.
	NotifyURL string
	// RefundNotifyURL is where WeChat sends refund notifications, unless a
	// refund names its own.
	RefundNotifyURL string
	// HTTPNotify says when a notify URL may be plain http (a refund's own
	// is checked with it too).
	HTTPNotify HTTPNotify
	// API speaks WeChat Pay's protocol for this merchant.
	API Protocol
	// AlsoNotifiedBy are other API versions whose notifications the
	// merchant takes: API v2's, after a switch to APIv3, for the orders
	// placed before it. Calls to WeChat always go through API.
	AlsoNotifiedBy []Protocol
	// OpenIDs gives mini programs' users' openids (the apps' secrets);
	// nil: the merchant has none.
	OpenIDs OpenIDSource
}

// notificationAPI is the merchant's API version that takes a notification
// with these headers and body; false when none does.
func (m *Merchant) notificationAPI(h http.Header, body []byte) (Protocol, bool) {
	if m.API.TakesNotification(h, body) {
		return m.API, true
	}
	for _, p := range m.AlsoNotifiedBy {
		if p.TakesNotification(h, body) {
			return p, true
		}
	}
	return nil, false
}

// HasAppID reports whether id is one of the merchant's app ids.
func (m *Merchant) HasAppID(id string) bool {
	return slices.Contains(m.AppIDs, id)
}

// appID picks the app id of a request: the one asked for, which must be
// the merchant's, or the merchant's default.
func (m *Merchant) appID(asked string) (string, error) {
	if asked == "" {
		return m.AppIDs[0], nil
	}
	if !m.HasAppID(asked) {
		return "", BadRequest("app_id %q is not one of merchant %s's app ids", asked, m.Name)
	}
	return asked, nil
}

// NotifyReply is the reply to a notification with headers h and body in
// the format of its API version (the merchant's primary one when none of
// its versions takes it): received when status is 200, otherwise refused
// with status and reason.
func (m *Merchant) NotifyReply(h http.Header, body []byte, status int, reason string) Reply {
	if p, ok := m.notificationAPI(h, body); ok {
		return p.NotifyReply(status, reason)
	}
	return m.API.NotifyReply(status, reason)
}
