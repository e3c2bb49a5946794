package wxpayv3

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CertificateStore keeps the platform certificates between runs, as a PEM
// bundle, so that a restart does not need a download. Implementations must
// be safe for concurrent use.
type CertificateStore interface {
	// Load returns the stored bundle, or an error satisfying
	// errors.Is(err, fs.ErrNotExist) when nothing is stored.
	Load(ctx context.Context) ([]byte, error)
	// Store replaces the stored bundle.
	Store(ctx context.Context, pemBundle []byte) error
}

// Defaults of PlatformCertificates.
const (
	DefaultRefreshEvery  = 12 * time.Hour
	DefaultMinRefreshGap = time.Minute
	// DefaultUnknownSerialWait is how long VerificationKey waits, by
	// default, for a download when a serial is unknown.
	DefaultUnknownSerialWait = 5 * time.Second
)

// PlatformCertificates keeps a merchant's platform certificates (平台证书)
// up to date and serves their keys to a Verifier, as a KeySource. It
// downloads them with Client.DownloadCertificates (verified with the
// certificates listed), replaces its set only with a download that
// verified and parsed, drops expired certificates, and keeps a copy in
// Store. Downloads are single-flight, and the downloads that unknown
// serials trigger are rate-limited by MinRefreshGap, so that a flood of
// forged serials cannot make it hammer WeChat.
//
// Configure the exported fields, then call Start; call Stop when done. It
// is safe for concurrent use. It must not be copied after first use.
type PlatformCertificates struct {
	// Client downloads the certificates.
	Client *Client
	// Key is the APIv3 key that decrypts them.
	Key APIv3Key
	// Store keeps them between runs; nil keeps nothing.
	Store CertificateStore
	// RefreshEvery is the period of the background refresh;
	// DefaultRefreshEvery (12h) when zero. After a failed refresh the
	// loop retries sooner, from MinRefreshGap doubling up to RefreshEvery.
	RefreshEvery time.Duration
	// RefreshTurn, when set, is asked before each periodic refresh
	// whether this process is the one to download, when several share
	// one Store (gateways behind a load balancer): when it answers false,
	// the certificates are read back from Store instead, where the one
	// whose turn it is keeps them. Downloads that unknown serials trigger
	// do not ask: a rotation is fetched at once wherever it is seen.
	RefreshTurn func(ctx context.Context) bool
	// MinRefreshGap is the least time between two downloads that unknown
	// serials trigger (the start-up download and the periodic refresh do
	// not count: a certificate rotated just after start is fetched at
	// once); DefaultMinRefreshGap (1 minute) when zero.
	MinRefreshGap time.Duration
	// UnknownSerialWait bounds how long VerificationKey waits for a
	// download when a serial is unknown; DefaultUnknownSerialWait (5 s)
	// when zero.
	UnknownSerialWait time.Duration
	// Now is the clock of certificate validity and of the rate limit;
	// time.Now when nil.
	Now func() time.Time
	// Logf, when set, receives what happens in the background: refreshes,
	// their failures, a store that fails. It must be safe for concurrent
	// use.
	Logf func(format string, args ...any)
	// Optional: the merchant verifies WeChat with a WeChat Pay public key
	// too. WeChat answering that it has no platform certificates for the
	// merchant (IsNoPlatformCertificates: the merchant is in public key
	// mode) is then normal: not passed to Logf, and the next periodic
	// download waits a whole RefreshEvery instead of retrying sooner.
	// (Start still returns that answer, for the caller to log once.)
	Optional bool

	set atomic.Pointer[certSet]

	mu       sync.Mutex
	flight   *refreshFlight     // the download under way, if any
	lastTry  time.Time          // when the last download an unknown serial triggered started
	runCtx   context.Context    // non-nil between Start and Stop
	cancel   context.CancelFunc // ends runCtx
	loopDone chan struct{}      // closed when the loop has returned
	async    sync.WaitGroup     // downloads that unknown serials triggered
}

// certSet is an immutable set of platform certificates.
type certSet struct {
	certs    []*x509.Certificate
	bySerial map[string]*x509.Certificate
}

