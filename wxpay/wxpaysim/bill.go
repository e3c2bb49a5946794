package wxpaysim

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// The bill's header lines. Data lines prefix every field with a backquote
// (`), as WeChat does so that spreadsheets keep numbers as text; lines end
// with CRLF. Every bill_type uses BillHeader's 27 columns.
const (
	BillHeader        = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
	BillSummaryHeader = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
	// BillFeeRate is the fee rate (费率) of every payment: 0.6%, the fee
	// rounded to the fen.
	BillFeeRate = "0.60%"
	// BillReadyHour is the hour (Beijing time) of the day after bill_date
	// from which the bill can be downloaded: WeChat starts generating bills
	// at 9:00 and advises downloading from 10:00. Before it the answer is
	// "Bill Creating".
	BillReadyHour = 10
)

// The bill API's failures: return_code FAIL, return_msg, sometimes an
// error_code, unsigned.
const (
	BillMsgNoBill       = "No Bill Exist"
	BillMsgCreating     = "Bill Creating"
	BillMsgInvalidDate  = "invalid bill_date"
	BillMsgInvalidType  = "invalid bill_type"
	BillMsgInvalidTar   = "invalid tar_type"
	BillMsgMissingParam = "missing parameter"
)

const billLineEnd = "\r\n"

// billFail builds an unsigned failure of downloadbill.
func (s *Simulator) billFail(msg, errorCode string) (apiReply, error) {
	s.logf("wxpaysim: downloadbill: %s", msg)
	p := wxpay.Params{{Name: "return_code", Value: "FAIL"}, {Name: "return_msg", Value: msg}}
	p.SetNonEmpty("error_code", errorCode)
	return encodeReply(p)
}

// billRow is one line of a bill and its amounts in fen.
type billRow struct {
	at                                      time.Time
	fields                                  []string
	settle, refund, fee, total, applyRefund int64
}

// downloadBill answers POST /pay/downloadbill: the day's bill as CSV text,
// or gzip with tar_type GZIP.
func (s *Simulator) downloadBill(c *apiCall) (apiReply, error) {
	req := c.req
	if code, des := checkQuery(c); code != "" {
		if code == "LACK_PARAMS" {
			return s.billFail(BillMsgMissingParam, "20001")
		}
		return s.billFail(des, "20001")
	}
	date := req.Get("bill_date")
	if date == "" {
		return s.billFail(BillMsgMissingParam, "20001")
	}
	day, ok := parseBillDate(date)
	if !ok {
		return s.billFail(BillMsgInvalidDate, "20001")
	}
	billType := req.Get("bill_type")
	switch billType {
	case "":
		billType = "ALL"
	case "ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND":
	default:
		return s.billFail(BillMsgInvalidType, "20001")
	}
	tar := req.Get("tar_type")
	if tar != "" && tar != "GZIP" {
		return s.billFail(BillMsgInvalidTar, "20001")
	}
	now := s.now().In(wxpay.Beijing)
	next := day.AddDate(0, 0, 1)
	switch {
	case day.After(now):
		return s.billFail(BillMsgInvalidDate, "20001")
	case now.Before(next.Add(BillReadyHour * time.Hour)):
		return s.billFail(BillMsgCreating, "")
	}

	rows := s.billRows(c.m.MchID, billType, day, next)
	if len(rows) == 0 {
		return s.billFail(BillMsgNoBill, "20002")
	}
	bill := formatBill(rows)
	s.logf("wxpaysim: downloadbill mch_id=%s bill_date=%s bill_type=%s: %d lines", c.m.MchID, date, billType, len(rows))
	if tar == "" {
		return apiReply{contentType: "text/plain; charset=utf-8", body: bill}, nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(bill); err != nil {
		return apiReply{}, fmt.Errorf("compressing the bill: %w", err)
	}
	if err := zw.Close(); err != nil {
		return apiReply{}, fmt.Errorf("compressing the bill: %w", err)
	}
	return apiReply{contentType: "application/x-gzip", body: buf.Bytes()}, nil
}

// parseBillDate parses yyyyMMdd as the start of that day in Beijing.
func parseBillDate(s string) (time.Time, bool) {
	if len(s) != 8 {
		return time.Time{}, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, false
		}
	}
	t, err := time.ParseInLocation("20060102", s, wxpay.Beijing)
	return t, err == nil
}

