package gateway_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
)

// The openid token: a vector made outside the code under test, with
//
//	python3 -c "import hmac,hashlib,base64,json
//	key=b'k'*32
//	payload=json.dumps({'a':'wxd930ea5d5a258f4f','o':'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o','e':1796650000},separators=(',',':')).encode()
//	head='v1.'+base64.urlsafe_b64encode(payload).decode().rstrip('=')
//	print(head+'.'+base64.urlsafe_b64encode(hmac.new(key,head.encode(),hashlib.sha256).digest()).decode().rstrip('='))"
const openIDVector = "v1.eyJhIjoid3hkOTMwZWE1ZDVhMjU4ZjRmIiwibyI6Im9VcEY4dU11QUpPX00ycHhiMVE5ek5qV2VTNm8iLCJlIjoxNzk2NjUwMDAwfQ.WahkM2ayyo-zOMephsLyAtqhqGmaxnIuPtZSpHVXJHI"

func TestOpenIDToken(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 32)
	exp := time.Unix(1796650000, 0)
	if got := gateway.SignOpenID(key, "wxd930ea5d5a258f4f", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", exp); got != openIDVector {
		t.Fatalf("SignOpenID = %s, want the vector %s", got, openIDVector)
	}
	app, openid, err := gateway.VerifyOpenID(key, openIDVector, exp.Add(-time.Second))
	if err != nil || app != "wxd930ea5d5a258f4f" || openid != "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" {
		t.Fatalf("VerifyOpenID = %q, %q, %v", app, openid, err)
	}
	head, sig, _ := strings.Cut(strings.TrimPrefix(openIDVector, "v1."), ".")
	for _, c := range []struct {
		name, token string
		key         []byte
		now         time.Time
		says        string
	}{
		{"expired", openIDVector, key, exp, "expired"},
		{"another key", openIDVector, bytes.Repeat([]byte("x"), 32), exp.Add(-time.Minute), "not a token this gateway issued"},
		{"payload changed", "v1." + head[:len(head)-2] + "fX." + sig, key, exp.Add(-time.Minute), "not a token this gateway issued"},
		{"signature cut", openIDVector[:len(openIDVector)-1], key, exp.Add(-time.Minute), "not a token this gateway issued"},
		{"another version", "v2." + head + "." + sig, key, exp.Add(-time.Minute), "not a token this gateway issued"},
		{"not a token", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", key, exp.Add(-time.Minute), "not a token this gateway issued"},
	} {
		if _, _, err := gateway.VerifyOpenID(c.key, c.token, c.now); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want it to say %q", c.name, err, c.says)
		}
	}
}