// canonicalSerial is a certificate serial (hex) as CertificateSerial
// writes it: upper case, no leading zero. WeChat's and the SDKs' serials
// differ in that (one pads to whole bytes, one does not): a serial is
// compared as the number it is.
func canonicalSerial(serial string) string {
	return strings.TrimLeft(strings.ToUpper(serial), "0")
}

func newCertSet(certs []*x509.Certificate) *certSet {
	s := &certSet{certs: certs, bySerial: make(map[string]*x509.Certificate, len(certs))}
	for _, c := range certs {
		s.bySerial[CertificateSerial(c)] = c
	}
	return s
}

// refreshFlight is one download that concurrent Refresh calls share.
type refreshFlight struct {
	done chan struct{}
	err  error
}

func (p *PlatformCertificates) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

func (p *PlatformCertificates) refreshEvery() time.Duration {
	if p.RefreshEvery <= 0 {
		return DefaultRefreshEvery
	}
	return p.RefreshEvery
}

func (p *PlatformCertificates) minGap() time.Duration {
	if p.MinRefreshGap <= 0 {
		return DefaultMinRefreshGap
	}
	return p.MinRefreshGap
}

func (p *PlatformCertificates) logf(format string, args ...any) {
	if p.Logf != nil {
		p.Logf(format, args...)
	}
}

// Start loads the stored certificates (the unexpired ones), downloads them
// only when nothing usable is stored, and starts the background refresh,
// which runs until Stop. ctx bounds the start-up load and download only
// (a start-up deadline is fine): its end does not stop the background
// refresh, Stop does (and Stop also cuts a start-up still under way). It
// returns the error of the load and download when it ends without a
// usable certificate, but keeps running so that a later refresh (periodic,
// or triggered by an unknown serial) can succeed.
func (p *PlatformCertificates) Start(ctx context.Context) error {
	if p.Client == nil {
		return errors.New("wxpayv3: platform certificates: no Client")
	}
	if err := p.Key.Validate(); err != nil {
		return fmt.Errorf("wxpayv3: platform certificates: %w", err)
	}
	p.mu.Lock()
	if p.cancel != nil {
		p.mu.Unlock()
		return errors.New("wxpayv3: platform certificates: already started")
	}
	// The background lives until Stop, whatever becomes of ctx (its
	// values are kept); the start-up ends with ctx or with Stop.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	p.runCtx, p.cancel, p.loopDone = runCtx, cancel, done
	p.mu.Unlock()

	startCtx, startCancel := context.WithCancel(ctx)
	stopStart := context.AfterFunc(runCtx, startCancel)
	err := p.loadOrDownload(startCtx)
	stopStart()
	startCancel()
	go p.loop(runCtx, done, err)
	return err
}

// loadOrDownload fills the set from the store, or else by a download.
func (p *PlatformCertificates) loadOrDownload(ctx context.Context) error {
	var loadErr error
	if p.Store != nil {
		b, err := p.Store.Load(ctx)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.logf("wxpayv3: platform certificates: none stored, downloading")
		case err != nil:
			loadErr = fmt.Errorf("wxpayv3: platform certificates: loading the stored ones: %w", err)
			p.logf("%v; downloading", loadErr)
		default:
			certs, err := ParseCertificates(b)
			if err != nil {
				loadErr = fmt.Errorf("wxpayv3: platform certificates: the stored bundle: %w", err)
				p.logf("%v; downloading", loadErr)
				break
			}
			if usable := p.usable(certs); len(usable) > 0 {
				p.set.Store(newCertSet(usable))
				p.logf("wxpayv3: platform certificates: loaded %s from the store", strings.Join(serialsOf(usable), ", "))
				return nil
			}
			p.logf("wxpayv3: platform certificates: the %d stored are expired or unusable, downloading", len(certs))
		}
	}
	if err := p.Refresh(ctx); err != nil {
		return errors.Join(loadErr, err)
	}
	return nil
}

