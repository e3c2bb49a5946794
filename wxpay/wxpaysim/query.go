package wxpaysim

import (
	"strconv"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// tradeStateDesc is WeChat's trade_state_desc of a trade_state.
func tradeStateDesc(state string) string {
	switch state {
	case StateSuccess:
		return "支付成功"
	case StateRefund:
		return "订单发生过退款，退款详情请查询退款单"
	case StateNotPay:
		return "订单未支付"
	case StateClosed:
		return "订单已关闭"
	case StatePayError:
		return "支付失败，请重新下单支付"
	}
	return state
}

// orderRef reads the order a query names: transaction_id first (WeChat
// prefers it), else out_trade_no. It returns an err_code when the request
// names none or a malformed one.
func orderRef(req wxpay.Params) (txID, outTradeNo, code, des string) {
	txID, outTradeNo = req.Get("transaction_id"), req.Get("out_trade_no")
	switch {
	case txID == "" && outTradeNo == "":
		return "", "", "LACK_PARAMS", "缺少参数out_trade_no或transaction_id"
	case len(txID) > 32:
		return "", "", "PARAM_ERROR", "transaction_id参数长度有误"
	case txID == "" && wxpay.ValidateOutTradeNo("out_trade_no", outTradeNo) != nil:
		return "", "", "PARAM_ERROR", "out_trade_no参数格式错误"
	}
	return txID, outTradeNo, "", ""
}

// lookupOrderLocked finds a merchant's order by transaction_id, else by
// out_trade_no.
func (s *Simulator) lookupOrderLocked(mchID, txID, outTradeNo string) *order {
	if txID != "" {
		if o, ok := s.byTxID[txID]; ok && o.MchID == mchID {
			return o
		}
		return nil
	}
	return s.orders[orderKey{mchID, outTradeNo}]
}

// tradeStateLocked is the order's trade_state as orderquery answers it.
func (o *order) tradeStateLocked() string {
	if o.State == StateSuccess && len(o.refunds) > 0 {
		return StateRefund
	}
	return o.State
}

// openID is the payer's openid as notifications and queries carry it.
func (o *order) openID() string {
	if o.TradeType == wxpay.TradeTypeJSAPI {
		return o.Params.Get("openid")
	}
	return OpenIDOther
}

// feeType is the order's currency.
func (o *order) feeType() string {
	if ft := o.Params.Get("fee_type"); ft != "" {
		return ft
	}
	return "CNY"
}

// queryFieldsLocked are the fields of a successful orderquery answer.
func (o *order) queryFieldsLocked() wxpay.Params {
	state := o.tradeStateLocked()
	p := make(wxpay.Params, 0, 16)
	switch state {
	case StateSuccess, StateRefund:
		fee := strconv.FormatInt(o.TotalFee, 10)
		p.SetNonEmpty("device_info", o.Params.Get("device_info"))
		p.Set("openid", o.openID())
		p.Set("is_subscribe", "N")
		p.Set("trade_type", o.TradeType)
		p.Set("bank_type", bankType)
		p.Set("total_fee", fee)
		p.Set("fee_type", o.feeType())
		p.Set("cash_fee", fee)
		p.Set("transaction_id", o.TransactionID)
		p.Set("out_trade_no", o.OutTradeNo)
		p.SetNonEmpty("attach", o.Params.Get("attach"))
		p.Set("time_end", o.paidAt.In(wxpay.Beijing).Format(wxpay.TimeLayout))
	default:
		p.Set("out_trade_no", o.OutTradeNo)
	}
	p.Set("trade_state", state)
	p.Set("trade_state_desc", tradeStateDesc(state))
	return p
}

// orderQuery answers POST /pay/orderquery.
func (s *Simulator) orderQuery(c *apiCall) (apiReply, error) {
	if code, des := checkQuery(c); code != "" {
		return s.fail(c, code, des)
	}
	txID, outTradeNo, code, des := orderRef(c.req)
	if code != "" {
		return s.fail(c, code, des)
	}
	s.mu.Lock()
	o := s.lookupOrderLocked(c.m.MchID, txID, outTradeNo)
	var fields wxpay.Params
	if o != nil {
		fields = o.queryFieldsLocked()
	}
	s.mu.Unlock()
	if o == nil {
		return s.fail(c, "ORDERNOTEXIST", errCodeDes("ORDERNOTEXIST"))
	}
	s.logf("wxpaysim: orderquery mch_id=%s out_trade_no=%q: %s", c.m.MchID, fields.Get("out_trade_no"), fields.Get("trade_state"))
	return s.succeed(c, fields)
}

// closeOrder answers POST /pay/closeorder: an order not paid becomes
// CLOSED; a paid one answers ORDERPAID, a closed one ORDERCLOSED.
func (s *Simulator) closeOrder(c *apiCall) (apiReply, error) {
	if code, des := checkQuery(c); code != "" {
		return s.fail(c, code, des)
	}
	outTradeNo := c.req.Get("out_trade_no")
	switch {
	case outTradeNo == "":
		return s.fail(c, "LACK_PARAMS", "缺少参数out_trade_no")
	case wxpay.ValidateOutTradeNo("out_trade_no", outTradeNo) != nil:
		return s.fail(c, "PARAM_ERROR", "out_trade_no参数格式错误")
	}
	s.mu.Lock()
	code := ""
	o, ok := s.orders[orderKey{c.m.MchID, outTradeNo}]
	switch {
	case !ok:
		code = "ORDERNOTEXIST"
	case o.State == StateSuccess:
		code = "ORDERPAID"
	case o.State == StateClosed:
		code = "ORDERCLOSED"
	default:
		o.State = StateClosed
	}
	s.mu.Unlock()
	if code != "" {
		return s.fail(c, code, errCodeDes(code))
	}
	s.logf("wxpaysim: closeorder mch_id=%s out_trade_no=%q: closed", c.m.MchID, outTradeNo)
	return s.succeed(c, wxpay.Params{{Name: "result_msg", Value: "OK"}})
}
