// Package wxpaysim is a strict simulated WeChat Pay (微信支付) API v2 and
// APIv3 server, for tests and demos: WeChat's v2 sandbox is unreliable and
// v3 has none.
//
// A Simulator is an http.Handler. It serves an order's whole life on API v2
// with WeChat's checks and answers (signatures, error codes, idempotency):
// POST /pay/unifiedorder, /pay/orderquery, /pay/closeorder,
// /secapi/pay/refund (mutual TLS: see Config.ClientCAs and TLSConfig),
// /pay/refundquery and /pay/downloadbill. It pays orders on request (Pay,
// or POST /sim/pay) and then sends signed pay notifications to the order's
// notify_url on WeChat's retry schedule until the merchant acknowledges
// them; refunds succeed after RefundDelay and send encrypted refund
// notifications the same way. Faults (FailNext, DelayNext) make WeChat's
// transient failures reproducible, and lost notifications (PayOptions.Lost,
// SendNotification) give reconciliation something to find.
//
// A merchant with Merchant.V3 also speaks APIv3 (JSON, requests signed
// with its certificate's RSA key, answers and notifications signed with
// WeChat's public key or platform certificates, resources encrypted with
// the APIv3 key), over the same orders and refunds: an order placed with
// one API is queried, closed and refunded with the other, and notified in
// the format of the API it was placed with. PayOptions.V3Fault and the
// signing controls (SetV3Signing, SetV3NotificationSigner,
// RotatePlatformCertificate) exercise the merchant's verification. The v3
// code builds WeChat's wire format from the standard library alone, apart
// from the merchant-side APIv3 library, so that each checks the other.
//
// It is safe for concurrent use, keeps no package-level mutable state, and
// leaves no goroutine running once Close returns. Production never needs it:
// it pays any order it is asked to.
package wxpaysim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// Order states, as WeChat's orderquery names them (trade_state).
const (
	StateNotPay   = "NOTPAY"   // placed, not paid
	StateSuccess  = "SUCCESS"  // paid
	StatePayError = "PAYERROR" // the last payment attempt failed; it may be paid again
	StateClosed   = "CLOSED"   // closed; it can no longer be paid or placed again
	// StateRefund is the trade_state orderquery answers for a paid order
	// that has at least one refund. Order.State stays StateSuccess.
	StateRefund = "REFUND"
)

// Refund statuses, as refundquery names them (refund_status_N).
const (
	RefundStatusProcessing = "PROCESSING" // accepted, money on its way
	RefundStatusSuccess    = "SUCCESS"    // refunded
	// RefundStatusChange: abnormal, the money did not reach the payer
	// (a closed card…); the merchant settles it by hand (APIv3: ABNORMAL).
	RefundStatusChange = "CHANGE"
	// RefundStatusClosed: closed, nothing refunded (APIv3: CLOSED).
	RefundStatusClosed = "REFUNDCLOSE"
)

// RefundDelay is how long a refund stays PROCESSING before it succeeds,
// before TimeScale.
const RefundDelay = 5 * time.Second

// PrepayIDLifetime is how long a prepay_id stays valid, as WeChat documents.
const PrepayIDLifetime = 2 * time.Hour

// MaxRequestSize bounds the body of an API request; a larger one is refused
// as malformed XML.
const MaxRequestSize = 64 << 10

// API names for FailNext and DelayNext (a path such as "/pay/orderquery"
// or "/secapi/pay/refund" is accepted too).
const (
	APIUnifiedOrder = "unifiedorder"
	APIOrderQuery   = "orderquery"
	APICloseOrder   = "closeorder"
	APIRefund       = "refund"
	APIRefundQuery  = "refundquery"
	APIDownloadBill = "downloadbill"
)