// reload reads the certificates back from Store (another process
// downloaded them) and uses them if any is usable.
func (p *PlatformCertificates) reload(ctx context.Context) error {
	b, err := p.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("wxpayv3: platform certificates: reading back the stored ones: %w", err)
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return fmt.Errorf("wxpayv3: platform certificates: the stored bundle: %w", err)
	}
	usable := p.usable(certs)
	if len(usable) == 0 {
		return fmt.Errorf("wxpayv3: platform certificates: the %d stored are expired or unusable", len(certs))
	}
	p.set.Store(newCertSet(usable))
	return nil
}

// usable keeps the unexpired RSA certificates.
func (p *PlatformCertificates) usable(certs []*x509.Certificate) []*x509.Certificate {
	now := p.now()
	var out []*x509.Certificate
	for _, c := range certs {
		if now.After(c.NotAfter) {
			continue
		}
		if _, err := certPublicKey(c); err != nil {
			continue
		}
		out = append(out, c)
	}
	return out
}

// loop refreshes every RefreshEvery, sooner after a failure, until Stop
// ends ctx.
func (p *PlatformCertificates) loop(ctx context.Context, done chan struct{}, lastErr error) {
	defer close(done)
	every, gap := p.refreshEvery(), p.minGap()
	retry := gap
	for {
		wait := every
		if p.normalAbsence(lastErr) {
			retry = gap
		} else if lastErr != nil || p.set.Load() == nil {
			wait = retry
			retry = min(2*retry, every)
		} else {
			retry = gap
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if p.RefreshTurn != nil && p.Store != nil && !p.RefreshTurn(ctx) {
			lastErr = p.reload(ctx)
		} else {
			lastErr = p.Refresh(ctx)
		}
		if lastErr != nil && !p.normalAbsence(lastErr) {
			p.logf("%v", lastErr)
		}
	}
}

// normalAbsence reports whether err is WeChat saying it has no platform
// certificates for a merchant that has another key (Optional), or, where
// another process downloads (RefreshTurn), that it stored none.
func (p *PlatformCertificates) normalAbsence(err error) bool {
	return p.Optional && (IsNoPlatformCertificates(err) || errors.Is(err, fs.ErrNotExist))
}

// IsNoPlatformCertificates reports whether err is WeChat's answer that it
// has no platform certificates for the merchant (404 RESOURCE_NOT_EXISTS,
// "无可用的平台证书"): a merchant in WeChat Pay public key mode.
func IsNoPlatformCertificates(err error) bool {
	var (
		ae *APIError
		ve *VerifyError
	)
	return (errors.As(err, &ae) && ae.Code == "RESOURCE_NOT_EXISTS") ||
		(errors.As(err, &ve) && ve.Status == http.StatusNotFound && ve.Code == "RESOURCE_NOT_EXISTS")
}

// Stop ends the background refresh and waits for it, and for the
// downloads unknown serials triggered. The certificates stay usable.
func (p *PlatformCertificates) Stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.loopDone
	p.cancel, p.runCtx, p.loopDone = nil, nil, nil
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	p.async.Wait()
}

