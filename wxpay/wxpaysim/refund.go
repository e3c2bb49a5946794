package wxpaysim

import (
	"bytes"
	"crypto/aes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// What refunds and their notifications say about where the money went.
const (
	// RefundRecvAccount is refund_recv_accout (WeChat's spelling): the
	// payer's WeChat balance.
	RefundRecvAccount = "支付用户的零钱"
	// RefundAccountDefault is refund_account when the request names none.
	RefundAccountDefault = "REFUND_SOURCE_RECHARGE_FUNDS"
	// RefundAccountUnsettled is the other refund_account a request may name.
	RefundAccountUnsettled = "REFUND_SOURCE_UNSETTLED_FUNDS"
	// SuccessTimeLayout is the layout of success_time and
	// refund_success_time_N, in Beijing time.
	SuccessTimeLayout = "2006-01-02 15:04:05"
)

// Refund is a snapshot of a refund known to the simulator.
type Refund struct {
	// MchID is the merchant.
	MchID string `json:"mch_id"`
	// OutTradeNo is the refunded order's number.
	OutTradeNo string `json:"out_trade_no"`
	// TransactionID is the refunded payment's transaction_id.
	TransactionID string `json:"transaction_id"`
	// OutRefundNo is the merchant's refund number, unique per merchant.
	OutRefundNo string `json:"out_refund_no"`
	// RefundID is WeChat's refund number: "50000" and 24 digits.
	RefundID string `json:"refund_id"`
	// Status is RefundStatusProcessing, then RefundStatusSuccess after
	// RefundDelay.
	Status string `json:"status"`
	// RefundFee is the amount refunded, in fen.
	RefundFee int64 `json:"refund_fee"`
	// TotalFee is the order's amount, in fen.
	TotalFee int64 `json:"total_fee"`
	// NotifyURL is where the refund notification goes; empty for none.
	NotifyURL string `json:"notify_url,omitempty"`
	// CreatedAt is when the refund was accepted.
	CreatedAt time.Time `json:"created_at"`
	// SuccessAt is when it succeeded; zero while PROCESSING.
	SuccessAt time.Time `json:"success_at,omitzero"`
}

type refundKey struct{ mchID, outRefundNo string }

// refund is the simulator's mutable record of a refund, guarded by
// Simulator.mu.
type refund struct {
	Refund
	appID         string
	order         *order
	refundAccount string
	apiVersion    int       // the API the refund was asked with; its notification's format
	reason        string    // an APIv3 refund's reason
	endedAt       time.Time // when it left PROCESSING
}

// v3Status is the refund's status under APIv3's names.
func (rf *refund) v3Status() string {
	switch rf.Status {
	case RefundStatusChange:
		return "ABNORMAL"
	case RefundStatusClosed:
		return "CLOSED"
	}
	return rf.Status
}

// EndNextRefunds makes the next n refunds end with status instead of
// SUCCESS: RefundStatusChange (abnormal: the money did not reach the
// payer; APIv3 ABNORMAL, notified REFUND.ABNORMAL) or RefundStatusClosed
// (closed, nothing refunded, the amount refundable again; APIv3 CLOSED,
// REFUND.CLOSED), notified and answered to queries as WeChat does. Calls
// queue: EndNextRefunds(1, RefundStatusClosed) then EndNextRefunds(1,
// RefundStatusChange) ends the next refund closed and the one after
// abnormal. n <= 0 drops what is queued.
func (s *Simulator) EndNextRefunds(n int, status string) error {
	if status != RefundStatusChange && status != RefundStatusClosed {
		return fmt.Errorf("wxpaysim: EndNextRefunds: status %q: want %s or %s", status, RefundStatusChange, RefundStatusClosed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.refundEnds = nil
		return nil
	}
	for range n {
		s.refundEnds = keepLast(append(s.refundEnds, status), s.limits.Faults)
	}
	return nil
}

// Refunds returns snapshots of every refund known, in the order they were
// accepted.
func (s *Simulator) Refunds() []Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Refund, len(s.refundList))
	for i, rf := range s.refundList {
		out[i] = rf.Refund
	}
	return out
}

// validOutRefundNo reports whether v is a valid out_refund_no: at most 64
// characters among 0-9, A-Z, a-z and _-|*@.
func validOutRefundNo(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case c == '_' || c == '-' || c == '|' || c == '*' || c == '@':
		default:
			return false
		}
	}
	return true
}

// refundRequest is a refund request's validated fields.
type refundRequest struct {
	txID, outTradeNo, outRefundNo string
	totalFee, refundFee           int64
	notifyURL, refundAccount      string
}

