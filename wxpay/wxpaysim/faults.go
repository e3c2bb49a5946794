package wxpaysim

import (
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

// knownAPI reports whether the simulator serves the named API.
func knownAPI(api string) bool {
	return api == APIUnifiedOrder
}

// normalizeAPI accepts an API by name ("unifiedorder") or path
// ("/pay/unifiedorder").
func normalizeAPI(api string) string {
	return strings.TrimPrefix(api, "/pay/")
}

// FailNext makes the next n calls of api ("unifiedorder") answer
// result_code FAIL with errCode (SYSTEMERROR when empty), signed as WeChat
// signs its answers. Only calls that get as far as a signed answer (a known
// merchant, a valid signature) count. Faults queue: FailNext(api, 1, "A")
// then FailNext(api, 1, "B") fails the next call with A and the one after
// with B. n <= 0 drops the failures queued for api.
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
	s.fails[api] = append(s.fails[api], failFault{remaining: n, errCode: errCode})
}

// DelayNext makes the next n calls of api ("unifiedorder") wait d (real
// time: TimeScale does not apply) before answering, or until the request's
// context ends or the simulator closes, for timeout tests. The call is
// processed before the wait, as when WeChat's answer is lost on the way:
// an order it places exists even if the caller gave up. Every call of the
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
	s.delays[api] = append(s.delays[api], delayFault{remaining: n, delay: d})
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
	}
	return code
}