// Refresh downloads the certificates now. Concurrent calls share one
// download. The new set replaces the old one only when the download
// verified and holds an unexpired certificate; otherwise the old set stays
// and the error says why. The store is then updated (a failure to store
// is logged, not returned).
func (p *PlatformCertificates) Refresh(ctx context.Context) error {
	p.mu.Lock()
	if f := p.flight; f != nil {
		p.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := &refreshFlight{done: make(chan struct{})}
	p.flight = f
	p.mu.Unlock()
	err := p.download(ctx)
	p.land(f, err)
	return err
}

// land ends a download: its waiters hear its result.
func (p *PlatformCertificates) land(f *refreshFlight, err error) {
	p.mu.Lock()
	p.flight = nil
	p.mu.Unlock()
	f.err = err
	close(f.done)
}

func (p *PlatformCertificates) download(ctx context.Context) error {
	if p.Client == nil {
		return errors.New("wxpayv3: platform certificates: no Client")
	}
	certs, err := p.Client.DownloadCertificates(ctx, p.Key)
	if err != nil {
		return fmt.Errorf("wxpayv3: platform certificates: refresh failed, keeping the previous set: %w", err)
	}
	usable := p.usable(certs)
	if len(usable) == 0 {
		return fmt.Errorf("wxpayv3: platform certificates: WeChat listed %d, none unexpired: keeping the previous set", len(certs))
	}
	p.set.Store(newCertSet(usable))
	p.logf("wxpayv3: platform certificates: downloaded %s", strings.Join(serialsOf(usable), ", "))
	if p.Store != nil {
		if err := p.Store.Store(ctx, EncodeCertificates(usable)); err != nil {
			p.logf("wxpayv3: platform certificates: storing them failed (they are in use all the same): %v", err)
		}
	}
	return nil
}

// VerificationKey returns the key of the platform certificate serial
// names, when it is in the set and valid now. For an unknown serial
// (between Start and Stop, never for a public key id) it waits, at most
// UnknownSerialWait, for a download: the one under way (the start-up's,
// say), or one it starts unless the last such started less than
// MinRefreshGap ago; then it looks again. So the first answer WeChat signs
// with a new certificate verifies, and a flood of forged serials costs at
// most one download a minute.
func (p *PlatformCertificates) VerificationKey(serial string) (*rsa.PublicKey, bool) {
	if k, ok := p.lookup(serial); ok {
		return k, true
	}
	if strings.HasPrefix(serial, PublicKeyIDPrefix) {
		return nil, false
	}
	done := p.triggerRefresh(p.now())
	if done == nil {
		return nil, false
	}
	t := time.NewTimer(p.unknownSerialWait())
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		return nil, false
	}
	return p.lookup(serial)
}

// lookup finds a certificate of the set valid now.
func (p *PlatformCertificates) lookup(serial string) (*rsa.PublicKey, bool) {
	if s := p.set.Load(); s != nil {
		if c, ok := s.bySerial[canonicalSerial(serial)]; ok && validAt(c, p.now()) {
			return c.PublicKey.(*rsa.PublicKey), true
		}
	}
	return nil, false
}

func (p *PlatformCertificates) unknownSerialWait() time.Duration {
	if p.UnknownSerialWait <= 0 {
		return DefaultUnknownSerialWait
	}
	return p.UnknownSerialWait
}

// triggerRefresh returns the download to wait for: the one under way, or
// one it starts in the background unless the last it started is less than
// MinRefreshGap old; nil when there is none (or outside Start and Stop).
func (p *PlatformCertificates) triggerRefresh(now time.Time) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runCtx == nil {
		return nil
	}
	if p.flight != nil {
		return p.flight.done
	}
	if d := now.Sub(p.lastTry); !p.lastTry.IsZero() && d >= 0 && d < p.minGap() {
		return nil
	}
	p.lastTry = now
	f := &refreshFlight{done: make(chan struct{})}
	p.flight = f
	ctx := p.runCtx
	p.async.Add(1)
	go func() {
		defer p.async.Done()
		err := p.download(ctx)
		if err != nil && !p.normalAbsence(err) {
			p.logf("%v", err)
		}
		p.land(f, err)
	}()
	return f.done
}

// Newest returns the serial of the newest certificate valid now (the
// latest NotBefore), "" when there is none: the one to name in
// Wechatpay-Serial.
func (p *PlatformCertificates) Newest() string {
	s := p.set.Load()
	if s == nil {
		return ""
	}
	now := p.now()
	var best *x509.Certificate
	for _, c := range s.certs {
		if !validAt(c, now) {
			continue
		}
		if best == nil || c.NotBefore.After(best.NotBefore) ||
			(c.NotBefore.Equal(best.NotBefore) && c.NotAfter.After(best.NotAfter)) {
			best = c
		}
	}
	return CertificateSerial(best)
}

// Serials returns the serials of the certificates held that are not
// expired, sorted.
func (p *PlatformCertificates) Serials() []string {
	s := p.set.Load()
	if s == nil {
		return nil
	}
	now := p.now()
	var out []string
	for _, c := range s.certs {
		if !now.After(c.NotAfter) {
			out = append(out, CertificateSerial(c))
		}
	}
	slices.Sort(out)
	return out
}

func serialsOf(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = CertificateSerial(c)
	}
	return out
}
