package wxpayv3

import (
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/internal/httpclient"
)

// BillInfo is the answer of a bill request: where to download the bill and
// the hash to check it against.
type BillInfo struct {
	HashType    string `json:"hash_type"`  // "SHA1"
	HashValue   string `json:"hash_value"` // hex
	DownloadURL string `json:"download_url"`
	// TarType is the tar_type the bill was asked for (TradeBill sets it;
	// not part of WeChat's answer): "GZIP" when the download is the bill
	// compressed with gzip. WeChat's hash_value is then the hash of the
	// bill decompressed (原始账单（gzip需要解压缩）的摘要值), which
	// DownloadBill checks.
	TarType string `json:"-"`
}

// TradeBill asks for the trade bill of a day:
// GET /v3/bill/tradebill?bill_date=yyyy-MM-dd&bill_type=…&tar_type=….
// billType (ALL, SUCCESS, REFUND) and tarType (GZIP) are left out when
// empty. Download the bill with DownloadBill.
func (c *Client) TradeBill(ctx context.Context, billDate, billType, tarType string) (*BillInfo, error) {
	if _, err := time.Parse(time.DateOnly, billDate); err != nil {
		return nil, fmt.Errorf("trade bill %s: %w", billDate, fieldErrorf("bill_date", "is not yyyy-MM-dd"))
	}
	q := url.Values{"bill_date": {billDate}}
	if billType != "" {
		q.Set("bill_type", billType)
	}
	if tarType != "" {
		q.Set("tar_type", tarType)
	}
	const path = "/v3/bill/tradebill"
	var info BillInfo
	status, err := c.do(ctx, http.MethodGet, path, q, nil, &info, true)
	if err == nil && info.DownloadURL == "" {
		err = &ResponseError{Op: http.MethodGet + " " + path, Status: status, Err: fieldErrorf("download_url", "is missing")}
	}
	if err != nil {
		return nil, fmt.Errorf("trade bill %s: %w", billDate, err)
	}
	info.TarType = tarType
	return &info, nil
}