// Errors of Pay and CloseOrder. They are wrapped with context; test them with
// errors.Is.
var (
	// ErrUnknownOrder means no order matches.
	ErrUnknownOrder = errors.New("wxpaysim: unknown order")
	// ErrOrderPaid means the order is already paid.
	ErrOrderPaid = errors.New("wxpaysim: order already paid")
	// ErrOrderClosed means the order is closed.
	ErrOrderClosed = errors.New("wxpaysim: order closed")
	// ErrOrderExpired means the order's prepay_id or time_expire has passed,
	// so that WeChat would no longer let a user pay it.
	ErrOrderExpired = errors.New("wxpaysim: order expired")
	// ErrInvalidPayOptions means the PayOptions cannot be used as given.
	ErrInvalidPayOptions = errors.New("wxpaysim: invalid pay options")
	// ErrClosed means the simulator has been closed.
	ErrClosed = errors.New("wxpaysim: simulator closed")
	// ErrNotPaid means the order has no payment to notify.
	ErrNotPaid = errors.New("wxpaysim: order not paid")
	// ErrLimit means the simulator holds as much as its Limits allow.
	ErrLimit = errors.New("wxpaysim: limit reached")
)

// RetrySchedule returns the delays between WeChat's attempts to deliver a
// pay notification that was not acknowledged (15s, 15s, 30s, 3m, 10m, 20m,
// 30m, 30m, 30m, 60m, 3h, 3h, 3h, 6h, 6h: 24h4m in all), before TimeScale.
// A notification is attempted once plus once after each delay.
func RetrySchedule() []time.Duration {
	return []time.Duration{
		15 * time.Second, 15 * time.Second, 30 * time.Second,
		3 * time.Minute, 10 * time.Minute, 20 * time.Minute,
		30 * time.Minute, 30 * time.Minute, 30 * time.Minute,
		60 * time.Minute, 3 * time.Hour, 3 * time.Hour,
		3 * time.Hour, 6 * time.Hour, 6 * time.Hour,
	}
}

// Merchant is a merchant account the simulator accepts.
type Merchant struct {
	// MchID is the merchant number (商户号).
	MchID string
	// Key is the merchant's API v2 key; requests must be signed with it and
	// answers and notifications are signed with it.
	Key wxpay.APIKey
	// AppIDs are the app ids bound to the merchant; an order for another
	// appid fails with APPID_MCHID_NOT_MATCH.
	AppIDs []string
	// V3 is the merchant's APIv3 configuration; nil when the merchant has
	// no APIv3. One that fails MerchantV3.Validate is refused (logged) and
	// the merchant keeps API v2 only. The simulator copies what it needs:
	// changing V3 afterwards has no effect.
	V3 *MerchantV3
}

// Config configures a Simulator.
type Config struct {
	// Merchants are the merchant accounts the simulator knows. A later
	// entry with the same MchID replaces an earlier one.
	Merchants []Merchant
	// TimeScale multiplies WeChat's notification retry schedule and
	// RefundDelay: 1 is real time (the default when 0 or negative), 0.001
	// turns 15s into 15ms. It does not scale DelayNext.
	TimeScale float64
	// HTTPClient sends notifications. Default: a client with a 5s timeout
	// that does not follow redirects and whose connections Close closes.
	HTTPClient *http.Client
	// Logf logs what the simulator does (optional). Keys are never logged.
	Logf func(format string, args ...any)
	// Now returns the current time. Default: time.Now. It stamps orders,
	// prepay_ids, time_end and attempts, and decides expiry; the retry
	// schedule runs on real timers.
	Now func() time.Time
	// ClientCAs verifies merchants' client certificates on /secapi/ routes;
	// when nil, every /secapi/ call is refused as without a certificate.
	// A certificate is accepted when it chains to ClientCAs for client
	// authentication (checked by the simulator itself, whatever the TLS
	// server verified) and its subject CommonName is the request's mch_id,
	// as on WeChat's apiclient_cert.pem.
	ClientCAs *x509.CertPool
	// Limits bound what the simulator keeps, so that a simulator left
	// running cannot be made to grow without end. Zero fields take
	// DefaultLimits' values.
	Limits Limits
	// AppSecrets are the apps' secrets by app id, for WeChat's platform
	// API (/sns/jscode2session): an app without one is unknown there.
	AppSecrets map[string]string
	// CashierURL is where a browser reaches the simulator's payment sheet,
	// its /sim/cashier route (for example
	// http://127.0.0.1:8081/sim/cashier). When set, the mweb_url of an
	// MWEB order (APIv3: h5_url) points there, with WeChat's prepay_id and
	// package parameters, so that a person can pay or cancel it in a
	// browser; when empty it points at WeChat's wx.tenpay.com address, as
	// WeChat answers it. See SetCashierURL.
	CashierURL string
}

