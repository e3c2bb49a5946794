// Command seedorders records in a ledger the orders that the load test's
// notifications pay, as if the gateway had placed them: so that the
// intake-known variant of bench/load.sh measures notifications that the
// gateway cross-checks against their order (a read, and the order's state
// set to PAID in the event's transaction), as in production, where the
// gateway placed the orders it is notified of.
//
//	seedorders -ledger bench/out/seeded/ledger.db bench/out/notify-*.xml …
//
// Each file holds one notification per line (bench/gennotify). Every
// notification is verified with the test key first; the order gets its
// merchant, app id, out_trade_no, trade type and total_fee, and is due for
// a reconciliation check 5 minutes on, as the gateway records it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/bench"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

func main() {
	path := flag.String("ledger", "", "the ledger file to create or add to")
	flag.Parse()
	if *path == "" || flag.NArg() == 0 {
		log.Fatal("seedorders: usage: seedorders -ledger <file> <notification files>")
	}
	ctx := context.Background()
	st, err := ledger.OpenSQLite(ctx, ledger.SQLiteOptions{Path: *path})
	if err != nil {
		log.Fatalf("seedorders: %v", err)
	}
	orders := make(chan *ledger.Order, 256)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	n := 0
	for range 64 { // concurrent writes share the ledger's transactions
		wg.Go(func() {
			for o := range orders {
				err := st.PutOrder(ctx, o)
				mu.Lock()
				if err != nil && failed == nil {
					failed = err
				}
				n++
				mu.Unlock()
			}
		})
	}
	now := time.Now()
	for _, file := range flag.Args() {
		if err := readOrders(file, now, orders); err != nil {
			close(orders)
			wg.Wait()
			log.Fatalf("seedorders: %s: %v", file, err)
		}
	}
	close(orders)
	wg.Wait()
	if err := st.Close(); err != nil && failed == nil {
		failed = err
	}
	if failed != nil {
		log.Fatalf("seedorders: %v", failed)
	}
	fmt.Printf("seedorders: %d orders in %s (%.1f s)\n", n, *path, time.Since(now).Seconds())
}

func readOrders(file string, now time.Time, orders chan<- *ledger.Order) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), wxpay.MaxNotificationSize)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		n, err := wxpay.VerifyNotification(sc.Bytes(), bench.Key)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		fee, err := n.TotalFee()
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		orders <- &ledger.Order{
			MchID: n.MchID(), OutTradeNo: n.OutTradeNo(), AppID: n.AppID(), TradeType: n.Get("trade_type"),
			TotalFee: fee, State: ledger.OrderNotPay, CreatedAt: now, ExpiresAt: now.Add(2 * time.Hour), UpdatedAt: now,
			// As the gateway records an order with reconciliation on (the
			// default): first checked 5 minutes after it was placed.
			NextCheckAt: now.Add(5 * time.Minute),
		}
	}
	return sc.Err()
}
