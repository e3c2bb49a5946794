package caddymodule

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// Storage says where the gateway keeps its orders and events.
type Storage struct {
	// The storage driver: "sqlite" (the default: a file, embedded, no
	// server; one gateway) or "postgres" (a PostgreSQL database that
	// several gateways behind a load balancer share).
	Driver string `json:"driver,omitempty"`
	// The SQLite database file. Default: wxpay/ledger.db under Caddy's
	// data directory (e.g. ~/.local/share/caddy/wxpay/ledger.db).
	Path string `json:"path,omitempty"`
	// The PostgreSQL connection string (postgres://user:password@host:5432/db?sslmode=verify-full,
	// or libpq's key=value form), best given as a placeholder such as
	// {env.WXPAY_DATABASE_URL}, resolved when the configuration loads. It
	// is never logged (the logs name its host, port, database and user).
	DSN string `json:"dsn,omitempty"`
	// PostgreSQL: the most connections each of the ledger's two pools
	// opens (durable writes; the other writes and reads). Default 16.
	MaxConns int `json:"max_conns,omitempty"`
	// PostgreSQL: how long opening a connection may take, unless the DSN
	// sets connect_timeout. Default 5s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`
	// PostgreSQL: how long one operation on the ledger (a transaction, a
	// read) may take before it fails: a notification that cannot be stored
	// in time is answered FAIL, and WeChat sends it again. Default 10s.
	QueryTimeout caddy.Duration `json:"query_timeout,omitempty"`
}

// storageLocation is a provisioned Storage: which ledger engine, and where.
type storageLocation struct {
	driver  string
	source  string // SQLite: the absolute path of the file; PostgreSQL: the DSN (a secret)
	display string // what logs and errors say of it
	pg      ledger.PostgresOptions
}

// String names the location without its secrets.
func (l *storageLocation) String() string { return l.driver + ":" + l.display }

// key identifies the ledger among those open (it may hold secrets: never
// logged).
func (l *storageLocation) key() string { return l.driver + ":" + l.source }

// location resolves where the ledger lives; repl expands the placeholders
// of the DSN.
func (s *Storage) location(repl *caddy.Replacer) (*storageLocation, error) {
	driver := s.Driver
	if driver == "" {
		driver = "sqlite"
	}
	switch driver {
	case "sqlite":
		if s.DSN != "" || s.MaxConns != 0 || s.ConnectTimeout != 0 || s.QueryTimeout != 0 {
			return nil, errors.New("storage sqlite: dsn, max_conns, connect_timeout and query_timeout are PostgreSQL's options")
		}
		p := s.Path
		if p == "" {
			p = filepath.Join(caddy.AppDataDir(), "wxpay", "ledger.db")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("storage path %q: %w", p, err)
		}
		return &storageLocation{driver: driver, source: abs, display: abs}, nil
	case "postgres":
		if s.Path != "" {
			return nil, errors.New("storage postgres: path is SQLite's option; give the database as dsn")
		}
		dsn := strings.TrimSpace(repl.ReplaceKnown(s.DSN, ""))
		if dsn == "" {
			if s.DSN != "" {
				return nil, fmt.Errorf("storage postgres: the connection string %q is empty once its placeholders are resolved (is the environment variable set?)", s.DSN)
			}
			return nil, errors.New("storage postgres: no connection string (dsn)")
		}
		if s.MaxConns < 0 || s.ConnectTimeout < 0 || s.QueryTimeout < 0 {
			return nil, errors.New("storage postgres: max_conns, connect_timeout and query_timeout cannot be negative")
		}
		where, err := ledger.PostgresLocation(dsn)
		if err != nil {
			return nil, fmt.Errorf("storage postgres: %w", err)
		}
		return &storageLocation{driver: driver, source: dsn, display: where, pg: ledger.PostgresOptions{
			DSN: dsn, MaxConns: s.MaxConns,
			ConnectTimeout: time.Duration(s.ConnectTimeout), QueryTimeout: time.Duration(s.QueryTimeout),
		}}, nil
	}
	return nil, fmt.Errorf("storage driver %q is not supported (sqlite, postgres)", s.Driver)
}

// open opens the ledger at l.
func (l *storageLocation) open(ctx context.Context) (ledger.Store, error) {
	if l.driver == "postgres" {
		return ledger.OpenPostgres(ctx, l.pg)
	}
	return ledger.OpenSQLite(ctx, ledger.SQLiteOptions{Path: l.source})
}

// shared reports whether other gateways may use the ledger too.
func (l *storageLocation) shared() bool { return l.driver == "postgres" }

// ledgers holds the open ledgers by location, shared by the configurations
// that use them: on a reload the new configuration starts before the old
// one stops, and both must use one store, one delivery worker and one
// reconciler, or an event could be delivered twice.
var ledgers = caddy.NewUsagePool()

// ledgerHandle is one open ledger, the worker delivering its outbox and the
// job reconciling its orders.
type ledgerHandle struct {
	key        string
	store      ledger.Store
	worker     *delivery.Worker
	reconciler *gateway.Reconciler
	// holder names this gateway in the ledger's leases.
	holder string
}

// Destruct stops the reconciler and the worker (waiting for the deliveries
// in flight) and closes the store, when the last configuration using them
// unloads.
func (h *ledgerHandle) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h.reconciler.Stop()
	h.worker.Stop(ctx)
	return h.store.Close()
}

// openLedger opens (or shares) the ledger at loc.
func openLedger(loc *storageLocation, logger *zap.Logger) (*ledgerHandle, error) {
	key := loc.key()
	v, _, err := ledgers.LoadOrNew(key, func() (caddy.Destructor, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := loc.open(ctx)
		if err != nil {
			return nil, err
		}
		// Several gateways on one database: an event recorded by another
		// (that died before delivering it) or a claim that expired is
		// found within a second.
		poll := time.Duration(0)
		if loc.shared() {
			poll = time.Second
		}
		return &ledgerHandle{
			key:        key,
			store:      st,
			holder:     "wxpay-" + rand.Text(),
			reconciler: gateway.NewReconciler(st, nil),
			worker: delivery.New(delivery.Config{
				Store:        st,
				Logger:       logger.Named("delivery"),
				PollInterval: poll,
				Observer:     metricsObserver{},
			}),
		}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening the ledger %s: %w", loc, err)
	}
	return v.(*ledgerHandle), nil
}

// release gives the handle back; the last user closes it.
// last reports whether one holder alone is left, whose release closes the
// ledger.
func (h *ledgerHandle) last() bool {
	n, ok := ledgers.References(h.key)
	return !ok || n <= 1
}

func (h *ledgerHandle) release() error {
	_, err := ledgers.Delete(h.key)
	return err
}

// Interface guard
var _ caddy.Destructor = (*ledgerHandle)(nil)

// The service's and the worker's views of what this package wires together.
var (
	_ gateway.Outbox    = (*delivery.Worker)(nil)
	_ gateway.Deliverer = (*delivery.Webhook)(nil)
)