// validateRefund checks a refund request's fields, returning an err_code
// and its description, or "".
func validateRefund(req wxpay.Params) (rr refundRequest, code, des string) {
	for _, f := range []string{"out_refund_no", "total_fee", "refund_fee"} {
		if req.Get(f) == "" {
			return rr, "LACK_PARAMS", "缺少参数" + f
		}
	}
	rr.txID, rr.outTradeNo, code, des = orderRef(req)
	if code != "" {
		return rr, code, des
	}
	rr.outRefundNo = req.Get("out_refund_no")
	if !validOutRefundNo(rr.outRefundNo) {
		return rr, "PARAM_ERROR", "out_refund_no参数格式错误"
	}
	var ok bool
	if rr.totalFee, ok = parseFee(req.Get("total_fee")); !ok {
		return rr, "PARAM_ERROR", "total_fee参数格式错误"
	}
	if rr.refundFee, ok = parseFee(req.Get("refund_fee")); !ok {
		return rr, "PARAM_ERROR", "refund_fee参数格式错误"
	}
	if ft := req.Get("refund_fee_type"); ft != "" && ft != "CNY" {
		return rr, "PARAM_ERROR", "refund_fee_type参数错误"
	}
	if len([]rune(req.Get("refund_desc"))) > 80 {
		return rr, "PARAM_ERROR", "refund_desc参数长度有误"
	}
	rr.notifyURL = req.Get("notify_url")
	if rr.notifyURL != "" {
		if des := checkNotifyURL(rr.notifyURL); des != "" {
			return rr, "PARAM_ERROR", des
		}
	}
	switch rr.refundAccount = req.Get("refund_account"); rr.refundAccount {
	case "":
		rr.refundAccount = RefundAccountDefault
	case RefundAccountDefault, RefundAccountUnsettled:
	default:
		return rr, "PARAM_ERROR", "refund_account参数错误"
	}
	return rr, "", ""
}

// refund answers POST /secapi/pay/refund once the common checks (client
// certificate included) passed.
func (s *Simulator) refund(c *apiCall) (apiReply, error) {
	if code, des := checkQuery(c); code != "" {
		return s.fail(c, code, des)
	}
	rr, code, des := validateRefund(c.req)
	if code != "" {
		return s.fail(c, code, des)
	}
	if rr.refundFee > rr.totalFee {
		// WeChat refuses this before looking at the order, with an
		// unsigned return_code FAIL.
		return s.refuse(APIRefund, MsgInvalidRefundFee)
	}
	fields, code, des, repeated := s.createRefund(c, rr)
	if code != "" {
		return s.fail(c, code, des)
	}
	if repeated {
		s.logf("wxpaysim: refund mch_id=%s out_refund_no=%q: repeated, same refund_id=%s", c.m.MchID, rr.outRefundNo, fields.Get("refund_id"))
	} else {
		s.logf("wxpaysim: refund mch_id=%s out_trade_no=%q out_refund_no=%q: accepted refund_id=%s refund_fee=%d", c.m.MchID, fields.Get("out_trade_no"), rr.outRefundNo, fields.Get("refund_id"), rr.refundFee)
	}
	return s.succeed(c, fields)
}

// createRefund accepts a refund, or finds the same refund accepted before.
// It returns the answer's fields, or an err_code and its description.
func (s *Simulator) createRefund(c *apiCall, rr refundRequest) (fields wxpay.Params, code, des string, repeated bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rf, outcome := s.acceptRefundLocked(c.m.MchID, c.req.Get("appid"), rr, APIVersion2, "")
	// WeChat's answers as merchants report them: a total_fee other than the
	// order's is REFUND_FEE_MISMATCH; a refund of an order refunded in
	// full is ERROR "订单已全额退款"; one above what is left is
	// INVALID_REQUEST "refund_fee大于可退金额". (NOTENOUGH is the
	// merchant's balance, not the order's.)
	switch outcome {
	case refundNoOrder:
		return nil, "ORDERNOTEXIST", errCodeDes("ORDERNOTEXIST"), false
	case refundOtherOrder:
		return nil, "PARAM_ERROR", "商户退款单号" + rr.outRefundNo + "已用于其他订单", false
	case refundChanged, refundTotalMismatch:
		return nil, "REFUND_FEE_MISMATCH", errCodeDes("REFUND_FEE_MISMATCH"), false
	case refundRepeated:
		// The same refund asked again: WeChat refunds once and answers
		// the same refund.
		return rf.answerFields(), "", "", true
	case refundNotPaid:
		return nil, "TRADE_STATE_ERROR", errCodeDes("TRADE_STATE_ERROR"), false
	case refundFull:
		return nil, "ERROR", DesFullyRefunded, false
	case refundTooHigh:
		return nil, "INVALID_REQUEST", DesRefundFeeTooHigh, false
	case refundLimit:
		return nil, "SYSTEMERROR", "wxpaysim: limit reached", false
	}
	return rf.answerFields(), "", "", false
}

