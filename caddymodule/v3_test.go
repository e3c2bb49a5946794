package caddymodule_test

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// merchantV3Key is the demo merchant's APIv3 public key, which verifies
// the pay parameters it signs.
func merchantV3Key(t testing.TB) *rsa.PublicKey {
	t.Helper()
	b, err := os.ReadFile("../demo/v3/apiclient_cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wxpayv3.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// The whole loop on APIv3, in each of WeChat's signing modes, through a
// real Caddy: the caller's JSON and the backend's events are the same as
// on v2; WeChat saw v3 calls; the pay parameters are RSA-signed.
func TestV3WholeLoop(t *testing.T) {
	for _, mode := range []string{"public_key", "certificates", "migration"} {
		t.Run(mode, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{v3: mode})
			pub := merchantV3Key(t)
			for i, tt := range []map[string]any{
				{"trade_type": "JSAPI", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "attach": "中文 attach"},
				{"trade_type": "APP", "app_id": testAppID2},
				{"trade_type": "NATIVE", "product_id": "sku-42"},
				{"trade_type": "MWEB", "scene_info": `{"h5_info":{"type":"Wap","wap_url":"https://shop.example.com","wap_name":"shop"}}`},
			} {
				no := fmt.Sprintf("v3%s%d%d", mode[:2], i, time.Now().UnixNano()%1e9)
				order := map[string]any{"out_trade_no": no, "total_fee": 201 + i, "body": "测试商品"}
				for k, v := range tt {
					order[k] = v
				}
				status, out := g.post("/wxpay/orders", testToken, order)
				if status != http.StatusOK {
					t.Fatalf("%s: place: %d %v", tt["trade_type"], status, out)
				}
				o, ok := g.sim.Order(testMchID, no)
				if !ok || o.APIVersion != 3 || o.TotalFee != int64(201+i) {
					t.Fatalf("%s: WeChat's order: %+v, %v", tt["trade_type"], o, ok)
				}
				checkV3PayParams(t, tt["trade_type"].(string), out, pub)
				before := len(g.backend.got())
				pay, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{OutTradeNo: no, MchID: testMchID})
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the event at the backend", 5*time.Second, func() bool { return len(g.backend.got()) > before })
				ev := checkEvent(t, g.backend.got()[before])
				if ev["type"] != "payment.succeeded" || ev["id"] != event.PaymentID(testMchID, pay.TransactionID, no) || ev["order_checked"] != true {
					t.Fatalf("event %v", ev)
				}
				data := ev["data"].(map[string]any)
				if data["total_fee"] != json.Number(fmt.Sprint(201+i)) || data["out_trade_no"] != no || data["mch_id"] != testMchID ||
					data["transaction_id"] != pay.TransactionID || data["trade_type"] != tt["trade_type"] || data["result_code"] != "SUCCESS" {
					t.Errorf("%s: data in v2 names: %v", tt["trade_type"], data)
				}
				if w, ok := data["wechat"].(map[string]any); !ok || w["transaction_id"] != pay.TransactionID {
					t.Errorf("%s: data.wechat: %v", tt["trade_type"], data["wechat"])
				}
				waitFor(t, "the acknowledgement", 5*time.Second, func() bool { return acked(g.sim, no) })
				rec := notificationFor(g.sim, no)
				if last := rec.Attempts[len(rec.Attempts)-1]; last.StatusCode != http.StatusNoContent || rec.APIVersion != 3 {
					t.Errorf("WeChat got %d (API v%d)", last.StatusCode, rec.APIVersion)
				}
			}
		})
	}
}

// checkV3PayParams checks APIv3's client pay parameters and their RSA
// signature, made with the merchant's key.
func checkV3PayParams(t *testing.T, tradeType string, out map[string]any, pub *rsa.PublicKey) {
	t.Helper()
	pp, _ := out["pay_params"].(map[string]any)
	switch tradeType {
	case "JSAPI":
		msg := wxpayv3.Message(fmt.Sprint(pp["appId"]), fmt.Sprint(pp["timeStamp"]), fmt.Sprint(pp["nonceStr"]), fmt.Sprint(pp["package"]))
		if pp["signType"] != "RSA" || pp["package"] != "prepay_id="+fmt.Sprint(out["prepay_id"]) {
			t.Errorf("JSAPI pay_params %v", pp)
		}
		if err := wxpayv3.VerifySHA256WithRSA(pub, msg, fmt.Sprint(pp["paySign"])); err != nil {
			t.Errorf("JSAPI paySign: %v", err)
		}
	case "APP":
		msg := wxpayv3.Message(fmt.Sprint(pp["appid"]), fmt.Sprint(pp["timestamp"]), fmt.Sprint(pp["noncestr"]), fmt.Sprint(pp["prepayid"]))
		if pp["package"] != "Sign=WXPay" || pp["partnerid"] != testMchID || pp["appid"] != testAppID2 {
			t.Errorf("APP pay_params %v", pp)
		}
		if err := wxpayv3.VerifySHA256WithRSA(pub, msg, fmt.Sprint(pp["sign"])); err != nil {
			t.Errorf("APP sign: %v", err)
		}
	case "NATIVE":
		if u, _ := out["code_url"].(string); !strings.HasPrefix(u, "weixin://") || pp != nil {
			t.Errorf("NATIVE answer %v", out)
		}
	case "MWEB":
		if u, _ := out["mweb_url"].(string); !strings.HasPrefix(u, "https://") || pp != nil {
			t.Errorf("MWEB answer %v", out)
		}
	}
}
