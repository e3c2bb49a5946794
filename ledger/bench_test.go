package ledger

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRecordEvent records distinct events with many in flight at once
// (32 goroutines per GOMAXPROCS), as a burst of WeChat notifications does:
// one fsync per event ("fsync-each") against group commit, on SQLite and
// on PostgreSQL (WXPAY_TEST_POSTGRES), there also with the load spread
// over two gateways' engines on one database.
//
//	go test ./ledger -run '^$' -bench RecordEvent -benchtime 2000x
func BenchmarkRecordEvent(b *testing.B) {
	payload := []byte(`{"id":"evt_0000000000","type":"payment.succeeded","created":"2026-11-27T10:00:00Z","data":{"appid":"wxd930ea5d5a258f4f","mch_id":"10000100","out_trade_no":"demo1001","total_fee":1,"cash_fee":1,"transaction_id":"4200000000000000000000000000","result_code":"SUCCESS"}}`)
	for _, bc := range []struct {
		name string
		opts SQLiteOptions
	}{
		{"fsync-each", SQLiteOptions{DisableGroupCommit: true}},
		{"group-commit", SQLiteOptions{}},
		{"postgres", SQLiteOptions{}},
		// Two gateways on one database, taking the load in turn: each
		// has its own engine (pools, committers), as two processes would.
		{"postgres-2-gateways", SQLiteOptions{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			var s, s2 *sqlStore
			switch bc.name {
			case "postgres", "postgres-2-gateways":
				requirePostgres(b)
				path := testPath(b)
				s, s2 = openPostgresAt(b, path), nil
				if bc.name == "postgres-2-gateways" {
					s2 = openPostgresAt(b, path)
				}
			default:
				s = openTest(b, bc.opts)
			}
			var seq atomic.Int64
			now := time.Now().UTC()
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			c0 := startCost()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					e := &Event{
						ID:         fmt.Sprintf("evt_%010d", i),
						MchID:      "10000100",
						Type:       "payment.succeeded",
						OutTradeNo: fmt.Sprintf("o%d", i),
						Payload:    payload,
						CreatedAt:  now,
					}
					st := s
					if s2 != nil && i%2 == 0 {
						st = s2
					}
					created, err := st.RecordEvent(ctx, e, Change{OrderState: OrderPaid})
					if err != nil || !created {
						b.Errorf("RecordEvent: %v %v", created, err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			n := seq.Load()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
			if e, ok := s.e.(*sqliteEngine); ok {
				b.ReportMetric(float64(n)/float64(max(e.eventTxs.Load(), 1)), "events/tx")
			}
			reportCPU(b, c0)
		})
	}
}
