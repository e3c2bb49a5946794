package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// BenchmarkNotificationIntake measures what the notify route does before it
// answers WeChat SUCCESS: verify the signed XML, check it against the order
// ledger, build the event and store it durably with its outbox entry. Many
// notifications are in flight at once (32 per core), as in a burst.
// "fsync-each" commits every notification on its own; "group-commit" lets
// concurrent ones share a transaction and an fsync. The README's
// performance section reports both.
func BenchmarkNotificationIntake(b *testing.B) {
	const key wxpay.APIKey = "192006250b4c09247ec02edce69f6a2d"
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
			app := &App{logger: zap.NewNop(), ledger: &ledgerHandle{store: st, worker: delivery.New(delivery.Config{Store: st})}}
			m := &merchant{name: "default", mchID: "10000100", appIDs: []string{"wxd930ea5d5a258f4f"}, key: key}
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					body := signedNotification(b, key, i)
					n, err := wxpay.VerifyNotification(body, key)
					if err != nil {
						b.Fatal(err)
					}
					if _, created, err := app.recordNotification(context.Background(), m, n, time.Now()); err != nil || !created {
						b.Fatalf("record: created=%v err=%v", created, err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "notifications/s")
		})
	}
}

func signedNotification(b *testing.B, key wxpay.APIKey, i int64) []byte {
	p := wxpay.Params{
		{Name: "appid", Value: "wxd930ea5d5a258f4f"}, {Name: "bank_type", Value: "CMC"}, {Name: "cash_fee", Value: "100"},
		{Name: "fee_type", Value: "CNY"}, {Name: "is_subscribe", Value: "N"}, {Name: "mch_id", Value: "10000100"},
		{Name: "nonce_str", Value: "5d2b6c2a8db53831f7eda20af46e531c"}, {Name: "openid", Value: "oUpF8uMEb4qRXf22hE3X68TekukE"},
		{Name: "out_trade_no", Value: fmt.Sprintf("bench%d", i)}, {Name: "result_code", Value: "SUCCESS"},
		{Name: "return_code", Value: "SUCCESS"}, {Name: "time_end", Value: "20261127120000"}, {Name: "total_fee", Value: "100"},
		{Name: "trade_type", Value: "JSAPI"}, {Name: "transaction_id", Value: fmt.Sprintf("4200%024d", i)},
	}
	sign, err := wxpay.Sign(p, key, wxpay.SignTypeMD5)
	if err != nil {
		b.Fatal(err)
	}
	doc, err := wxpay.EncodeXML(append(p, wxpay.Param{Name: "sign", Value: sign}))
	if err != nil {
		b.Fatal(err)
	}
	return doc
}