// Limits bound a simulator's state.
type Limits struct {
	// Orders and Refunds it keeps; past them unifiedorder and refund
	// answer SYSTEMERROR ("wxpaysim: limit reached").
	Orders, Refunds int
	// Notifications is how many notification records Notifications
	// lists (the oldest are dropped, their deliveries go on).
	Notifications int
	// Pending is how many notifications may be on their retry schedule
	// at once; past it Pay and SendNotification fail with ErrLimit.
	Pending int
	// Faults is how many FailNext and DelayNext entries may wait per API
	// (the oldest are dropped); Delay is the longest DelayNext (longer is
	// cut to it).
	Faults int
	Delay  time.Duration
}

// DefaultLimits are the limits of a zero Limits.
var DefaultLimits = Limits{Orders: 100000, Refunds: 100000, Notifications: 10000, Pending: 1000, Faults: 1000, Delay: time.Minute}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.Orders <= 0 {
		l.Orders = d.Orders
	}
	if l.Refunds <= 0 {
		l.Refunds = d.Refunds
	}
	if l.Notifications <= 0 {
		l.Notifications = d.Notifications
	}
	if l.Pending <= 0 {
		l.Pending = d.Pending
	}
	if l.Faults <= 0 {
		l.Faults = d.Faults
	}
	if l.Delay <= 0 {
		l.Delay = d.Delay
	}
	return l
}

// Simulator is a simulated WeChat Pay API v2 and APIv3 server. Create it
// with New and stop it with Close. It is safe for concurrent use.
type Simulator struct {
	timeScale float64
	client    *http.Client
	transport *http.Transport // owned by the simulator; nil with Config.HTTPClient
	logFn     func(format string, args ...any)
	now       func() time.Time
	clientCAs *x509.CertPool
	limits    Limits
	secrets   map[string]string // apps' secrets (Config.AppSecrets), copied

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // notification deliveries

	mu            sync.Mutex
	cashierURL    string            // Config.CashierURL, SetCashierURL
	usedCodes     map[string]bool   // login codes taken (/sns/jscode2session)
	oauthCodes    map[string]string // web-authorisation codes not taken yet, their app ids
	oauthSeq      int
	closed        bool
	merchants     map[string]Merchant
	orders        map[orderKey]*order
	orderList     []*order // in creation order
	byPrepay      map[string]*order
	byTxID        map[string]*order // every transaction_id Pay issued
	refunds       map[refundKey]*refund
	refundList    []*refund // in creation order
	byRefundID    map[string]*refund
	notifications []*notification // in start order, the last limits.Notifications
	pending       int             // notifications on their retry schedule
	fails         map[string][]failFault
	delays        map[string][]delayFault
	v3            map[string]*v3Merchant // APIv3 state by mch_id
	billTokens    []*billToken           // v3 bill downloads, oldest first
	alterBills    int                    // v3 bill downloads left to alter (AlterNextBills)
	refundEnds    []string               // how the next refunds end (EndNextRefunds); SUCCESS after

	forgerMu sync.Mutex      // guards forger, apart from mu: generating it is slow
	forger   *rsa.PrivateKey // signs forged notifications (V3FaultForgedSignature)
}