// refundOutcome is what acceptRefundLocked made of a refund request.
type refundOutcome int

const (
	refundAccepted      refundOutcome = iota // a new refund
	refundRepeated                           // the same refund asked again: answered, not repeated
	refundNoOrder                            // no such order of the merchant
	refundOtherOrder                         // out_refund_no used for another order
	refundChanged                            // out_refund_no used with other amounts
	refundNotPaid                            // the order is not paid
	refundTotalMismatch                      // total is not the order's amount
	refundFull                               // the order is refunded in full
	refundTooHigh                            // more than what is left of the order
	refundLimit                              // Limits.Refunds reached
)

// acceptRefundLocked accepts a refund, or finds the same refund accepted
// before, with the checks (in that order) both API versions share; the
// caller turns the outcome into its API's answer. appID is recorded with
// a new refund (the order's when empty), apiVersion and reason too.
func (s *Simulator) acceptRefundLocked(mchID, appID string, rr refundRequest, apiVersion int, reason string) (*refund, refundOutcome) {
	o := s.lookupOrderLocked(mchID, rr.txID, rr.outTradeNo)
	if o == nil {
		return nil, refundNoOrder
	}
	if rf, ok := s.refunds[refundKey{mchID, rr.outRefundNo}]; ok {
		switch {
		case rf.order != o:
			return nil, refundOtherOrder
		case rf.TotalFee != rr.totalFee || rf.RefundFee != rr.refundFee:
			return nil, refundChanged
		}
		return rf, refundRepeated
	}
	switch {
	case o.State != StateSuccess:
		return nil, refundNotPaid
	case rr.totalFee != o.TotalFee:
		return nil, refundTotalMismatch
	case o.refunded >= o.TotalFee:
		return nil, refundFull
	case o.refunded+rr.refundFee > o.TotalFee:
		return nil, refundTooHigh
	case len(s.refundList) >= s.limits.Refunds:
		return nil, refundLimit
	}
	if appID == "" {
		appID = o.AppID
	}
	rf := &refund{
		Refund: Refund{
			MchID: mchID, OutTradeNo: o.OutTradeNo, TransactionID: o.TransactionID,
			OutRefundNo: rr.outRefundNo, Status: RefundStatusProcessing,
			RefundFee: rr.refundFee, TotalFee: o.TotalFee, NotifyURL: rr.notifyURL, CreatedAt: s.now(),
		},
		apiVersion:    apiVersion,
		appID:         appID,
		order:         o,
		refundAccount: rr.refundAccount,
		reason:        reason,
	}
	for {
		// "50000" and 24 digits, 29 characters like WeChat's
		// 50000000382019052709732678859.
		rf.RefundID = "50000" + randomString(digits, 24)
		if _, dup := s.byRefundID[rf.RefundID]; !dup {
			break
		}
	}
	s.refunds[refundKey{mchID, rr.outRefundNo}] = rf
	s.byRefundID[rf.RefundID] = rf
	s.refundList = append(s.refundList, rf)
	o.refunds = append(o.refunds, rf)
	o.refunded += rr.refundFee
	if !s.closed {
		s.wg.Add(1)
		go s.settleRefund(rf)
	}
	return rf, refundAccepted
}

// answerFields are the fields of a successful refund answer.
func (rf *refund) answerFields() wxpay.Params {
	total := strconv.FormatInt(rf.TotalFee, 10)
	fee := strconv.FormatInt(rf.RefundFee, 10)
	return wxpay.Params{
		{Name: "transaction_id", Value: rf.TransactionID},
		{Name: "out_trade_no", Value: rf.OutTradeNo},
		{Name: "out_refund_no", Value: rf.OutRefundNo},
		{Name: "refund_id", Value: rf.RefundID},
		{Name: "refund_fee", Value: fee},
		{Name: "total_fee", Value: total},
		{Name: "cash_fee", Value: total},
		{Name: "cash_refund_fee", Value: fee},
	}
}

