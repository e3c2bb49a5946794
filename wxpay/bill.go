package wxpay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/internal/httpclient"
)

// Bill types of /pay/downloadbill.
const (
	BillTypeAll            = "ALL"             // every successful payment and refund
	BillTypeSuccess        = "SUCCESS"         // successful payments
	BillTypeRefund         = "REFUND"          // refunds
	BillTypeRechargeRefund = "RECHARGE_REFUND" // refunds paid from the recharged balance
)

// DownloadBill downloads the trade bill (对账单) of billDate (yyyyMMdd, a
// Beijing day) and billType (one of the BillType constants; ALL when
// empty), gzipped when gzipped is true, from /pay/downloadbill.
//
// The bill is not a signed document: on success WeChat answers with the
// CSV text itself (or gzip bytes), and DownloadBill returns that stream for
// the caller to copy through and close, without reading it into memory.
// On failure WeChat answers with an unsigned <xml> document, which becomes
// an *APIError: ReturnMsg says what (No Bill Exist for a day without
// trades, Bill Creating before the bill is ready around 10:00, invalid
// bill_date…), and ErrCode carries WeChat's error_code when it gives one.
// The download is safe to repeat, so it fails over to FailoverEndpoint on
// a network error or an HTTP 5xx. Client.Timeout, when set, bounds the
// whole download, until the stream is closed.
func (c *Client) DownloadBill(ctx context.Context, appID, billDate, billType string, gzipped bool) (io.ReadCloser, error) {
	const op = "downloadbill"
	if billType == "" {
		billType = BillTypeAll
	}
	if err := validateBillRequest(appID, billDate, billType); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, billDate, err)
	}
	req := Params{{"appid", appID}, {"bill_date", billDate}, {"bill_type", billType}}
	if gzipped {
		req = append(req, Param{"tar_type", "GZIP"})
	}
	sr, err := c.signRequest(op, "/pay/downloadbill", req)
	if err != nil {
		return nil, err
	}
	hc := c.httpClient()
	try := func(base string) (io.ReadCloser, error) {
		resp, release, idle, err := c.postStream(ctx, hc, base, sr)
		if err != nil {
			if idle.Expired() {
				err = &TransportError{Op: op, Err: fmt.Errorf("no answer within %v: %w", c.Timeout, context.DeadlineExceeded)}
			}
			return nil, err
		}
		rc, err := sniffBill(op, resp, release, gzipped)
		if bs, ok := rc.(*billStream); ok {
			bs.op, bs.idle, bs.timeout = op, idle, c.Timeout
		}
		return rc, err
	}
	rc, _, err := withFailover(ctx, c, op, true, try)
	return rc, err
}

func validateBillRequest(appID, billDate, billType string) error {
	if appID == "" {
		return fieldErrorf("app_id", "is required")
	}
	if _, err := time.ParseInLocation("20060102", billDate, Beijing); err != nil || len(billDate) != 8 {
		return fieldErrorf("bill_date", "must be yyyyMMdd, got %q", billDate)
	}
	switch billType {
	case BillTypeAll, BillTypeSuccess, BillTypeRefund, BillTypeRechargeRefund:
	default:
		return fieldErrorf("bill_type", "must be ALL, SUCCESS, REFUND or RECHARGE_REFUND, got %q", billType)
	}
	return nil
}

// billSniffLen bounds how much of an answer is looked at to tell an <xml>
// refusal from a bill.
const billSniffLen = 64

// sniffBill tells a bill from a refusal by the start of the answer: a
// refusal is an <xml> document, a bill is CSV text or gzip bytes. It waits
// for no more bytes than it needs to tell, so that a bill that trickles in
// is handed over as it comes.
func sniffBill(op string, resp *http.Response, release func(), gzipped bool) (io.ReadCloser, error) {
	fail := func(err error) (io.ReadCloser, error) {
		resp.Body.Close()
		release()
		return nil, err
	}
	br := bufio.NewReader(resp.Body)
	var (
		head  []byte
		isXML bool
	)
	for n := 1; ; n = min(max(n+1, br.Buffered()), billSniffLen) {
		var err error
		head, err = br.Peek(n)
		if err != nil && err != io.EOF {
			return fail(&TransportError{Op: op, Err: err})
		}
		var decided bool
		isXML, decided = sniffXML(head)
		if decided || err == io.EOF || n == billSniffLen {
			break
		}
	}
	if isXML {
		resp.Body = readCloser{br, resp.Body}
		reply, err := readReply(op, resp, release)
		if err != nil {
			return nil, err
		}
		return nil, billRefusal(op, reply)
	}
	if len(head) == 0 {
		return fail(&ResponseError{Op: op, Err: fmt.Errorf("empty answer")})
	}
	if gzipped {
		if magic, _ := br.Peek(2); !bytes.Equal(magic, []byte{0x1f, 0x8b}) {
			return fail(&ResponseError{Op: op, Err: fmt.Errorf("answer is neither gzip nor <xml>")})
		}
	}
	return &billStream{r: br, body: resp.Body, release: release}, nil
}

// sniffXML reports whether the start of an answer is an XML document
// (after an optional byte order mark and white space), and whether head
// is enough to tell.
func sniffXML(head []byte) (isXML, decided bool) {
	const bom = "\ufeff"
	if len(head) < len(bom) && strings.HasPrefix(bom, string(head)) {
		return false, false
	}
	rest := bytes.TrimLeft(bytes.TrimPrefix(head, []byte(bom)), " \t\r\n")
	if len(rest) == 0 {
		return false, false
	}
	for _, start := range []string{"<xml", "<?xml"} {
		if bytes.HasPrefix(rest, []byte(start)) {
			return true, true
		}
		if strings.HasPrefix(start, string(rest)) {
			return false, false
		}
	}
	return false, true
}

// billRefusal turns the <xml> answer of downloadbill into an error.
func billRefusal(op string, reply []byte) error {
	p, err := DecodeXML(reply)
	if err != nil {
		return &ResponseError{Op: op, Err: err}
	}
	code := p.Get("error_code")
	if code == "" {
		code = p.Get("err_code")
	}
	if rc := p.Get("return_code"); rc != "SUCCESS" {
		return &APIError{Op: op, ReturnCode: rc, ReturnMsg: p.Get("return_msg"), ErrCode: code}
	}
	if p.Get("result_code") == "FAIL" {
		return &APIError{
			Op: op, ReturnCode: "SUCCESS", ResultCode: "FAIL", ReturnMsg: p.Get("return_msg"),
			ErrCode: code, ErrCodeDes: p.Get("err_code_des"),
		}
	}
	return &ResponseError{Op: op, Err: fmt.Errorf("answer is an <xml> document, not a bill")}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// billStream is the bill as it arrives; Close closes the connection's body
// and ends the call's Timeout, which each read that brings bytes renews.
type billStream struct {
	r       *bufio.Reader // not embedded: its WriteTo would bypass Read
	body    io.Closer
	release func()
	closed  bool

	op      string
	idle    *httpclient.IdleTimeout // renewed by each read that brings bytes
	timeout time.Duration
}

// Read reads the bill, renewing the Timeout when bytes came.
func (b *billStream) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 && b.idle != nil {
		b.idle.Touch()
	}
	if err != nil && err != io.EOF && b.idle != nil && b.idle.Expired() {
		err = &TransportError{Op: b.op, Err: fmt.Errorf("the download stalled, no byte for %v: %w", b.timeout, context.DeadlineExceeded)}
	}
	return n, err
}

func (b *billStream) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.body.Close()
	b.release()
	return err
}
