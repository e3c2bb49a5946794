package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
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

// ledgers holds the open ledgers by file, shared by the configurations that
// use them: on a reload the new configuration starts before the old one
// stops, and both must use one store and one delivery worker, or an event
// could be delivered twice.
var ledgers = caddy.NewUsagePool()

// ledgerHandle is one open ledger and the worker delivering its outbox.
type ledgerHandle struct {
	key        string
	store      ledger.Store
	worker     *delivery.Worker
	reconciler *reconciler
}

// Destruct stops the worker (waiting for the deliveries in flight) and
// closes the store, when the last configuration using them unloads.
func (h *ledgerHandle) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h.reconciler.stop()
	h.worker.Stop(ctx)
	return h.store.Close()
}

// storagePath resolves where the SQLite ledger lives.
func (s *Storage) storagePath() (string, error) {
	driver := s.Driver
	if driver == "" {
		driver = "sqlite"
	}
	if driver != "sqlite" {
		return "", fmt.Errorf("storage driver %q is not supported (sqlite)", s.Driver)
	}
	p := s.Path
	if p == "" {
		p = filepath.Join(caddy.AppDataDir(), "wxpay", "ledger.db")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("storage path %q: %w", p, err)
	}
	return abs, nil
}

// openLedger opens (or shares) the ledger at path.
func openLedger(path string, logger *zap.Logger) (*ledgerHandle, error) {
	key := "sqlite:" + path
	v, _, err := ledgers.LoadOrNew(key, func() (caddy.Destructor, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := ledger.OpenSQLite(ctx, ledger.SQLiteOptions{Path: path})
		if err != nil {
			return nil, err
		}
		return &ledgerHandle{
			key:        key,
			store:      st,
			reconciler: newReconciler(st),
			worker: delivery.New(delivery.Config{
				Store:  st,
				Logger: logger.Named("delivery"),
			}),
		}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening the ledger %s: %w", path, err)
	}
	return v.(*ledgerHandle), nil
}

// release gives the handle back; the last user closes it.
func (h *ledgerHandle) release() error {
	_, err := ledgers.Delete(h.key)
	return err
}

// Send implements delivery.Sender for the upstream.
func (u *upstream) Send(ctx context.Context, id string, payload []byte) delivery.Result {
	status, snippet, err := u.send(ctx, id, payload, time.Now())
	return delivery.Result{Status: status, Response: snippet, Err: err}
}

// policy is the upstream's delivery policy for the worker.
func (u *upstream) policy() delivery.Policy {
	return delivery.Policy{
		Concurrency:    u.concurrency,
		AttemptTimeout: u.timeout,
		MaxInterval:    u.retryMaxInterval,
		MaxAge:         u.retryMaxAge,
	}
}
