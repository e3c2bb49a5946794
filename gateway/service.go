package gateway

import (
	"context"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// Ledger is what the Service needs of the durable store: orders, refunds,
// and events recorded with their outbox entry. Package ledger implements
// it.
type Ledger interface {
	GetOrder(ctx context.Context, mchID, outTradeNo string) (*ledger.Order, error)
	PutOrder(ctx context.Context, o *ledger.Order) error
	RecordPrepay(ctx context.Context, o *ledger.Order) error
	ForgetOrder(ctx context.Context, mchID, outTradeNo, contentHash string) error
	MayHoldOrder(mchID, outTradeNo string) bool
	PredictsOrders() bool
	SetOrderState(ctx context.Context, mchID, outTradeNo, state string, now time.Time) error
	ScheduleCheck(ctx context.Context, mchID, outTradeNo string, next time.Time, checks int) error
	RecordEvent(ctx context.Context, e *ledger.Event, change ledger.Change) (created bool, err error)
	GetRefund(ctx context.Context, mchID, outRefundNo string) (*ledger.Refund, error)
	PutRefund(ctx context.Context, r *ledger.Refund) error
	SetRefundState(ctx context.Context, mchID, outRefundNo, state, refundID string, now time.Time) error
	ForgetRefund(ctx context.Context, mchID, outRefundNo string) error
}

// Outbox is told when an event was stored, so that its delivery starts at
// once (the delivery worker).
type Outbox interface {
	Notify()
}

// Deliverer delivers an event to the backend while WeChat waits for its
// answer: the service's way without a ledger.
type Deliverer interface {
	Deliver(ctx context.Context, id string, payload []byte) error
}

// Config sets up a Service.
type Config struct {
	// Ledger keeps orders, refunds and events. With it, a notification is
	// acknowledged once its event is stored durably, and the Outbox
	// delivers it. Without it (nil), the gateway keeps no state: each
	// event goes to the backend through Direct before WeChat hears back,
	// and WeChat's own retries are the only ones.
	Ledger Ledger
	// Outbox is woken when an event is stored (with a Ledger).
	Outbox Outbox
	// Direct delivers events without a Ledger.
	Direct Deliverer
	// ReconcileDelay is how long after an order is placed the Reconciler
	// first asks WeChat about it; 0: it never does.
	ReconcileDelay time.Duration
	// Logger receives one entry per order refused, notification taken and
	// refund; nil: none.
	Logger *zap.Logger
	// Now is the service's clock. Default: time.Now.
	Now func() time.Time
	// OpenIDKey signs the openid tokens the service hands mini programs
	// (MiniProgramOpenID) and checks those orders bring; nil: none.
	OpenIDKey []byte
	// Observer is told what the service does (metrics); nil: nothing.
	// The calls to WeChat are observed by the merchants' protocols (see
	// ObserveProtocol).
	Observer Observer
}

// How refused notifications are logged: in full RefusalLogFirst times a
// second (per message), then one in RefusalLogThereafter.
const (
	RefusalLogFirst      = 10
	RefusalLogThereafter = 100
)

// Service is the gateway's service; see the package documentation. It is
// safe for concurrent use.
type Service struct {
	ledger         Ledger
	outbox         Outbox
	direct         Deliverer
	reconcileDelay time.Duration
	logger         *zap.Logger
	refusals       *zap.Logger // logger, sampled: refused notifications
	now            func() time.Time
	obs            Observer
	openIDKey      []byte
}

// New returns a Service.
func New(c Config) *Service {
	s := &Service{
		ledger: c.Ledger, outbox: c.Outbox, direct: c.Direct,
		reconcileDelay: c.ReconcileDelay, logger: c.Logger, now: c.Now, obs: c.Observer, openIDKey: c.OpenIDKey,
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	// Anyone can post to the notify routes: refusals are logged in full
	// RefusalLogFirst times a second, then one in RefusalLogThereafter
	// (the metrics count them all), so that a flood of forgeries does not
	// drown the log.
	s.refusals = s.logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, RefusalLogFirst, RefusalLogThereafter)
	}))
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// KeepsState reports whether the service has a ledger (a notification is
// acknowledged once stored) or delivers each event before WeChat hears
// back.
func (s *Service) KeepsState() bool { return s.ledger != nil }

// Now reads the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// Interface guards: package ledger's store is what the service and the
// reconciler need.
var (
	_ Ledger          = ledger.Store(nil)
	_ ReconcileLedger = ledger.Store(nil)
)
