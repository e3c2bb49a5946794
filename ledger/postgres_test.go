package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The PostgreSQL engine's own tests: what several gateways on one database
// rely on. The rest of the suite runs on it through forEachEngine.

// Gateways starting at once migrate the schema once, under the advisory
// lock: every one opens, and each version is recorded once.
func TestPostgresConcurrentMigration(t *testing.T) {
	requirePostgres(t)
	path := testPath(t)
	openPostgresAt(t, path) // creates the schema (and migrates it)
	s := openPostgresAt(t, path)
	// Empty the schema again, then open four at once.
	ctx := context.Background()
	for _, q := range []string{`DROP TABLE attempts`, `DROP TABLE events`, `DROP TABLE orders`, `DROP TABLE leases`, `DROP TABLE refunds`, `DROP TABLE schema_migrations`} {
		if _, err := s.e.exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close()
	var wg sync.WaitGroup
	stores := make([]*sqlStore, 4)
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i] = openPostgresAt(t, path)
		}()
	}
	wg.Wait()
	var n, distinct, latest int
	if err := stores[0].e.reader().QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM schema_migrations`).Scan(&n, &distinct, &latest); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations()) || distinct != n || latest != len(migrations()) {
		t.Fatalf("schema_migrations: %d rows, %d versions, latest %d; want %d each", n, distinct, latest, len(migrations()))
	}
	mustRecord(t, stores[3], ev("evt_after", "m", "o1", at(0)), "")
}

// Two gateways recording the same notifications at the same moment create
// each event once: the primary key decides, not a read before the write.
func TestPostgresDuplicatesAcrossGateways(t *testing.T) {
	requirePostgres(t)
	path := testPath(t)
	a, b := openPostgresAt(t, path), openPostgresAt(t, path)
	ctx := context.Background()
	const n = 40
	for i := range n {
		if err := a.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: fmt.Sprintf("o%02d", i), TotalFee: 100, CreatedAt: at(0)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	created := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		for _, s := range []*sqlStore{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("evt_%02d", i)
				ok, err := s.RecordEvent(ctx, ev(id, "m", fmt.Sprintf("o%02d", i), at(1)),
					Change{OrderState: OrderPaid, Expect: OrderFigures{Check: true, TotalFee: 100, CheckTotalFee: true}})
				if err != nil {
					t.Errorf("%s: %v", id, err)
					return
				}
				if ok {
					mu.Lock()
					created[id]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for i := range n {
		if id := fmt.Sprintf("evt_%02d", i); created[id] != 1 {
			t.Errorf("%s created %d times", id, created[id])
		}
	}
	counts, err := b.CountEvents(ctx)
	if err != nil || counts[EventPending] != n {
		t.Fatalf("counts %v, %v; want %d pending", counts, err, n)
	}
	o, err := b.GetOrder(ctx, "m", "o07")
	if err != nil || o.State != OrderPaid {
		t.Fatalf("order %+v, %v", o, err)
	}
}

// Two delivery workers claim disjoint events; a claim ends with its
// attempt, or when its lease expires (the worker died).
func TestPostgresClaims(t *testing.T) {
	requirePostgres(t)
	path := testPath(t)
	a, b := openPostgresAt(t, path), openPostgresAt(t, path)
	ctx := context.Background()
	const n = 60
	for i := range n {
		mustRecord(t, a, ev(fmt.Sprintf("evt_%02d", i), "m", fmt.Sprintf("o%02d", i), at(0)), "")
	}
	// Concurrent claims, 10 at a time, until nothing is left.
	var mu sync.Mutex
	claimedBy := map[string]string{}
	var wg sync.WaitGroup
	for _, w := range []struct {
		name string
		s    *sqlStore
	}{{"a", a}, {"b", b}, {"a2", a}, {"b2", b}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := w.s.DueEvents(ctx, at(1), 10, nil, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, e := range got {
					if prev, ok := claimedBy[e.ID]; ok {
						t.Errorf("%s claimed by %s and %s", e.ID, prev, w.name)
					}
					claimedBy[e.ID] = w.name
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(claimedBy) != n {
		t.Fatalf("%d events claimed, want %d", len(claimedBy), n)
	}
	// While claimed, nobody takes them; NextDue says when the claims end.
	if got, _ := b.DueEvents(ctx, at(30), 100, nil, time.Minute); len(got) != 0 {
		t.Fatalf("claimed events taken again: %v", ids(got))
	}
	if next, ok, err := b.NextDue(ctx); err != nil || !ok || !next.Equal(at(61)) {
		t.Fatalf("NextDue = %v, %v, %v; want the claims' end %v", next, ok, err, at(61))
	}
	// An attempt recorded ends its event's claim: the retry is due at its
	// time, for any worker.
	if err := a.RecordAttempt(ctx, Attempt{EventID: "evt_00", At: at(2), Status: 503, ClaimedUntil: at(61)}, Outcome{RetryAt: at(5)}); err != nil {
		t.Fatal(err)
	}
	if err := a.RecordAttempt(ctx, Attempt{EventID: "evt_01", At: at(2), Status: 200, ClaimedUntil: at(61)}, Outcome{Delivered: true}); err != nil {
		t.Fatal(err)
	}
	got, err := b.DueEvents(ctx, at(6), 100, nil, time.Minute)
	if err != nil || !slices.Equal(ids(got), []string{"evt_00"}) {
		t.Fatalf("after the attempts: due %v, %v; want [evt_00]", ids(got), err)
	}
	// The other claims expire at 61: then any worker takes them over.
	got, err = b.DueEvents(ctx, at(62), 100, nil, time.Minute)
	if err != nil || len(got) != n-2 {
		t.Fatalf("after the leases: %d due, %v; want %d", len(got), err, n-2)
	}
	if !slices.IsSortedFunc(got, func(x, y *Event) int { return strings.Compare(x.ID, y.ID) }) {
		t.Fatalf("claimed events out of order: %v", ids(got))
	}
	if !got[0].ClaimedUntil.Equal(at(122)) {
		t.Fatalf("ClaimedUntil = %v, want %v", got[0].ClaimedUntil, at(122))
	}
	// The first worker's attempt under its expired claim is recorded late:
	// it does not end the claim b took over, so nobody else takes the
	// event while b sends it.
	late := got[0].ID
	if err := a.RecordAttempt(ctx, Attempt{EventID: late, At: at(63), Status: 503, ClaimedUntil: at(61)}, Outcome{RetryAt: at(64)}); err != nil {
		t.Fatal(err)
	}
	if again, _ := a.DueEvents(ctx, at(70), 100, nil, time.Minute); slices.Contains(ids(again), late) {
		t.Fatalf("%s taken again while b's claim runs", late)
	}
	// b's own record ends b's claim.
	if err := b.RecordAttempt(ctx, Attempt{EventID: late, At: at(71), Status: 503, ClaimedUntil: at(122)}, Outcome{RetryAt: at(72)}); err != nil {
		t.Fatal(err)
	}
	if again, _ := a.DueEvents(ctx, at(73), 100, nil, time.Minute); !slices.Contains(ids(again), late) {
		t.Fatalf("%s not due after b's attempt ended its claim: %v", late, ids(again))
	}
}

// A database that cannot be reached fails the open quickly, with an error
// that says where and leaves the password out.
func TestPostgresUnreachable(t *testing.T) {
	requirePostgres(t)
	start := time.Now()
	_, err := OpenPostgres(context.Background(), PostgresOptions{
		DSN: "postgres://wxpay:s3cretpassw0rd@127.0.0.1:1/ledger?sslmode=disable", ConnectTimeout: time.Second})
	if err == nil {
		t.Fatal("opened a database on port 1")
	}
	if strings.Contains(err.Error(), "s3cretpassw0rd") {
		t.Fatalf("the error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("the error does not say where: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := OpenPostgres(context.Background(), PostgresOptions{DSN: "postgres://[::1"}); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a malformed DSN: %v", err)
	}
}

// A worker that stops gives its queued events' claims back: another
// gateway takes them at once; a claim taken over since is left alone.
func TestPostgresReleaseClaims(t *testing.T) {
	requirePostgres(t)
	path := testPath(t)
	a, b := openPostgresAt(t, path), openPostgresAt(t, path)
	ctx := context.Background()
	for i := range 3 {
		mustRecord(t, a, ev(fmt.Sprintf("evt_%d", i), "m", fmt.Sprintf("o%d", i), at(0)), "")
	}
	got, err := a.DueEvents(ctx, at(1), 10, nil, time.Minute)
	if err != nil || len(got) != 3 {
		t.Fatalf("claimed %v, %v", ids(got), err)
	}
	stale := *got[2]
	stale.ClaimedUntil = at(5) // not the claim the event has
	if err := a.ReleaseClaims(ctx, []*Event{got[0], got[1], &stale}); err != nil {
		t.Fatal(err)
	}
	again, err := b.DueEvents(ctx, at(2), 10, nil, time.Minute)
	if err != nil || !slices.Equal(ids(again), []string{"evt_0", "evt_1"}) {
		t.Fatalf("after the release: %v, %v; want evt_0 and evt_1 (evt_2's claim is not the one given back)", ids(again), err)
	}
}

// A late record of an attempt whose claim expired, and which another
// gateway took over, delivered and recorded, leaves the take-over's
// outcome (before: the late "dead" undid the delivery).
func TestLateAttemptLeavesTheTakeOver(t *testing.T) {
	requirePostgres(t)
	path := testPath(t)
	a, b := openPostgresAt(t, path), openPostgresAt(t, path)
	ctx := context.Background()
	mustRecord(t, a, ev("evt_1", "m", "o1", at(0)), "")
	got, err := a.DueEvents(ctx, at(1), 10, nil, time.Minute) // a's claim, until 61
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	aClaim := got[0].ClaimedUntil
	got, err = b.DueEvents(ctx, at(62), 10, nil, time.Minute) // taken over, until 122
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if err := b.RecordAttempt(ctx, Attempt{EventID: "evt_1", At: at(63), Status: 200, ClaimedUntil: got[0].ClaimedUntil}, Outcome{Delivered: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.RecordAttempt(ctx, Attempt{EventID: "evt_1", At: at(50), Duration: 15 * time.Second, Error: "timeout", ClaimedUntil: aClaim}, Outcome{Dead: true}); err != nil {
		t.Fatal(err)
	}
	e, atts, err := b.GetEvent(ctx, "evt_1")
	if err != nil {
		t.Fatal(err)
	}
	if e.State != EventDelivered || e.DeliveredAt.IsZero() || e.LastStatus != 200 || e.Attempts != 2 || len(atts) != 2 {
		t.Fatalf("after a's late record: %s, delivered at %v, last status %d, %d attempts (%d recorded); want delivered, 200, 2",
			e.State, e.DeliveredAt, e.LastStatus, e.Attempts, len(atts))
	}
}

// Two gateways recording attempts of one event at the same moment number
// them one after the other (before: both took attempts+1, and one failed
// on the attempts table's key).
func TestConcurrentAttemptsNumbered(t *testing.T) {
	requirePostgres(t)
	path := testPath(t)
	a, b := openPostgresAt(t, path), openPostgresAt(t, path)
	ctx := context.Background()
	mustRecord(t, a, ev("evt_1", "m", "o1", at(0)), "")
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 30 {
		for _, s := range []*sqlStore{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.RecordAttempt(ctx, Attempt{EventID: "evt_1", At: at(i), Status: 503}, Outcome{RetryAt: at(i + 1)})
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e, atts, err := a.GetEvent(ctx, "evt_1")
	if err != nil || e.Attempts != 60 || len(atts) != 60 {
		t.Fatalf("%d attempts counted, %d recorded, %v; want 60", e.Attempts, len(atts), err)
	}
}

// A write's caller waits at most twice query_timeout, however many writes
// wait behind a lock another session holds on events (before: each op of
// a batch that timed out ran again alone, one after another, each with a
// timeout of its own: 12 notifications under a 1 s timeout took 10 s).
func TestWriteWaitBoundedByQueryTimeout(t *testing.T) {
	dsn := requirePostgres(t)
	path := testPath(t)
	_ = openPostgresAt(t, path) // the schema, migrated
	schema, _ := testSchemas.Load(path)
	s, err := openPostgres(context.Background(), PostgresOptions{DSN: dsn, schema: schema.(string), QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	admin := postgresAdmin(t, dsn)
	defer admin.Close()
	tx, err := admin.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.Exec(`LOCK TABLE ` + schema.(string) + `.events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	waits := make(chan time.Duration, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.RecordEvent(context.Background(), ev(fmt.Sprintf("evt_%d", i), "m", fmt.Sprintf("o%d", i), at(0)), Change{})
			if err == nil {
				t.Errorf("evt_%d recorded under another session's lock", i)
			}
			waits <- time.Since(start)
		}()
	}
	wg.Wait()
	close(waits)
	for w := range waits {
		// Two timeouts, and a margin for a loaded machine.
		if w > 4*time.Second {
			t.Fatalf("a write's caller waited %v with query_timeout 1s", w)
		}
	}
}

