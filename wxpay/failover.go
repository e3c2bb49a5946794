package wxpay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// DisasterRecoveryEndpoint is WeChat Pay's disaster-recovery twin of
// DefaultEndpoint: the same API, to switch to when the main host fails at
// the network level or with a 5xx.
const DisasterRecoveryEndpoint = "https://api2.mch.weixin.qq.com"

// DefaultFailoverEndpoint returns the failover twin of endpoint:
// DisasterRecoveryEndpoint for WeChat's own host (DefaultEndpoint, or "" which
// means it; the host compared in any case, with or without the root's
// trailing dot), and "" — no failover — for any other endpoint, such as a
// simulator or a regional host, whose twin this package cannot know.
func DefaultFailoverEndpoint(endpoint string) string {
	e := strings.TrimSuffix(endpoint, "/")
	if e == "" {
		return DisasterRecoveryEndpoint
	}
	u, err := url.Parse(e)
	if err == nil && strings.EqualFold(u.Scheme, "https") && u.Port() == "" && (u.Path == "" || u.Path == "/") &&
		canonicalHost(u.Hostname()) == "api.mch.weixin.qq.com" {
		return DisasterRecoveryEndpoint
	}
	return ""
}

// IsWeChatHost reports whether host is WeChat's (weixin.qq.com or a host
// under it: api.mch.weixin.qq.com, api2.…, the regional apihk.…, apius.…),
// compared in any case and with or without the root's trailing dot.
func IsWeChatHost(host string) bool {
	h := canonicalHost(host)
	return h == "weixin.qq.com" || strings.HasSuffix(h, ".weixin.qq.com")
}

// canonicalHost is host in lower case without the root's trailing dot.
func canonicalHost(host string) string {
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// callMode says whether a call may be repeated.
type callMode int

const (
	// callOnce is a call that must not be sent twice (unifiedorder, and
	// Call, which cannot know): it is tried once.
	callOnce callMode = iota
	// callRepeatable is a call that is safe to repeat with the same
	// request: it fails over once on a network error or an HTTP 5xx.
	callRepeatable
	// callClose is repeatable and has an effect (closeorder): a refusal of
	// the repeat does not tell whether the first attempt took effect.
	callClose
	// callRefund is repeatable, and an answer with err_code SYSTEMERROR is
	// also retried once with the same request, as WeChat documents for
	// refunds (the same out_refund_no never refunds twice).
	callRefund
)

// exchange sends sr with hc, failing over as mode allows, and returns the
// checked answer.
func (c *Client) exchange(ctx context.Context, hc *http.Client, sr *signedRequest, mode callMode) (Params, error) {
	try := func(base string) (Params, error) {
		resp, release, err := c.post(ctx, hc, base, sr)
		if err != nil {
			return nil, err
		}
		reply, err := readReply(sr.op, resp, release)
		if err != nil {
			return nil, err
		}
		return c.checkReply(sr.op, reply, sr.st)
	}
	var first error // the first try's failure
	p, base, err := withFailover(ctx, c, sr.op, mode != callOnce, func(base string) (Params, error) {
		p, err := try(base)
		if first == nil {
			first = err
		}
		return p, err
	})
	if mode == callRefund && isSystemError(err) && ctx.Err() == nil {
		// Once more, where SYSTEMERROR came from: that host answers.
		p, err = try(base)
	}
	if err != nil && err != first && (mode == callRefund || mode == callClose) && unknownOutcome(first) && !unknownOutcome(err) && !orderStateAnswer(err) {
		// The first attempt may have done it; the repeat's refusal (a rate
		// limit on a request already under way, say) does not say. (An
		// answer about the order's state — closed, paid — holds whatever
		// the first attempt did.)
		return nil, &RepeatError{Op: sr.op, First: first, Then: err}
	}
	return p, err
}

// RepeatError is a call with an effect (a refund, a close) that was sent
// again after its first attempt got no answer, an HTTP 5xx or SYSTEMERROR,
// and whose repeat was refused: First may have taken effect at WeChat,
// and the refusal Then says nothing of it. It unwraps to First, whose
// outcome is unknown: query before deciding.
type RepeatError struct {
	Op    string
	First error
	Then  error
}

func (e *RepeatError) Error() string {
	return fmt.Sprintf("wxpay %s: outcome unknown: %v; sent again: %v", e.Op, e.First, e.Then)
}

func (e *RepeatError) Unwrap() error { return e.First }

// orderStateAnswer reports whether err is WeChat's answer about the order's
// state (closed, paid), true whatever an earlier attempt did.
func orderStateAnswer(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.ErrCode == "ORDERCLOSED" || ae.ErrCode == "ORDERPAID")
}

// unknownOutcome reports whether a failed try leaves open whether WeChat
// did what it was asked: no answer, an HTTP 5xx, or SYSTEMERROR.
func unknownOutcome(err error) bool {
	var te *TransportError
	return errors.As(err, &te) || isSystemError(err)
}

// withFailover runs try against the endpoint and, when retry allows and the
// first try failed in a way that failing over can cure, once against
// FailoverEndpoint. It returns the base URL of the last try.
func withFailover[T any](ctx context.Context, c *Client, op string, retry bool, try func(base string) (T, error)) (T, string, error) {
	base := c.endpoint()
	v, err := try(base)
	if err == nil || !retry || !c.shouldFailover(ctx, err) {
		return v, base, err
	}
	if c.OnFailover != nil {
		c.OnFailover(op, err)
	}
	base = strings.TrimSuffix(c.FailoverEndpoint, "/")
	v, err = try(base)
	return v, base, err
}

// shouldFailover reports whether a failed try is worth repeating against
// FailoverEndpoint: there is one, the caller's context is still live (its
// deadline or cancellation is the caller's decision, not a fault of
// WeChat's), and WeChat gave no answer or an HTTP 5xx. A timeout of the
// Client's own Timeout counts as no answer. An answer that came, even a
// FAIL or one that does not verify, is never retried against the twin.
func (c *Client) shouldFailover(ctx context.Context, err error) bool {
	if c.FailoverEndpoint == "" || ctx.Err() != nil {
		return false
	}
	var te *TransportError
	if !errors.As(err, &te) {
		return false
	}
	return te.StatusCode == 0 || te.StatusCode >= 500
}

func isSystemError(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.ErrCode == "SYSTEMERROR"
}