type orderKey struct{ mchID, outTradeNo string }

// New returns a simulator configured by cfg. Call Close when done with it.
func New(cfg Config) *Simulator {
	s := &Simulator{
		timeScale:  cfg.TimeScale,
		client:     cfg.HTTPClient,
		logFn:      cfg.Logf,
		now:        cfg.Now,
		clientCAs:  cfg.ClientCAs,
		limits:     cfg.Limits.withDefaults(),
		secrets:    maps.Clone(cfg.AppSecrets),
		cashierURL: cfg.CashierURL,
		merchants:  make(map[string]Merchant),
		orders:     make(map[orderKey]*order),
		byPrepay:   make(map[string]*order),
		byTxID:     make(map[string]*order),
		refunds:    make(map[refundKey]*refund),
		byRefundID: make(map[string]*refund),
		fails:      make(map[string][]failFault),
		delays:     make(map[string][]delayFault),
		v3:         make(map[string]*v3Merchant),
	}
	if s.timeScale <= 0 {
		s.timeScale = 1
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.client == nil {
		s.transport = &http.Transport{
			// WeChat's servers do not go through the merchant's proxy.
			Proxy: nil,
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		}
		s.client = &http.Client{
			Transport: s.transport,
			Timeout:   5 * time.Second,
			// A redirect is not an acknowledgement.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, m := range cfg.Merchants {
		s.AddMerchant(m)
	}
	return s
}

// Close stops pending notification retries, cancels notifications in
// flight, leaves refunds that have not succeeded yet PROCESSING, and waits
// for the simulator's goroutines to end. Delayed API answers (DelayNext)
// are sent at once. Close may be called more than once. After Close, Pay
// and SendNotification fail with ErrClosed; the API routes still answer
// (a refund accepted then stays PROCESSING).
func (s *Simulator) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
}

// AddMerchant adds or replaces a merchant at run time. A merchant without
// MchID is ignored. A merchant whose V3 does not validate is added without
// APIv3, and the refusal is logged.
func (s *Simulator) AddMerchant(m Merchant) {
	if m.MchID == "" {
		s.logf("wxpaysim: ignoring a merchant without mch_id")
		return
	}
	m.AppIDs = slices.Clone(m.AppIDs)
	var v3 *v3Merchant
	if m.V3 != nil {
		if err := m.V3.Validate(); err != nil {
			s.logf("wxpaysim: merchant %s: APIv3 refused, API v2 only: %v", m.MchID, err)
		} else {
			v3 = newV3Merchant(m.V3)
		}
		m.V3 = nil // the simulator keeps its own copy in s.v3
	}
	s.mu.Lock()
	_, replaced := s.merchants[m.MchID]
	s.merchants[m.MchID] = m
	s.setV3Locked(m.MchID, v3)
	s.mu.Unlock()
	if v3 != nil {
		s.logf("wxpaysim: merchant %s has APIv3 in %s mode", m.MchID, v3.mode())
	}
	if replaced {
		s.logf("wxpaysim: merchant %s replaced (app ids %v)", m.MchID, m.AppIDs)
	} else {
		s.logf("wxpaysim: merchant %s added (app ids %v)", m.MchID, m.AppIDs)
	}
}

// merchant returns the merchant with the given mch_id.
func (s *Simulator) merchant(mchID string) (Merchant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.merchants[mchID]
	return m, ok
}

// ServeHTTP serves WeChat's API and the simulator's control routes:
//
//	POST /pay/unifiedorder   WeChat's 统一下单
//	POST /pay/orderquery     查询订单
//	POST /pay/closeorder     关闭订单
//	POST /secapi/pay/refund  申请退款 (needs a client certificate, see Config.ClientCAs)
//	POST /pay/refundquery    查询退款
//	POST /pay/downloadbill   下载对账单 (CSV text, or gzip; not XML on success)
//	POST /sim/pay            pay an order (JSON PayOptions), answers the Payment
//	POST /sim/notify         send a paid order's notification again (JSON {"mch_id", "out_trade_no"})
//	POST /sim/faults         queue faults (JSON {"api", "count", "err_code" or "delay"})
//	GET  /sim/notifications  the notifications sent, with their attempts
//	GET  /sim/orders         the orders known
//	GET  /sim/cashier        the H5 payment sheet an mweb_url opens (Config.CashierURL); POST pays or cancels
//	GET  /sim/refunds        the refunds known
//
// and APIv3 (JSON, RSA-signed; see serveV3):
//
//	POST /v3/pay/transactions/{jsapi,native,app,h5}       下单
//	GET  /v3/pay/transactions/out-trade-no/{out_trade_no}  查询订单
//	GET  /v3/pay/transactions/id/{transaction_id}          查询订单
//	POST /v3/pay/transactions/out-trade-no/{no}/close      关闭订单 (204)
//	POST /v3/refund/domestic/refunds                       申请退款
//	GET  /v3/refund/domestic/refunds/{out_refund_no}       查询单笔退款
//	GET  /v3/bill/tradebill                                申请交易账单
//	GET  /v3/billdownload/file?token=…                     下载账单 (not signed)
//	GET  /v3/certificates                                  下载平台证书
//	POST /sim/v3/signing, /sim/v3/notification-signer, /sim/v3/rotate, /sim/v3/retire
//	GET  /sim/v3/certificate-downloads?mch_id=…
//
// Paths are matched exactly (v3 paths by their pattern); any other path
// is a 404.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/pay/unifiedorder":
		s.serveAPI(w, r, APIUnifiedOrder, s.unifiedOrder)
	case "/pay/orderquery":
		s.serveAPI(w, r, APIOrderQuery, s.orderQuery)
	case "/pay/closeorder":
		s.serveAPI(w, r, APICloseOrder, s.closeOrder)
	case "/secapi/pay/refund":
		s.serveAPI(w, r, APIRefund, s.refund)
	case "/pay/refundquery":
		s.serveAPI(w, r, APIRefundQuery, s.refundQuery)
	case "/pay/downloadbill":
		s.serveAPI(w, r, APIDownloadBill, s.downloadBill)
	case "/sim/pay":
		s.servePay(w, r)
	case "/sim/notify":
		s.serveNotify(w, r)
	case "/sim/refunds":
		s.serveRefunds(w, r)
	case "/sim/faults":
		s.serveFaults(w, r)
	case "/sim/notifications":
		s.serveNotifications(w, r)
	case "/sim/orders":
		s.serveOrders(w, r)
	case "/sim/cashier":
		s.serveCashier(w, r)
	case "/sns/jscode2session":
		s.serveCode2Session(w, r)
	case "/connect/oauth2/authorize":
		s.serveAuthorize(w, r)
	case "/sns/oauth2/access_token":
		s.serveOAuthToken(w, r)
	default:
		if !s.serveV3Routes(w, r) {
			http.NotFound(w, r)
		}
	}
}

// scale applies TimeScale to a delay of WeChat's.
func (s *Simulator) scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.timeScale)
}

func (s *Simulator) logf(format string, args ...any) {
	if s.logFn != nil {
		s.logFn(format, args...)
	}
}

const (
	digits   = "0123456789"
	hexLower = "0123456789abcdef"
	alnum    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// randomString returns n characters drawn uniformly from alphabet (at most
// 256 characters) with crypto/rand.
func randomString(alphabet string, n int) string {
	out := make([]byte, 0, n)
	limit := 256 - 256%len(alphabet) // reject bytes that would bias the draw
	buf := make([]byte, n+n/4+4)
	for len(out) < n {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails
		for _, c := range buf {
			if int(c) < limit {
				out = append(out, alphabet[int(c)%len(alphabet)])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out)
}
