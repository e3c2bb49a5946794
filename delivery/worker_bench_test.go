package delivery

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// countSender takes every event, after delay.
type countSender struct {
	n     atomic.Int64
	delay time.Duration
}

func (c *countSender) Send(context.Context, string, []byte) Result {
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	c.n.Add(1)
	return Result{Status: 204}
}

// countingStore counts the worker's fetches.
type countingStore struct {
	Outbox
	fetches, fetched, nextDue atomic.Int64
}

func (c *countingStore) DueEvents(ctx context.Context, now time.Time, limit int, exclude []string, lease time.Duration) ([]*ledger.Event, error) {
	evs, err := c.Outbox.DueEvents(ctx, now, limit, exclude, lease)
	c.fetches.Add(1)
	c.fetched.Add(int64(len(evs)))
	return evs, err
}

func (c *countingStore) NextDue(ctx context.Context) (time.Time, bool, error) {
	c.nextDue.Add(1)
	return c.Outbox.NextDue(ctx)
}

func (c *countingStore) report(b *testing.B) {
	b.ReportMetric(float64(c.fetched.Load())/float64(max(c.fetches.Load(), 1)), "events/fetch")
	b.ReportMetric(float64(c.nextDue.Load())/float64(b.N), "nextdue/event")
	b.ReportMetric(float64(c.fetches.Load())/float64(b.N), "fetches/event")
}

// written is how many bytes the process has handed to write(2) and
// pwrite(2) so far (wchar in /proc/self/io; 0 where there is none).
func written() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchStore(b *testing.B) ledger.Store {
	st, err := ledger.OpenSQLite(context.Background(), ledger.SQLiteOptions{Path: b.TempDir() + "/ledger.db"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

var benchPayload = []byte(`{"id":"evt_0000000000","type":"payment.succeeded","created":"2026-11-27T10:00:00Z","data":{"appid":"wxd930ea5d5a258f4f","mch_id":"10000100","out_trade_no":"demo1001","total_fee":1,"cash_fee":1,"transaction_id":"4200000000000000000000000000","result_code":"SUCCESS"}}`)

func benchEvent(i int64, now time.Time) *ledger.Event {
	now = now.Add(time.Duration(i)) // distinct times, as real events have
	s := strconv.FormatInt(i, 10)
	return &ledger.Event{ID: "evt_" + s, MchID: "10000100", Type: "payment.succeeded", OutTradeNo: "o" + s,
		TransactionID: "4200" + s, Payload: benchPayload, CreatedAt: now, NextAttemptAt: now}
}

// BenchmarkDrain: a backlog of b.N events, delivered by the worker to a
// backend that takes each at once (Concurrency 8, the gateway's default).
//
//	go test ./delivery -run '^$' -bench . -benchtime 5000x
func BenchmarkDrain(b *testing.B) {
	st := benchStore(b)
	now := time.Now()
	for i := range int64(b.N) {
		if _, err := st.RecordEvent(context.Background(), benchEvent(i, now), ledger.Change{}); err != nil {
			b.Fatal(err)
		}
	}
	snd := &countSender{}
	cs := &countingStore{Outbox: st}
	defer cs.report(b)
	w := New(Config{Store: cs})
	w.SetSender(snd, Policy{Concurrency: 8})
	b.ResetTimer()
	c0, t0, w0 := cpuTime(), time.Now(), written()
	w.Start()
	for snd.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	stopBench(w)
	el, cpu := time.Since(t0), cpuTime()-c0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
	b.ReportMetric(float64(written()-w0)/1024/float64(b.N), "written-KiB/event")
}

// BenchmarkIntakeAndDelivery: events recorded by many goroutines at once
// (each reads its order first and calls Notify after, as the notify route
// does) while the worker delivers them to a backend that answers after
// 500µs; measured until every one is delivered.
func BenchmarkIntakeAndDelivery(b *testing.B) {
	st := benchStore(b)
	snd := &countSender{delay: 500 * time.Microsecond}
	cs := &countingStore{Outbox: st}
	defer cs.report(b)
	w := New(Config{Store: cs})
	w.SetSender(snd, Policy{Concurrency: 8})
	w.Start()
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	c0, t0, w0 := cpuTime(), time.Now(), written()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			e := benchEvent(i, time.Now())
			// The notify route reads the order first.
			if _, err := st.GetOrder(context.Background(), e.MchID, e.OutTradeNo); !errors.Is(err, ledger.ErrNotFound) {
				b.Error(err)
				return
			}
			if _, err := st.RecordEvent(context.Background(), e, ledger.Change{}); err != nil {
				b.Error(err)
				return
			}
			w.Notify()
		}
	})
	intake := time.Since(t0)
	for snd.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	el, cpu := time.Since(t0), cpuTime()-c0
	stopBench(w)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/intake.Seconds(), "intake/s")
	b.ReportMetric(float64(b.N)/el.Seconds(), "delivered/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
	b.ReportMetric(float64(written()-w0)/1024/float64(b.N), "written-KiB/event")
}

func stopBench(w *Worker) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.Stop(ctx)
}
