package wxpay

import (
	"strconv"
	"time"
)

// JSAPIPayParams are the six values that wx.requestPayment (mini programs)
// and WeixinJSBridge's getBrandWCPayRequest (official accounts) take. The
// JSON names are WeChat's, and they are also the names that are signed.
type JSAPIPayParams struct {
	AppID     string `json:"appId"`
	TimeStamp string `json:"timeStamp"` // Unix seconds, as a string
	NonceStr  string `json:"nonceStr"`
	Package   string `json:"package"` // "prepay_id=…"
	SignType  string `json:"signType"`
	PaySign   string `json:"paySign"`
}

// NewJSAPIPayParams signs the client pay parameters of a JSAPI prepay_id.
func NewJSAPIPayParams(appID, prepayID string, key APIKey, st SignType, now time.Time, nonce string) (*JSAPIPayParams, error) {
	pp := &JSAPIPayParams{
		AppID:     appID,
		TimeStamp: strconv.FormatInt(now.Unix(), 10),
		NonceStr:  nonce,
		Package:   "prepay_id=" + prepayID,
		SignType:  string(st),
	}
	sign, err := Sign(Params{
		{"appId", pp.AppID}, {"nonceStr", pp.NonceStr}, {"package", pp.Package},
		{"signType", pp.SignType}, {"timeStamp", pp.TimeStamp},
	}, key, st)
	if err != nil {
		return nil, err
	}
	pp.PaySign = sign
	return pp, nil
}

// APPPayParams are the values the WeChat Open SDK's PayReq takes in a
// native app.
type APPPayParams struct {
	AppID     string `json:"appid"`
	PartnerID string `json:"partnerid"` // the mch_id
	PrepayID  string `json:"prepayid"`
	Package   string `json:"package"` // always "Sign=WXPay"
	NonceStr  string `json:"noncestr"`
	Timestamp string `json:"timestamp"`
	Sign      string `json:"sign"`
}

// NewAPPPayParams signs the client pay parameters of an APP prepay_id.
func NewAPPPayParams(appID, mchID, prepayID string, key APIKey, st SignType, now time.Time, nonce string) (*APPPayParams, error) {
	pp := &APPPayParams{
		AppID:     appID,
		PartnerID: mchID,
		PrepayID:  prepayID,
		Package:   "Sign=WXPay",
		NonceStr:  nonce,
		Timestamp: strconv.FormatInt(now.Unix(), 10),
	}
	sign, err := Sign(Params{
		{"appid", pp.AppID}, {"noncestr", pp.NonceStr}, {"package", pp.Package},
		{"partnerid", pp.PartnerID}, {"prepayid", pp.PrepayID}, {"timestamp", pp.Timestamp},
	}, key, st)
	if err != nil {
		return nil, err
	}
	pp.Sign = sign
	return pp, nil
}
