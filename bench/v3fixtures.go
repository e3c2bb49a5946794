package bench

import (
	"crypto/rsa"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// APIv3 credentials of the benchmarks and the load test: the demo's
// (demo/gen_v3.sh), never a real merchant's.
const (
	V3PublicKeyID = "PUB_KEY_ID_0110000100202612020000000000000001"
	V3Key         = wxpayv3.APIv3Key("caddywxpaydemoapiv3key0123456789")
)

// V3Keys are the demo's APIv3 keys: the merchant's private key, its
// certificate's serial, and the private half of the WeChat Pay public key
// (which WeChat signs with), read from root/demo/v3.
type V3Keys struct {
	Merchant       *rsa.PrivateKey
	MerchantSerial string
	WeChat         *rsa.PrivateKey
}

// LoadV3Keys reads the demo's APIv3 keys under root (the repository).
func LoadV3Keys(root string) (*V3Keys, error) {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(root, "demo", "v3", name)) }
	var k V3Keys
	b, err := read("apiclient_key.pem")
	if err == nil {
		k.Merchant, err = wxpayv3.ParsePrivateKey(b)
	}
	if err == nil {
		b, err = read("apiclient_cert.pem")
	}
	if err == nil {
		cert, cerr := wxpayv3.ParseCertificate(b)
		if err = cerr; err == nil {
			k.MerchantSerial = wxpayv3.CertificateSerial(cert)
		}
	}
	if err == nil {
		b, err = read("sim_pub_key_private.pem")
	}
	if err == nil {
		k.WeChat, err = wxpayv3.ParsePrivateKey(b)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: the demo's APIv3 keys: %w", err)
	}
	return &k, nil
}

// V3PrepayAnswer is WeChat's answer to a JSAPI prepay on APIv3, signed at
// now with the WeChat Pay public key's private half: the headers and the
// body.
func V3PrepayAnswer(wechat *rsa.PrivateKey, now time.Time) (http.Header, []byte, error) {
	body := []byte(`{"prepay_id":"` + PrepayID + `"}`)
	ts, nonce := strconv.FormatInt(now.Unix(), 10), Nonce
	sig, err := wxpayv3.SignSHA256WithRSA(wechat, wxpayv3.Message(ts, nonce, string(body)))
	if err != nil {
		return nil, nil, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(wxpayv3.HeaderTimestamp, ts)
	h.Set(wxpayv3.HeaderNonce, nonce)
	h.Set(wxpayv3.HeaderSignature, sig)
	h.Set(wxpayv3.HeaderSerial, V3PublicKeyID)
	h.Set(wxpayv3.HeaderSignatureType, wxpayv3.AuthScheme)
	h.Set(wxpayv3.HeaderRequestID, "bench")
	return h, body, nil
}