// A ledger already up to date opens for a role that may read and write
// its tables but not create any (a least-privilege runtime role; public on
// PostgreSQL 15 and later): PostgreSQL checks the right to create even
// for CREATE TABLE IF NOT EXISTS, so nothing is created when nothing is
// needed.
func TestPostgresUpToDateLedgerWithoutCreate(t *testing.T) {
	dsn := requirePostgres(t)
	ctx := context.Background()
	path := testPath(t)
	owner := openPostgresAt(t, path) // created and migrated by the owner
	putOrders(t, owner, []string{"noddl1"})
	v, _ := testSchemas.Load(path)
	schema := v.(string)
	admin := postgresAdmin(t, dsn)
	role := "wxpay_noddl_" + strings.TrimPrefix(schema, "wxpay_test_")
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT USAGE ON SCHEMA ` + schema + ` TO ` + role,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ` + schema + ` TO ` + role,
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{`DROP OWNED BY ` + role, `DROP ROLE IF EXISTS ` + role} {
			if _, err := admin.ExecContext(context.Background(), q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
		_ = admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skipf("%s is not a URL (%v): the test swaps its user", postgresDSNVar, err)
	}
	u.User = url.User(role)
	s, err := openPostgres(ctx, PostgresOptions{DSN: u.String(), schema: schema})
	if err != nil {
		t.Fatalf("opening an up-to-date ledger without the right to create: %v", err)
	}
	defer s.Close()
	if o, err := s.GetOrder(ctx, "10000100", "noddl1"); err != nil || o.OutTradeNo != "noddl1" {
		t.Fatalf("reading it: %+v, %v", o, err)
	}
}

// Upgrading one gateway while others run on the database: a migration
// that waits for a table's lock behind a long reader (a report, a backup)
// gives up after its lock_timeout and tries again, so that the running
// gateways' writes, queued behind it, go through meanwhile; once the
// reader is done, the migration applies.
func TestPostgresMigrationWaitsBehindALongReader(t *testing.T) {
	dsn := requirePostgres(t)
	ctx := context.Background()
	path := testPath(t)
	openPostgresAt(t, path).Close()
	v, _ := testSchemas.Load(path)
	schema := v.(string)
	admin := postgresAdmin(t, dsn)
	defer admin.Close()
	// Back to version 6, as the running gateways know it.
	for _, q := range []string{
		`ALTER TABLE ` + schema + `.events DROP COLUMN replayed_at, DROP COLUMN replay_attempts`,
		`DELETE FROM ` + schema + `.schema_migrations WHERE version = 7`,
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	reader, err := admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reader.Rollback() }()
	var n int
	if err := reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+schema+`.events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		s, err := openPostgres(ctx, PostgresOptions{DSN: dsn, schema: schema})
		if err == nil {
			_ = s.Close()
		}
		opened <- err
	}()
	// The upgrade waits for its lock; a running gateway records a
	// notification meanwhile.
	waitUntil(t, "the upgrade waiting for its lock", func() bool {
		var waiting bool
		err := admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE events%')`).Scan(&waiting)
		return err == nil && waiting
	})
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := admin.ExecContext(wctx, `INSERT INTO `+schema+`.events (id, mch_id, type, out_trade_no, payload, created_at, state, next_attempt_at) VALUES ('evt_w', 'm', 't', 'o', '\x00', 0, 'pending', 0)`); err != nil {
		t.Fatalf("a running gateway's write while the upgrade waits: %v after %v", err, time.Since(start))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a running gateway's write waited %v behind the upgrade", took)
	}
	_ = reader.Rollback()
	if err := <-opened; err != nil {
		t.Fatalf("the upgrade, once the reader was done: %v", err)
	}
}

