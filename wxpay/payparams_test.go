package wxpay

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fixed inputs of the pay parameter vectors.
const (
	ppAppID    = "wxd930ea5d5a258f4f"
	ppMchID    = "10000100"
	ppPrepayID = "wx201410272009395522657a690389285100"
	ppNonce    = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
	ppUnix     = 1414561699
)

// The signatures were computed outside this code, with
//
//	python3 -c 'import hashlib,hmac,sys; s=sys.argv[1].encode(); print(hashlib.md5(s).hexdigest().upper(), hmac.new(b"192006250b4c09247ec02edce69f6a2d", s, hashlib.sha256).hexdigest().upper())' "<canonical string>"
//
// over the canonical string in each row (MD5 taken from the first column,
// HMAC-SHA256 from the second). The HMAC-SHA256 APP vector was also checked
// with
//
//	printf '%s' "<canonical string>" | openssl dgst -sha256 -hmac 192006250b4c09247ec02edce69f6a2d
//
// signType is one of the signed JSAPI fields, so the MD5 and HMAC-SHA256
// rows sign different strings.
func TestJSAPIPayParams(t *testing.T) {
	tests := []struct {
		st        SignType
		canonical string
		want      string
	}{
		{
			SignTypeMD5,
			"appId=wxd930ea5d5a258f4f&nonceStr=5K8264ILTKCH16CQ2502SI8ZNMTM67VS&package=prepay_id=wx201410272009395522657a690389285100&signType=MD5&timeStamp=1414561699&key=192006250b4c09247ec02edce69f6a2d",
			"FD19D752A746E5F238A6E53BD99EEBD0",
		},
		{
			SignTypeHMACSHA256,
			"appId=wxd930ea5d5a258f4f&nonceStr=5K8264ILTKCH16CQ2502SI8ZNMTM67VS&package=prepay_id=wx201410272009395522657a690389285100&signType=HMAC-SHA256&timeStamp=1414561699&key=192006250b4c09247ec02edce69f6a2d",
			"FC7A79E4918B4FFA96E836F5AD4A510F31241FB46C14C971D6D7B4F8E15AF262",
		},
	}
	for _, tt := range tests {
		t.Run(string(tt.st), func(t *testing.T) {
			// The time zone of now must not matter: the timestamp is Unix seconds.
			now := time.Unix(ppUnix, 999_000_000).In(Beijing)
			pp, err := NewJSAPIPayParams(ppAppID, ppPrepayID, officialKey, tt.st, now, ppNonce)
			if err != nil {
				t.Fatal(err)
			}
			want := JSAPIPayParams{
				AppID: ppAppID, TimeStamp: "1414561699", NonceStr: ppNonce,
				Package: "prepay_id=" + ppPrepayID, SignType: string(tt.st), PaySign: tt.want,
			}
			if *pp != want {
				t.Errorf("NewJSAPIPayParams =\n%+v\nwant\n%+v", *pp, want)
			}
			// The fields the client signs, under their JSON names, give the
			// canonical string of the vector.
			signed := Params{{"appId", pp.AppID}, {"timeStamp", pp.TimeStamp}, {"nonceStr", pp.NonceStr}, {"package", pp.Package}, {"signType", pp.SignType}}
			if got := refCanonical(signed, officialKey); got != tt.canonical {
				t.Errorf("canonical string\n%s\nwant\n%s", got, tt.canonical)
			}

			b, err := json.Marshal(pp)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			wantJSON := map[string]any{
				"appId": ppAppID, "timeStamp": "1414561699", "nonceStr": ppNonce,
				"package": "prepay_id=" + ppPrepayID, "signType": string(tt.st), "paySign": tt.want,
			}
			// reflect.DeepEqual on map[string]any also checks that every
			// value, timeStamp included, is a JSON string.
			if !reflect.DeepEqual(m, wantJSON) {
				t.Errorf("JSON = %s\nwant the fields %v", b, wantJSON)
			}
			if !strings.Contains(string(b), `"timeStamp":"1414561699"`) {
				t.Errorf("timeStamp is not a JSON string: %s", b)
			}
		})
	}
}

func TestAPPPayParams(t *testing.T) {
	const canonical = "appid=wxd930ea5d5a258f4f&noncestr=5K8264ILTKCH16CQ2502SI8ZNMTM67VS&package=Sign=WXPay&partnerid=10000100&prepayid=wx201410272009395522657a690389285100&timestamp=1414561699&key=192006250b4c09247ec02edce69f6a2d"
	tests := []struct {
		st   SignType
		want string
	}{
		{SignTypeMD5, "1F88CC0F1B0560FF6D5EED1FBB7AE9C0"},
		{SignTypeHMACSHA256, "62E940627B1AE23A7FA957793AD576177906BAFF190D103D0CC6F55B75F8DD2F"},
	}
	for _, tt := range tests {
		t.Run(string(tt.st), func(t *testing.T) {
			pp, err := NewAPPPayParams(ppAppID, ppMchID, ppPrepayID, officialKey, tt.st, time.Unix(ppUnix, 0), ppNonce)
			if err != nil {
				t.Fatal(err)
			}
			want := APPPayParams{
				AppID: ppAppID, PartnerID: ppMchID, PrepayID: ppPrepayID, Package: "Sign=WXPay",
				NonceStr: ppNonce, Timestamp: "1414561699", Sign: tt.want,
			}
			if *pp != want {
				t.Errorf("NewAPPPayParams =\n%+v\nwant\n%+v", *pp, want)
			}
			signed := Params{{"appid", pp.AppID}, {"partnerid", pp.PartnerID}, {"prepayid", pp.PrepayID}, {"package", pp.Package}, {"noncestr", pp.NonceStr}, {"timestamp", pp.Timestamp}}
			if got := refCanonical(signed, officialKey); got != canonical {
				t.Errorf("canonical string\n%s\nwant\n%s", got, canonical)
			}

			b, err := json.Marshal(pp)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			wantJSON := map[string]any{
				"appid": ppAppID, "partnerid": ppMchID, "prepayid": ppPrepayID, "package": "Sign=WXPay",
				"noncestr": ppNonce, "timestamp": "1414561699", "sign": tt.want,
			}
			if !reflect.DeepEqual(m, wantJSON) {
				t.Errorf("JSON = %s\nwant the fields %v", b, wantJSON)
			}
		})
	}
}

func TestPayParamsUnknownSignType(t *testing.T) {
	now := time.Unix(ppUnix, 0)
	if pp, err := NewJSAPIPayParams(ppAppID, ppPrepayID, officialKey, "RSA", now, ppNonce); err == nil {
		t.Errorf("JSAPI with sign type RSA = %+v, want an error", pp)
	}
	if pp, err := NewAPPPayParams(ppAppID, ppMchID, ppPrepayID, officialKey, "", now, ppNonce); err == nil {
		t.Errorf("APP with an empty sign type = %+v, want an error", pp)
	}
}
