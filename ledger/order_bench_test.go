package ledger

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
)

// reqCtx is a cancellable context, as an HTTP request's is (the driver
// watches those, which costs more than context.Background).
func reqCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	return ctx
}

// cpuTime is the process's CPU time so far (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// cost is where a benchmark's CPU and write counters started.
type cost struct {
	cpu   time.Duration
	wrote int64
}

func startCost() cost { return cost{cpuTime(), written()} }

// reportCPU reports the CPU time per operation since c (all goroutines,
// the committer's included), and the bytes written per operation (WAL
// frames, checkpoints).
func reportCPU(b *testing.B, c cost) {
	b.ReportMetric(float64((cpuTime()-c.cpu).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(written()-c.wrote)/1024/float64(b.N), "written-KiB/op")
}

func benchOrder(i int64, now time.Time) *Order {
	return &Order{
		MchID: "10000100", OutTradeNo: "bench" + strconv.FormatInt(i, 10), AppID: "wxd930ea5d5a258f4f",
		TradeType: "JSAPI", TotalFee: 1, ContentHash: "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
		PrepayID: "wx201411101639507cbf6ffd8b0779950874", State: OrderNotPay, CreatedAt: now, UpdatedAt: now,
	}
}

// BenchmarkPutOrder inserts distinct orders, many at once (32 goroutines
// per GOMAXPROCS), as the order route does under load.
//
//	go test ./ledger -run '^$' -bench 'PutOrder|GetOrder|OrderPath' -benchmem
func BenchmarkPutOrder(b *testing.B) {
	ctx := reqCtx(b)
	s := openTest(b)
	var seq atomic.Int64
	now := time.Now().UTC()
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := startCost()
	defer reportCPU(b, c0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.PutOrder(ctx, benchOrder(seq.Add(1), now)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(max(s.sqlite().writeTxs.Load(), 1)), "orders/tx")
}

// BenchmarkGetOrder reads existing orders, many at once.
func BenchmarkGetOrder(b *testing.B) {
	ctx := reqCtx(b)
	s := openTest(b)
	now := time.Now().UTC()
	const n = 1000
	for i := range int64(n) {
		if err := s.PutOrder(ctx, benchOrder(i, now)); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := startCost()
	defer reportCPU(b, c0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o, err := s.GetOrder(ctx, "10000100", "bench"+strconv.FormatInt(seq.Add(1)%n, 10))
			if err != nil || o.State != OrderNotPay {
				b.Error(o, err)
				return
			}
		}
	})
}

// BenchmarkOrderPath is what placing a new order costs the ledger: a
// GetOrder that finds nothing, a PutOrder (the record before WeChat is
// asked), then a RecordPrepay (WeChat's answer).
func BenchmarkOrderPath(b *testing.B) {
	ctx := reqCtx(b)
	s := openTest(b)
	var seq atomic.Int64
	now := time.Now().UTC()
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := startCost()
	defer reportCPU(b, c0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o := benchOrder(seq.Add(1), now)
			o.PrepayID = "" // recorded before WeChat answers
			if _, err := s.GetOrder(ctx, o.MchID, o.OutTradeNo); !errors.Is(err, ErrNotFound) {
				b.Error(err)
				return
			}
			if err := s.PutOrder(ctx, o); err != nil {
				b.Error(err)
				return
			}
			o.PrepayID = "wx" + o.OutTradeNo
			if err := s.RecordPrepay(ctx, o); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOrderFlow is the ledger's part of placing orders as the gateway
// does under load: 50 requests at a time (wrk -c50), each a GetOrder that
// finds nothing, a PutOrder, then WeChat's answer (a wait), then a
// RecordPrepay. The waits
// spread the writes out in time, as real traffic does, so that the
// committer sees them arrive one by one rather than in a burst.
func BenchmarkOrderFlow(b *testing.B) {
	ctx := reqCtx(b)
	s := openTest(b)
	var seq atomic.Int64
	now := time.Now().UTC()
	b.SetParallelism(25) // × GOMAXPROCS 2 = 50
	b.ReportAllocs()
	b.ResetTimer()
	c0 := startCost()
	defer reportCPU(b, c0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o := benchOrder(seq.Add(1), now)
			o.PrepayID = "" // recorded before WeChat answers
			if _, err := s.GetOrder(ctx, o.MchID, o.OutTradeNo); !errors.Is(err, ErrNotFound) {
				b.Error(err)
				return
			}
			if err := s.PutOrder(ctx, o); err != nil {
				b.Error(err)
				return
			}
			time.Sleep(2 * time.Millisecond)
			o.PrepayID = "wx" + o.OutTradeNo
			if err := s.RecordPrepay(ctx, o); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(max(s.sqlite().writeTxs.Load(), 1)), "orders/tx")
}
