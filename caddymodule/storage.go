package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// Storage says where the gateway keeps its orders and events.
type Storage struct {
	// The storage driver. Only "sqlite" for now (embedded, no server).
	Driver string `json:"driver,omitempty"`
	// The SQLite database file. Default: wxpay/ledger.db under Caddy's
	// data directory (e.g. ~/.local/share/caddy/wxpay/ledger.db).
	Path string `json:"path,omitempty"`
}

// storageLocation is a provisioned Storage: which ledger engine, and where.
type storageLocation struct {
	driver string
	source string // SQLite: the absolute path of the file
}

func (l *storageLocation) String() string { return l.driver + ":" + l.source }

// location resolves where the ledger lives.
func (s *Storage) location() (*storageLocation, error) {
	driver := s.Driver
	if driver == "" {
		driver = "sqlite"
	}
	switch driver {
	case "sqlite":
		p := s.Path
		if p == "" {
			p = filepath.Join(caddy.AppDataDir(), "wxpay", "ledger.db")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("storage path %q: %w", p, err)
		}
		return &storageLocation{driver: driver, source: abs}, nil
	}
	return nil, fmt.Errorf("storage driver %q is not supported (sqlite)", s.Driver)
}

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
	key := loc.String()
	v, _, err := ledgers.LoadOrNew(key, func() (caddy.Destructor, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := ledger.Open(ctx, loc.driver, loc.source)
		if err != nil {
			return nil, err
		}
		return &ledgerHandle{
			key:        key,
			store:      st,
			reconciler: gateway.NewReconciler(st, nil),
			worker: delivery.New(delivery.Config{
				Store:  st,
				Logger: logger.Named("delivery"),
			}),
		}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening the ledger %s: %w", loc, err)
	}
	return v.(*ledgerHandle), nil
}

// release gives the handle back; the last user closes it.
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
