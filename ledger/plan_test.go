package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestPlanTmp(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for i := range 1000 {
		mustRecord(t, s, ev(fmt.Sprintf("evt_%04d", i), "m", fmt.Sprintf("o%d", i), at(0).Add(time.Duration(i))), "")
	}
	for _, q := range []string{dueQuery(s.d, 8), qNextDue} {
		rows, err := s.fast.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, toNs(at(100)), "a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b", 8)
		if err != nil {
			rows, err = s.fast.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q)
			if err != nil {
				t.Fatal(err)
			}
		}
		for rows.Next() {
			var id, parent, nu int
			var detail string
			rows.Scan(&id, &parent, &nu, &detail)
			t.Log(id, parent, detail)
		}
		rows.Close()
	}
	ex := []string{"evt_0001", "evt_0002", "evt_0003"}
	for _, vary := range []bool{false, true, false, true} {
		start := time.Now()
		for i := range 200 {
			now := at(100)
			if vary {
				now = now.Add(time.Duration(i))
			}
			if _, err := s.DueEvents(ctx, now, 8, ex); err != nil {
				t.Fatal(err)
			}
		}
		t.Log("due vary", vary, time.Since(start)/200)
	}
	start := time.Now()
	for range 200 {
		s.NextDue(ctx)
	}
	t.Log("next", time.Since(start)/200)
	start = time.Now()
	for range 200 {
		s.GetOrder(ctx, "m", "x")
	}
	t.Log("getorder", time.Since(start)/200)
}
