package wxpayv3

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// JSAPIPayParams are the values that wx.requestPayment (mini programs) and
// WeixinJSBridge's getBrandWCPayRequest (official accounts) take for an
// APIv3 prepay_id.
type JSAPIPayParams struct {
	AppID     string `json:"appId"`
	TimeStamp string `json:"timeStamp"` // Unix seconds, as a string
	NonceStr  string `json:"nonceStr"`
	Package   string `json:"package"`  // "prepay_id=…"
	SignType  string `json:"signType"` // always "RSA"
	PaySign   string `json:"paySign"`
}

// NewJSAPIPayParams signs the JSAPI pay parameters of prepayID with the
// merchant's private key: paySign is SHA256withRSA over
// appId\ntimeStamp\nnonceStr\nprepay_id=…\n, signType "RSA". When nonce is
// empty a random one is used.
func NewJSAPIPayParams(appID, prepayID string, key *rsa.PrivateKey, now time.Time, nonce string) (*JSAPIPayParams, error) {
	if appID == "" || prepayID == "" {
		return nil, errors.New("wxpayv3: jsapi pay params: appid and prepay_id are needed")
	}
	if nonce == "" {
		nonce = NonceStr()
	}
	pp := &JSAPIPayParams{
		AppID:     appID,
		TimeStamp: strconv.FormatInt(now.Unix(), 10),
		NonceStr:  nonce,
		Package:   "prepay_id=" + prepayID,
		SignType:  "RSA",
	}
	sig, err := SignSHA256WithRSA(key, Message(pp.AppID, pp.TimeStamp, pp.NonceStr, pp.Package))
	if err != nil {
		return nil, fmt.Errorf("wxpayv3: jsapi pay params for %s: %w", prepayID, err)
	}
	pp.PaySign = sig
	return pp, nil
}

// APPPayParams are the values the WeChat Open SDK's PayReq takes in a
// native app, for an APIv3 prepay_id.
type APPPayParams struct {
	AppID     string `json:"appid"`
	PartnerID string `json:"partnerid"` // the mchid
	PrepayID  string `json:"prepayid"`
	Package   string `json:"package"` // always "Sign=WXPay"
	NonceStr  string `json:"noncestr"`
	Timestamp string `json:"timestamp"` // Unix seconds, as a string
	Sign      string `json:"sign"`
}

// NewAPPPayParams signs the APP pay parameters of prepayID with the
// merchant's private key: sign is SHA256withRSA over
// appid\ntimestamp\nnoncestr\nprepayid\n. When nonce is empty a random one
// is used.
func NewAPPPayParams(appID, mchID, prepayID string, key *rsa.PrivateKey, now time.Time, nonce string) (*APPPayParams, error) {
	if appID == "" || mchID == "" || prepayID == "" {
		return nil, errors.New("wxpayv3: app pay params: appid, mchid and prepay_id are needed")
	}
	if nonce == "" {
		nonce = NonceStr()
	}
	pp := &APPPayParams{
		AppID:     appID,
		PartnerID: mchID,
		PrepayID:  prepayID,
		Package:   "Sign=WXPay",
		NonceStr:  nonce,
		Timestamp: strconv.FormatInt(now.Unix(), 10),
	}
	sig, err := SignSHA256WithRSA(key, Message(pp.AppID, pp.Timestamp, pp.NonceStr, pp.PrepayID))
	if err != nil {
		return nil, fmt.Errorf("wxpayv3: app pay params for %s: %w", prepayID, err)
	}
	pp.Sign = sig
	return pp, nil
}
