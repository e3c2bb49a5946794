package wxpaysim

import (
	"slices"
	"strings"
	"time"
)

type failFault struct {
	remaining int
	errCode   string
}

type delayFault struct {
	remaining int
	delay     time.Duration
}

// apiNames are the APIs the simulator serves, for FailNext and DelayNext.
var apiNames = []string{
	APIUnifiedOrder, APIOrderQuery, APICloseOrder, APIRefund, APIRefundQuery, APIDownloadBill,
	APIV3Prepay, APIV3Query, APIV3Close, APIV3Refund, APIV3RefundQuery, APIV3TradeBill, APIV3BillDownload, APIV3Certificates,
}

// knownAPI reports whether the simulator serves the named API.
func knownAPI(api string) bool {
	return slices.Contains(apiNames, api)
}

// normalizeAPI accepts an API by name ("unifiedorder", "refund") or path
// ("/pay/unifiedorder", "/secapi/pay/refund").
func normalizeAPI(api string) string {
	if a, ok := strings.CutPrefix(api, "/secapi/pay/"); ok {
		return a
	}
	return strings.TrimPrefix(api, "/pay/")
}

// FailNext makes the next n calls of api (APIUnifiedOrder, APIOrderQuery,
// APICloseOrder, APIRefund, APIRefundQuery or APIDownloadBill) answer
// result_code FAIL with errCode (SYSTEMERROR when empty; FREQUENCY_LIMITED,
// BIZERR_NEED_RETRY… work the same), signed as WeChat signs its answers.
// An APIv3 api (APIV3Prepay…) answers errCode as a v3 error with its HTTP
// status instead (see v3Status; SYSTEMERROR becomes 500 SYSTEM_ERROR).
// The call changes nothing: a failed refund is not created, so retrying it
// with the same out_refund_no creates it once. downloadbill, whose failures
// are unsigned, answers return_code FAIL with errCode as return_msg. Only
// calls that get as far as a signed answer (a known merchant, a valid
// signature, and for refund a valid client certificate) count. Faults
// queue: FailNext(api, 1, "A") then FailNext(api, 1, "B") fails the next
// call with A and the one after with B. n <= 0 drops the failures queued
// for api.
func (s *Simulator) FailNext(api string, n int, errCode string) {
	api = normalizeAPI(api)
	if errCode == "" {
		errCode = "SYSTEMERROR"
	}
	if !knownAPI(api) {
		s.logf("wxpaysim: FailNext: unknown api %q; the fault is kept but nothing will use it", api)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.fails, api)
		return
	}
	s.fails[api] = keepLast(append(s.fails[api], failFault{remaining: n, errCode: errCode}), s.limits.Faults)
}

// keepLast drops the oldest entries of q past limit.
func keepLast[T any](q []T, limit int) []T {
	if over := len(q) - limit; over > 0 {
		return append(q[:0], q[over:]...)
	}
	return q
}

// AlterNextBills makes the next n APIv3 bill downloads serve their bill
// with one byte changed (its last but one), the hash_value of the
// tradebill answer unchanged: a bill altered or damaged on its way, which
// the merchant's check of the hash must catch. n <= 0 cancels.
func (s *Simulator) AlterNextBills(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alterBills = max(n, 0)
}

// DelayNext makes the next n calls of api (see FailNext) wait d (real
// time: TimeScale does not apply; at most Limits.Delay) before answering, or until the request's
// context ends or the simulator closes, for timeout tests. The call is
// processed before the wait, as when WeChat's answer is lost on the way:
// an order it places or a refund it accepts exists even if the caller gave
// up. Every call of the
// API counts. Faults queue like FailNext's; n <= 0 drops the delays queued
// for api.
func (s *Simulator) DelayNext(api string, n int, d time.Duration) {
	api = normalizeAPI(api)
	if !knownAPI(api) {
		s.logf("wxpaysim: DelayNext: unknown api %q; the fault is kept but nothing will use it", api)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.delays, api)
		return
	}
	d = min(d, s.limits.Delay)
	s.delays[api] = keepLast(append(s.delays[api], delayFault{remaining: n, delay: d}), s.limits.Faults)
}

// takeFail consumes one queued failure of api, returning its err_code.
func (s *Simulator) takeFail(api string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.fails[api]
	if len(q) == 0 {
		return "", false
	}
	code := q[0].errCode
	if q[0].remaining--; q[0].remaining == 0 {
		q = q[1:]
	}
	if len(q) == 0 {
		delete(s.fails, api)
	} else {
		s.fails[api] = q
	}
	return code, true
}

// takeDelay consumes one queued delay of api.
func (s *Simulator) takeDelay(api string) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.delays[api]
	if len(q) == 0 {
		return 0, false
	}
	d := q[0].delay
	if q[0].remaining--; q[0].remaining == 0 {
		q = q[1:]
	}
	if len(q) == 0 {
		delete(s.delays, api)
	} else {
		s.delays[api] = q
	}
	return d, true
}

// errCodeDes is WeChat's description of an err_code.
func errCodeDes(code string) string {
	switch code {
	case "SYSTEMERROR":
		return "系统错误"
	case "FREQUENCY_LIMITED":
		return "频率限制"
	case "BIZERR_NEED_RETRY":
		return "业务错误，请重试"
	case "NOAUTH":
		return "商户无此接口权限"
	case "NOTENOUGH":
		return "余额不足"
	case "APPID_NOT_EXIST":
		return "APPID不存在"
	case "MCHID_NOT_EXIST":
		return "MCHID不存在"
	case "ORDERPAID":
		return "该订单已支付"
	case "ORDERCLOSED":
		return "该订单已关闭"
	case "OUT_TRADE_NO_USED":
		return "商户订单号重复"
	case "APPID_MCHID_NOT_MATCH":
		return "appid和mch_id不匹配"
	case "ORDERNOTEXIST":
		return "订单不存在"
	case "REFUNDNOTEXIST":
		return "退款订单查询失败"
	case "TRADE_STATE_ERROR":
		return "订单状态错误"
	case "REFUND_FEE_MISMATCH":
		return "订单金额或退款金额与之前请求不一致，请核实后再试"
	case "ORDER_NOT_READY":
		return "订单处理中，暂时无法退款，请稍后再试"
	}
	return code
}
