package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/gateway/apiv2"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// BenchmarkNotificationIntake measures what the notify route does before it
// answers WeChat SUCCESS: verify the signed XML, check the merchant, look
// the order up, build the event and store it durably with its outbox entry.
// Many notifications are in flight at once (32 per core), as in a burst.
// "fsync-each" commits every notification on its own; "group-commit" lets
// concurrent ones share a transaction and an fsync. The README's
// performance section reports both.
func BenchmarkNotificationIntake(b *testing.B) {
	for _, mode := range []struct {
		name    string
		disable bool
	}{{"fsync-each", true}, {"group-commit", false}} {
		b.Run(mode.name, func(b *testing.B) {
			st, err := ledger.OpenSQLite(context.Background(), ledger.SQLiteOptions{
				Path: filepath.Join(b.TempDir(), "ledger.db"), DisableGroupCommit: mode.disable,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			svc := gateway.New(gateway.Config{Ledger: st})
			m := &gateway.Merchant{Name: "default", MchID: mchID, AppIDs: []string{appID},
				API: apiv2.New(&wxpay.Client{MchID: mchID, Key: apiKey})}
			// WeChat's documents, made before the clock starts: what is
			// measured (time and allocations) is the intake alone.
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = signedNotification(b, int64(i+1))
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					body := bodies[seq.Add(1)-1]
					reply := svc.AcceptPaymentNotification(context.Background(), m, gateway.Notification{Body: body})
					if reply.Status != http.StatusOK {
						b.Fatalf("reply %d %s", reply.Status, reply.Body)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "notifications/s")
		})
	}
}

func signedNotification(b *testing.B, i int64) []byte {
	p := wxpay.Params{
		{Name: "appid", Value: appID}, {Name: "bank_type", Value: "CMC"}, {Name: "cash_fee", Value: "100"},
		{Name: "fee_type", Value: "CNY"}, {Name: "is_subscribe", Value: "N"}, {Name: "mch_id", Value: mchID},
		{Name: "nonce_str", Value: "5d2b6c2a8db53831f7eda20af46e531c"}, {Name: "openid", Value: openID},
		{Name: "out_trade_no", Value: fmt.Sprintf("bench%d", i)}, {Name: "result_code", Value: "SUCCESS"},
		{Name: "return_code", Value: "SUCCESS"}, {Name: "time_end", Value: "20261127120000"}, {Name: "total_fee", Value: "100"},
		{Name: "trade_type", Value: "JSAPI"}, {Name: "transaction_id", Value: fmt.Sprintf("4200%024d", i)},
	}
	sign, err := wxpay.Sign(p, apiKey, wxpay.SignTypeMD5)
	if err != nil {
		b.Fatal(err)
	}
	doc, err := wxpay.EncodeXML(append(p, wxpay.Param{Name: "sign", Value: sign}))
	if err != nil {
		b.Fatal(err)
	}
	return doc
}