// billRows lists the bill's lines: payments made in [from, to) for ALL and
// SUCCESS, refunds accepted in [from, to) for ALL and REFUND, in time order.
func (s *Simulator) billRows(mchID, billType string, from, to time.Time) []billRow {
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	s.mu.Lock()
	defer s.mu.Unlock()
	var rows []billRow
	if billType == "ALL" || billType == "SUCCESS" {
		for _, o := range s.orderList {
			if o.MchID == mchID && o.State == StateSuccess && in(o.paidAt) {
				rows = append(rows, paymentRow(o))
			}
		}
	}
	if billType == "ALL" || billType == "REFUND" {
		for _, rf := range s.refundList {
			if rf.MchID == mchID && in(rf.CreatedAt) {
				rows = append(rows, refundRow(rf))
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b billRow) int { return a.at.Compare(b.at) })
	return rows
}

// feeOf is the 0.6% fee of an amount, rounded half up to the fen.
func feeOf(amount int64) int64 { return (amount*6 + 500) / 1000 }

// orderColumns are the columns 2 to 12 of a line about o: 公众账号ID to
// 货币种类, with 交易状态 state.
func orderColumns(o *order, state string) []string {
	return []string{
		o.AppID, o.MchID, "0", o.Params.Get("device_info"), o.TransactionID, o.OutTradeNo,
		o.openID(), o.TradeType, state, bankType, o.feeType(),
	}
}

func paymentRow(o *order) billRow {
	r := billRow{at: o.paidAt, settle: o.TotalFee, fee: feeOf(o.TotalFee), total: o.TotalFee}
	r.fields = append([]string{billTime(o.paidAt)}, orderColumns(o, "SUCCESS")...)
	r.fields = append(r.fields,
		yuan(r.settle), yuan(0), "0", "0", yuan(0), yuan(0), "", "",
		o.Params.Get("body"), o.Params.Get("attach"), yuanFee(r.fee), BillFeeRate, yuan(r.total), yuan(0), "",
	)
	return r
}

func refundRow(rf *refund) billRow {
	o := rf.order
	r := billRow{at: rf.CreatedAt, refund: rf.RefundFee, fee: -feeOf(rf.RefundFee), applyRefund: rf.RefundFee}
	r.fields = append([]string{billTime(rf.CreatedAt)}, orderColumns(o, "REFUND")...)
	r.fields = append(r.fields,
		yuan(0), yuan(0), rf.RefundID, rf.OutRefundNo, yuan(rf.RefundFee), yuan(0), "ORIGINAL", rf.Status,
		o.Params.Get("body"), o.Params.Get("attach"), yuanFee(r.fee), BillFeeRate, yuan(0), yuan(rf.RefundFee), "",
	)
	return r
}

// formatBill writes the header, the lines and the summary.
func formatBill(rows []billRow) []byte {
	var b bytes.Buffer
	b.WriteString(BillHeader + billLineEnd)
	var sum billRow
	for _, r := range rows {
		writeBillLine(&b, r.fields)
		sum.settle += r.settle
		sum.refund += r.refund
		sum.fee += r.fee
		sum.total += r.total
		sum.applyRefund += r.applyRefund
	}
	b.WriteString(BillSummaryHeader + billLineEnd)
	writeBillLine(&b, []string{
		strconv.Itoa(len(rows)), yuan(sum.settle), yuan(sum.refund), yuan(0), yuanFee(sum.fee), yuan(sum.total), yuan(sum.applyRefund),
	})
	return b.Bytes()
}

func writeBillLine(b *bytes.Buffer, fields []string) {
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('`')
		b.WriteString(f)
	}
	b.WriteString(billLineEnd)
}

func billTime(t time.Time) string { return t.In(wxpay.Beijing).Format(SuccessTimeLayout) }

// yuan formats fen as yuan with 2 decimals.
func yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d", sign, fen/100, fen%100)
}

// yuanFee formats a fee in fen as yuan with 5 decimals, as bills show fees.
func yuanFee(fen int64) string {
	return yuan(fen) + "000"
}