// waitUntil polls cond for up to 20 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A new ledger in its own schema, first on the search_path, in a database
// where a later schema of the path (often public) holds another tool's
// schema_migrations (golang-migrate's, Rails'): the ledger creates and
// reads its own, never the other tool's version.
func TestPostgresLedgerBesideAnotherSchemaMigrations(t *testing.T) {
	dsn := requirePostgres(t)
	ctx := context.Background()
	path := testPath(t)
	openPostgresAt(t, path).Close() // makes a schema, dropped at the end
	v, _ := testSchemas.Load(path)
	ours := v.(string)
	other := ours + "_other"
	admin := postgresAdmin(t, dsn)
	for _, q := range []string{
		`DROP SCHEMA ` + ours + ` CASCADE`, `CREATE SCHEMA ` + ours, `CREATE SCHEMA ` + other,
		`CREATE TABLE ` + other + `.schema_migrations (version BIGINT NOT NULL PRIMARY KEY, dirty BOOLEAN NOT NULL)`,
		`INSERT INTO ` + other + `.schema_migrations VALUES (20240101120000, false)`,
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS `+other+` CASCADE`); err != nil {
			t.Errorf("drop %s: %v", other, err)
		}
		_ = admin.Close()
	})
	s, err := openPostgres(ctx, PostgresOptions{DSN: dsn, schema: ours + "," + other})
	if err != nil {
		t.Fatalf("a new ledger beside another tool's schema_migrations: %v", err)
	}
	defer s.Close()
	var n int
	if err := admin.QueryRowContext(ctx, `SELECT MAX(version) FROM `+ours+`.schema_migrations`).Scan(&n); err != nil || n != len(migrations()) {
		t.Fatalf("the ledger's own schema_migrations: version %d, %v", n, err)
	}
}

// An existing ledger in public, reached through the default search_path
// ("$user", public), when a schema named after the role appears in front
// of it: the gateway refuses to start, naming where the ledger is, rather
// than make a new, empty one that hides it.
func TestPostgresLedgerBehindANewSchema(t *testing.T) {
	dsn := requirePostgres(t)
	ctx := context.Background()
	path := testPath(t)
	openPostgresAt(t, path).Close() // the ledger, migrated
	v, _ := testSchemas.Load(path)
	ledgerSchema := v.(string)
	front := ledgerSchema + "_front"
	admin := postgresAdmin(t, dsn)
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+front); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS `+front+` CASCADE`); err != nil {
			t.Errorf("drop %s: %v", front, err)
		}
		_ = admin.Close()
	})
	_, err := openPostgres(ctx, PostgresOptions{DSN: dsn, schema: front + "," + ledgerSchema})
	if err == nil || !strings.Contains(err.Error(), ledgerSchema) {
		t.Fatalf("a new schema in front of the ledger's: %v, want a refusal naming %s", err, ledgerSchema)
	}
	var n int
	if err := admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = $1`, front).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tables made in %s: %d, %v", front, n, err)
	}
}