// settleRefund makes a refund succeed after RefundDelay (scaled), then
// starts its notification when it has a notify_url.
func (s *Simulator) settleRefund(rf *refund) {
	defer s.wg.Done()
	t := time.NewTimer(s.scale(RefundDelay))
	select {
	case <-t.C:
	case <-s.ctx.Done():
		t.Stop()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	rf.Status, rf.endedAt = RefundStatusSuccess, s.now()
	if len(s.refundEnds) > 0 {
		rf.Status, s.refundEnds = s.refundEnds[0], s.refundEnds[1:]
	}
	switch rf.Status {
	case RefundStatusSuccess:
		rf.SuccessAt = rf.endedAt
	case RefundStatusClosed:
		rf.order.refunded -= rf.RefundFee // nothing was refunded
	}
	s.logf("wxpaysim: refund %s of order %s of mch_id %s: %s", rf.OutRefundNo, rf.OutTradeNo, rf.MchID, rf.Status)
	if rf.NotifyURL == "" {
		return
	}
	if rf.apiVersion == APIVersion3 {
		s.notifyRefundV3Locked(rf)
		return
	}
	m, ok := s.merchants[rf.MchID]
	if !ok { // merchants are never removed
		return
	}
	body, err := refundNotificationBody(rf, m)
	if err != nil {
		s.logf("wxpaysim: refund %s of order %s of mch_id %s: cannot build the notification: %v", rf.OutRefundNo, rf.OutTradeNo, rf.MchID, err)
		return
	}
	n := &notification{rec: NotificationRecord{
		Kind: KindRefund, MchID: rf.MchID, OutTradeNo: rf.OutTradeNo, TransactionID: rf.TransactionID,
		OutRefundNo: rf.OutRefundNo, URL: rf.NotifyURL, Body: body,
	}}
	s.keepNotificationLocked(n)
	s.pending++ // a refund's outcome is notified whatever the limit: it was accepted
	s.wg.Add(1)
	go s.deliver(n)
}

// refundNotificationBody builds a refund notification: its req_info is the
// <root> document encrypted with the merchant's key.
func refundNotificationBody(rf *refund, m Merchant) ([]byte, error) {
	total := strconv.FormatInt(rf.TotalFee, 10)
	fee := strconv.FormatInt(rf.RefundFee, 10)
	// WeChat sends the fields in name order.
	info := wxpay.Params{
		{Name: "out_refund_no", Value: rf.OutRefundNo},
		{Name: "out_trade_no", Value: rf.OutTradeNo},
		{Name: "refund_account", Value: rf.refundAccount},
		{Name: "refund_fee", Value: fee},
		{Name: "refund_id", Value: rf.RefundID},
		{Name: "refund_recv_accout", Value: RefundRecvAccount},
		{Name: "refund_request_source", Value: "API"},
		{Name: "refund_status", Value: rf.Status},
		{Name: "settlement_refund_fee", Value: fee},
		{Name: "settlement_total_fee", Value: total},
		{Name: "success_time", Value: ""}, // a success's only, below
		{Name: "total_fee", Value: total},
		{Name: "transaction_id", Value: rf.TransactionID},
	}
	if rf.Status == RefundStatusSuccess {
		info.Set("success_time", rf.SuccessAt.In(wxpay.Beijing).Format(SuccessTimeLayout))
	} else {
		info.Delete("success_time")
	}
	plain, err := wxpay.AppendXML(nil, "root", info)
	if err != nil {
		return nil, fmt.Errorf("encoding req_info: %w", err)
	}
	reqInfo, err := encryptReqInfo(m.Key, plain)
	if err != nil {
		return nil, err
	}
	p := wxpay.Params{
		{Name: "return_code", Value: "SUCCESS"},
		{Name: "appid", Value: rf.appID},
		{Name: "mch_id", Value: rf.MchID},
		{Name: "nonce_str", Value: randomString(alnum, 32)},
		{Name: "req_info", Value: reqInfo},
	}
	body, err := wxpay.EncodeXML(p)
	if err != nil {
		return nil, fmt.Errorf("encoding the notification: %w", err)
	}
	return body, nil
}

// reqInfoKey is the AES-256 key of req_info: the lowercase hex MD5 of the
// API key, as 32 ASCII bytes.
func reqInfoKey(key wxpay.APIKey) []byte {
	sum := md5.Sum([]byte(key))
	return []byte(hex.EncodeToString(sum[:]))
}

// encryptReqInfo encrypts plain as WeChat encrypts req_info: PKCS#7
// padding, AES-256 in ECB mode (each block on its own), base64.
func encryptReqInfo(key wxpay.APIKey, plain []byte) (string, error) {
	block, err := aes.NewCipher(reqInfoKey(key))
	if err != nil {
		return "", fmt.Errorf("req_info key: %w", err)
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize // 1..16: a full block when aligned
	buf := make([]byte, 0, len(plain)+pad)
	buf = append(buf, plain...)
	buf = append(buf, bytes.Repeat([]byte{byte(pad)}, pad)...)
	for i := 0; i < len(buf); i += aes.BlockSize {
		block.Encrypt(buf[i:i+aes.BlockSize], buf[i:i+aes.BlockSize])
	}
	return base64.StdEncoding.EncodeToString(buf), nil
}

// refundQuery answers POST /pay/refundquery. It looks the refunds up by
// refund_id, else out_refund_no (that refund alone), else transaction_id,
// else out_trade_no (all the order's refunds), as WeChat ranks them.
func (s *Simulator) refundQuery(c *apiCall) (apiReply, error) {
	if code, des := checkQuery(c); code != "" {
		return s.fail(c, code, des)
	}
	req := c.req
	refundID, outRefundNo := req.Get("refund_id"), req.Get("out_refund_no")
	txID, outTradeNo := req.Get("transaction_id"), req.Get("out_trade_no")
	if refundID == "" && outRefundNo == "" && txID == "" && outTradeNo == "" {
		return s.fail(c, "LACK_PARAMS", "缺少参数out_refund_no、out_trade_no、transaction_id或refund_id")
	}
	offset := 0
	if v := req.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || strconv.Itoa(n) != v {
			return s.fail(c, "PARAM_ERROR", "offset参数格式错误")
		}
		offset = n
	}

	s.mu.Lock()
	var o *order
	var list []*refund
	switch {
	case refundID != "":
		if rf, ok := s.byRefundID[refundID]; ok && rf.MchID == c.m.MchID {
			o, list = rf.order, []*refund{rf}
		}
	case outRefundNo != "":
		if rf, ok := s.refunds[refundKey{c.m.MchID, outRefundNo}]; ok {
			o, list = rf.order, []*refund{rf}
		}
	default:
		if o = s.lookupOrderLocked(c.m.MchID, txID, outTradeNo); o != nil {
			list = o.refunds
		}
	}
	total := len(list)
	var fields wxpay.Params
	if offset < total {
		page := list[offset:]
		if req.Get("offset") != "" && len(page) > 10 {
			page = page[:10]
		}
		fields = refundQueryFieldsLocked(o, page, total, req.Get("offset") != "")
	}
	s.mu.Unlock()
	if fields == nil {
		return s.fail(c, "REFUNDNOTEXIST", errCodeDes("REFUNDNOTEXIST"))
	}
	s.logf("wxpaysim: refundquery mch_id=%s out_trade_no=%q: %s refunds", c.m.MchID, fields.Get("out_trade_no"), fields.Get("refund_count"))
	return s.succeed(c, fields)
}

// refundQueryFieldsLocked are the fields of a successful refundquery
// answer listing page, indexed from 0.
func refundQueryFieldsLocked(o *order, page []*refund, total int, paged bool) wxpay.Params {
	fee := strconv.FormatInt(o.TotalFee, 10)
	p := make(wxpay.Params, 0, 8+10*len(page))
	p.Set("transaction_id", o.TransactionID)
	p.Set("out_trade_no", o.OutTradeNo)
	p.Set("total_fee", fee)
	p.Set("fee_type", o.feeType())
	p.Set("cash_fee", fee)
	if paged {
		p.Set("total_refund_count", strconv.Itoa(total))
	}
	p.Set("refund_count", strconv.Itoa(len(page)))
	for i, rf := range page {
		n := "_" + strconv.Itoa(i)
		rfee := strconv.FormatInt(rf.RefundFee, 10)
		p.Set("out_refund_no"+n, rf.OutRefundNo)
		p.Set("refund_id"+n, rf.RefundID)
		p.Set("refund_channel"+n, "ORIGINAL")
		p.Set("refund_fee"+n, rfee)
		p.Set("settlement_refund_fee"+n, rfee)
		p.Set("refund_status"+n, rf.Status)
		p.Set("refund_account"+n, rf.refundAccount)
		p.Set("refund_recv_accout"+n, RefundRecvAccount)
		if rf.Status == RefundStatusSuccess {
			p.Set("refund_success_time"+n, rf.SuccessAt.In(wxpay.Beijing).Format(SuccessTimeLayout))
		}
	}
	return p
}