// DownloadBill downloads a bill from info.DownloadURL, which must be on
// the client's endpoint or its FailoverEndpoint (same scheme and host;
// anything else is refused before a signed request leaves). The request is signed like any call.
// WeChat does not sign the bill itself; instead the returned reader hashes
// what it streams and, at the end, returns an error wrapping ErrBillHash
// instead of io.EOF when the SHA-1 does not match info.HashValue, or when
// info.HashType is not SHA1. A GZIP bill (info.TarType) is streamed as it
// comes, compressed, and its hash checked on the decompressed bytes, as
// WeChat computes it; one that does not decompress fails the same way. Use
// the bill only once reading has reached
// io.EOF. The caller closes the reader; Client.Timeout bounds the whole
// download until then. An answer other than 200 is verified and returned
// as an *APIError (or a *VerifyError).
func (c *Client) DownloadBill(ctx context.Context, info *BillInfo) (io.ReadCloser, error) {
	if info == nil || info.DownloadURL == "" {
		return nil, errors.New("download bill: no download_url")
	}
	u, err := url.Parse(info.DownloadURL)
	if err != nil {
		return nil, fmt.Errorf("download bill: download_url does not parse: %v", err)
	}
	ep, err := url.Parse(c.endpoint())
	if err != nil {
		return nil, fmt.Errorf("download bill: endpoint does not parse: %v", err)
	}
	on := func(base *url.URL) bool { return u.Scheme == base.Scheme && strings.EqualFold(u.Host, base.Host) }
	allowed := on(ep)
	if !allowed && c.FailoverEndpoint != "" {
		// The bill was asked for there after a failover.
		fo, err := url.Parse(strings.TrimSuffix(c.FailoverEndpoint, "/"))
		allowed = err == nil && on(fo)
	}
	if !allowed || u.User != nil {
		return nil, fmt.Errorf("download bill: download_url is on %s://%s, not on the endpoint %s://%s (or its failover twin): refused", u.Scheme, u.Host, ep.Scheme, ep.Host)
	}
	op := "GET " + u.Path
	resp, release, idle, err := c.sendStream(ctx, op, http.MethodGet, u.String())
	if err != nil {
		if idle != nil && idle.Expired() {
			err = &TransportError{Op: op, Err: fmt.Errorf("no answer within %v: %w", c.Timeout, context.DeadlineExceeded)}
		}
		return nil, fmt.Errorf("download bill: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer release()
		if c.Verifier == nil {
			resp.Body.Close()
			return nil, fmt.Errorf("download bill: HTTP %d, and the client has no Verifier to read the answer", resp.StatusCode)
		}
		ans, err := readAnswer(op, resp)
		if err == nil {
			err = finish(op, ans, c.Verifier.Verify, nil)
		}
		if err == nil {
			err = &ResponseError{Op: op, Status: ans.status, Err: fmt.Errorf("HTTP %d instead of the bill", ans.status)}
		}
		return nil, fmt.Errorf("download bill: %w", err)
	}
	r := &billReader{op: op, body: resp.Body, release: release, idle: idle, timeout: c.Timeout,
		h: sha1.New(), hashType: info.HashType, want: info.HashValue}
	r.sink = r.h
	if strings.EqualFold(info.TarType, "GZIP") {
		r.gz = newGunzipHasher(r.h)
		r.sink = r.gz
	}
	return r, nil
}

// billReader streams a bill and checks its hash at the end.
type billReader struct {
	op       string
	body     io.ReadCloser
	release  func()
	h        hash.Hash
	idle     *httpclient.IdleTimeout // renewed by each read that brings bytes
	timeout  time.Duration           // the Timeout, for the error
	sink     io.Writer               // where the bytes read go: h, or gz for a GZIP bill
	gz       *gunzipHasher           // a GZIP bill's decompression into h; nil otherwise
	hashType string
	want     string
	err      error // the outcome once the end was reached
}

// Read streams the bill; at its end it returns io.EOF only when the hash matches.
func (r *billReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.body.Read(p)
	if n > 0 {
		r.idle.Touch()
	}
	if _, werr := r.sink.Write(p[:n]); werr != nil {
		r.err = fmt.Errorf("%w: the GZIP bill does not decompress: %v", ErrBillHash, werr)
		return n, r.err
	}
	switch {
	case err == io.EOF:
		r.err = r.check()
		return n, r.err
	case err != nil && r.idle.Expired():
		r.err = &TransportError{Op: r.op, Err: fmt.Errorf("the download stalled, no byte for %v: %w", r.timeout, context.DeadlineExceeded)}
		return n, r.err
	case err != nil:
		r.err = &TransportError{Op: r.op, Err: fmt.Errorf("reading the bill: %w", err)}
		return n, r.err
	}
	return n, nil
}

// check compares the hash of what was read with the announced one.
func (r *billReader) check() error {
	if !strings.EqualFold(r.hashType, "SHA1") {
		return fmt.Errorf("%w: hash_type is %s, only SHA1 can be checked", ErrBillHash, quoteShort(r.hashType))
	}
	want, err := hex.DecodeString(r.want)
	if err != nil || len(want) != sha1.Size {
		return fmt.Errorf("%w: hash_value %s is not a hex SHA-1", ErrBillHash, quoteShort(r.want))
	}
	if r.gz != nil {
		if err := r.gz.finish(); err != nil {
			return fmt.Errorf("%w: the GZIP bill does not decompress: %v", ErrBillHash, err)
		}
	}
	got := r.h.Sum(nil)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return fmt.Errorf("%w: SHA-1 of the download is %x, hash_value is %x (truncated or altered)", ErrBillHash, got, want)
	}
	return io.EOF
}

// Close ends the download and its Timeout.
func (r *billReader) Close() error {
	err := r.body.Close()
	if r.gz != nil {
		r.gz.abort()
	}
	r.release()
	return err
}

// gunzipHasher writes the decompression of the gzip stream written to it
// into a hash, as the stream goes (a goroutine reads it from a pipe).
type gunzipHasher struct {
	pw   *io.PipeWriter
	done chan error // the decompression's outcome, once
	err  error
	over bool
}

var errBillClosed = errors.New("the bill was closed before its end")

func newGunzipHasher(h hash.Hash) *gunzipHasher {
	pr, pw := io.Pipe()
	g := &gunzipHasher{pw: pw, done: make(chan error, 1)}
	go func() {
		zr, err := gzip.NewReader(pr)
		if err == nil {
			if _, err = io.Copy(h, zr); err == nil {
				err = zr.Close()
			}
		}
		// (The copy ends when the pipe does: bytes after a gzip member
		// are read as another member, and fail as one.) Writes fail
		// from now on with the error.
		pr.CloseWithError(err)
		g.done <- err
	}()
	return g
}

// Write passes p on to the decompression.
func (g *gunzipHasher) Write(p []byte) (int, error) { return g.pw.Write(p) }

// finish ends the stream and returns the decompression's outcome.
func (g *gunzipHasher) finish() error {
	if !g.over {
		g.pw.Close()
		g.err, g.over = <-g.done, true
	}
	return g.err
}

// abort stops the decompression (if still running) and waits for it.
func (g *gunzipHasher) abort() {
	if !g.over {
		g.pw.CloseWithError(errBillClosed)
		g.err, g.over = <-g.done, true
	}
}
