package wxpayv3

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is an in-memory CertificateStore that counts its calls.
type memStore struct {
	mu       sync.Mutex
	data     []byte
	loads    int
	stores   int
	loadErr  error
	storeErr error
}

func (s *memStore) Load(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads++
	if s.loadErr != nil {
		return nil, s.loadErr
	}
	if s.data == nil {
		return nil, fmt.Errorf("memstore: %w", fs.ErrNotExist)
	}
	return append([]byte(nil), s.data...), nil
}

func (s *memStore) Store(_ context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stores++
	if s.storeErr != nil {
		return s.storeErr
	}
	s.data = append([]byte(nil), b...)
	return nil
}

func (s *memStore) counts() (loads, stores int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads, s.stores
}

// certWeChat is a fake WeChat that serves /v3/certificates: the listed
// certificates, signed by the first one's key, or what fail says.
type certWeChat struct {
	*fakeWeChat
	mu     sync.Mutex
	list   []*x509.Certificate
	keys   map[string]*rsa.PrivateKey
	fail   string        // "", "500", "rogue"
	gate   chan struct{} // when set, downloads wait for it
	served atomic.Int32
}

func newCertWeChat(t *testing.T) *certWeChat {
	w := &certWeChat{fakeWeChat: newFakeWeChat(t)}
	f := w.f
	w.keys = map[string]*rsa.PrivateKey{
		f.v.Serials["platform"]: f.platformKey, f.v.Serials["platform2"]: f.platform2Key, f.v.Serials["platform_old"]: f.oldKey,
	}
	w.list = []*x509.Certificate{f.platformCert, f.platform2}
	w.handle(func(r *seenRequest) *reply {
		if r.Path != "/v3/certificates" {
			return nil
		}
		w.mu.Lock()
		list, fail, gate := w.list, w.fail, w.gate
		w.mu.Unlock()
		if gate != nil {
			<-gate
		}
		w.served.Add(1)
		switch fail {
		case "500":
			return &reply{status: 500, body: []byte(`{"code":"SYSTEM_ERROR","message":"系统繁忙"}`), signKey: f.platformKey, serial: f.v.Serials["platform"]}
		case "rogue":
			return certsAnswer(t, f.key, list, f.rogueKey, CertificateSerial(list[0]))
		}
		return certsAnswer(t, f.key, list, w.keys[CertificateSerial(list[0])], CertificateSerial(list[0]))
	})
	return w
}

func (w *certWeChat) set(list []*x509.Certificate, fail string) {
	w.mu.Lock()
	w.list, w.fail = list, fail
	w.mu.Unlock()
}

// platform returns PlatformCertificates of the fake, in certificate mode:
// the client's verifier asks the PlatformCertificates themselves.
func (w *certWeChat) platform(store CertificateStore) *PlatformCertificates {
	c := w.client()
	c.WechatpaySerial = ""
	p := &PlatformCertificates{Client: c, Key: w.f.key, Store: store, Now: w.clock.Now, MinRefreshGap: time.Minute, RefreshEvery: time.Hour}
	c.Verifier = &Verifier{Keys: p, Now: w.clock.Now}
	return p
}

func TestPlatformCertificatesStartAndRestart(t *testing.T) {
	w := newCertWeChat(t)
	f := w.f
	store := &memStore{}
	var logs []string
	var logMu sync.Mutex
	p := w.platform(store)
	p.Logf = func(format string, args ...any) {
		logMu.Lock()
		logs = append(logs, fmt.Sprintf(format, args...))
		logMu.Unlock()
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if n := w.served.Load(); n != 1 {
		t.Fatalf("%d downloads at start", n)
	}
	if loads, stores := store.counts(); loads != 1 || stores != 1 {
		t.Fatalf("store: %d loads, %d stores", loads, stores)
	}
	for _, s := range []string{f.v.Serials["platform"], f.v.Serials["platform2"]} {
		if k, ok := p.VerificationKey(s); !ok || k == nil {
			t.Fatalf("serial %s unknown", s)
		}
		// The same number padded to whole bytes, or in lower case (the
		// SDKs write serials either way).
		for _, same := range []string{"0" + s, "00" + s, strings.ToLower(s)} {
			if k, ok := p.lookup(same); !ok || k == nil {
				t.Fatalf("serial %s (%s) unknown", same, s)
			}
		}
	}
	for _, other := range []string{f.v.Serials["platform"] + "0", "1" + f.v.Serials["platform"], ""} {
		if _, ok := p.lookup(other); ok {
			t.Fatalf("serial %q found", other)
		}
	}
	if got := p.Newest(); got != f.v.Serials["platform2"] {
		t.Fatalf("Newest = %s", got)
	}
	if got := p.Serials(); !slices.Equal(got, []string{f.v.Serials["platform"], f.v.Serials["platform2"]}) {
		t.Fatalf("Serials = %q", got)
	}
	stored, err := ParseCertificates(store.data)
	if err != nil || len(stored) != 2 {
		t.Fatalf("stored bundle: %v", err)
	}
	if err := p.Start(context.Background()); err == nil {
		t.Fatal("started twice")
	}
	logMu.Lock()
	if len(logs) == 0 {
		t.Error("nothing logged")
	}
	logMu.Unlock()

	// A restart loads the store and downloads nothing.
	p2 := w.platform(store)
	if err := p2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	if n := w.served.Load(); n != 1 {
		t.Fatalf("restart downloaded: %d downloads", n)
	}
	if _, ok := p2.VerificationKey(f.v.Serials["platform"]); !ok || p2.Newest() != f.v.Serials["platform2"] {
		t.Fatal("restart lost the certificates")
	}
	// The restarted set verifies WeChat's answers (here a signed 204).
	w.handle(func(*seenRequest) *reply {
		return &reply{status: 204, signKey: f.platform2Key, serial: f.v.Serials["platform2"]}
	})
	if err := p2.Client.Close(context.Background(), "O1"); err != nil {
		t.Fatal(err)
	}
}

func TestPlatformCertificatesStoreUnusable(t *testing.T) {
	w := newCertWeChat(t)
	f := w.f
	for _, tt := range []struct {
		name  string
		store *memStore
	}{
		{"only expired stored", &memStore{data: EncodeCertificates([]*x509.Certificate{f.oldCert})}},
		{"corrupt store", &memStore{data: []byte("not PEM")}},
		{"store fails", &memStore{loadErr: errors.New("disk on fire")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := w.served.Load()
			p := w.platform(tt.store)
			if err := p.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			if w.served.Load() != before+1 {
				t.Fatal("no download")
			}
			if _, ok := p.VerificationKey(f.v.Serials["platform"]); !ok {
				t.Fatal("not usable")
			}
			if slices.Contains(p.Serials(), f.v.Serials["platform_old"]) {
				t.Fatal("expired certificate kept")
			}
		})
	}
	// A store that cannot store: the certificates are used all the same.
	p := w.platform(&memStore{storeErr: errors.New("read-only")})
	var logged atomic.Bool
	p.Logf = func(format string, args ...any) {
		if errors.Is(fmt.Errorf(format, args...), fs.ErrNotExist) {
			return
		}
		logged.Store(true)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if _, ok := p.VerificationKey(f.v.Serials["platform"]); !ok || !logged.Load() {
		t.Fatal("a store failure broke the certificates, or went unlogged")
	}
}

func TestPlatformCertificatesSingleFlight(t *testing.T) {
	w := newCertWeChat(t)
	p := w.platform(nil)
	gate := make(chan struct{})
	w.mu.Lock()
	w.gate = gate
	w.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- p.Refresh(context.Background()) })
	}
	// Let every caller reach Refresh (one downloading, held at the gate,
	// nineteen waiting for it), then let the one download through.
	deadline := time.Now().Add(5 * time.Second)
	for (len(w.requests()) < 1 || refreshWaiters() < 19) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := refreshWaiters(); n < 19 {
		t.Fatalf("%d callers waiting for the download, want 19", n)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := w.count("/v3/certificates"); n != 1 {
		t.Fatalf("%d downloads for 20 concurrent refreshes", n)
	}
	// A caller whose context ends stops waiting.
	w.mu.Lock()
	w.gate = make(chan struct{})
	gate = w.gate
	w.mu.Unlock()
	go p.Refresh(context.Background())
	for w.count("/v3/certificates") < 2 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Refresh(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(gate)
}

func TestPlatformCertificatesRateLimit(t *testing.T) {
	w := newCertWeChat(t)
	f := w.f
	p := w.platform(nil)
	// Before Start, unknown serials trigger nothing.
	if _, ok := p.VerificationKey("FORGED"); ok {
		t.Fatal("forged serial known")
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if w.served.Load() != 1 {
		t.Fatal("no download at start")
	}
	// A flood of forged serials after the start-up download (which does
	// not count against the gap) makes one download; another flood within
	// MinRefreshGap of it makes none; after the gap, one again.
	ver := &Verifier{Keys: p, Now: w.clock.Now}
	var wg sync.WaitGroup
	flood := func() {
		for i := range 200 {
			wg.Go(func() {
				h := signAnswer(t, f.rogueKey, fmt.Sprintf("FORGED%03d", i), w.clock.Now().Unix(), "n", nil)
				var unknown *UnknownSerialError
				if err := ver.Verify(h, nil); !errors.As(err, &unknown) {
					t.Errorf("forged serial: %v", err)
				}
			})
		}
		wg.Wait()
		// Wait for the background downloads that were triggered (each
		// was added to p.async before VerificationKey returned).
		p.async.Wait()
	}
	settle := p.async.Wait
	flood()
	if n := w.served.Load(); n != 2 {
		t.Fatalf("%d downloads after the first flood, want 2 (start-up, one triggered)", n)
	}
	w.clock.Advance(30 * time.Second)
	flood()
	if n := w.served.Load(); n != 2 {
		t.Fatalf("%d downloads after a flood within the gap, want 2", n)
	}
	w.clock.Advance(31 * time.Second)
	flood()
	if n := w.served.Load(); n != 3 {
		t.Fatalf("%d downloads after a flood past the gap, want 3", n)
	}
	// Public key ids never trigger a download.
	w.clock.Advance(time.Hour)
	p.VerificationKey(f.v.PublicKeyID)
	settle()
	if n := w.served.Load(); n != 3 {
		t.Fatalf("a public key id triggered a download")
	}
	// A new certificate WeChat starts signing with is found through the
	// download its serial triggers, which the first message waits for.
	w.set([]*x509.Certificate{f.platformCert, f.platform2, f.rogueCert}, "")
	w.keys[f.v.Serials["rogue"]] = f.rogueKey
	if _, ok := p.VerificationKey(f.v.Serials["rogue"]); !ok {
		t.Fatal("the triggered refresh did not bring the new certificate")
	}
	settle()
}

func TestPlatformCertificatesKeepOldSet(t *testing.T) {
	w := newCertWeChat(t)
	f := w.f
	store := &memStore{}
	p := w.platform(store)
	w.set([]*x509.Certificate{f.platformCert}, "")
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	for _, tt := range []struct {
		name string
		list []*x509.Certificate
		fail string
		want func(error) bool
	}{
		{"WeChat fails", []*x509.Certificate{f.platform2}, "500", func(err error) bool { var ae *APIError; return errors.As(err, &ae) }},
		{"answer signed by a rogue key", []*x509.Certificate{f.platform2}, "rogue", func(err error) bool { var ve *VerifyError; return errors.As(err, &ve) }},
		{"only expired certificates", []*x509.Certificate{f.oldCert}, "", func(err error) bool { return err != nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w.set(tt.list, tt.fail)
			err := p.Refresh(context.Background())
			if !tt.want(err) {
				t.Fatalf("err = %v", err)
			}
			errorContains(t, err, "keeping the previous set")
			if got := p.Serials(); !slices.Equal(got, []string{f.v.Serials["platform"]}) {
				t.Fatalf("set changed to %q", got)
			}
		})
	}
	if _, stores := store.counts(); stores != 1 {
		t.Fatalf("%d stores: a failed refresh stored", stores)
	}
	// A good download replaces the set (no union with the old one).
	w.set([]*x509.Certificate{f.platform2}, "")
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.Serials(); !slices.Equal(got, []string{f.v.Serials["platform2"]}) {
		t.Fatalf("set %q", got)
	}
}

func TestPlatformCertificatesExpiry(t *testing.T) {
	w := newCertWeChat(t)
	f := w.f
	p := w.platform(nil)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	// Between A's expiry (2030-01-01) and B's (2030-06-01).
	w.clock.Set(time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC))
	if _, ok := p.VerificationKey(f.v.Serials["platform"]); ok {
		t.Fatal("expired certificate still verifies")
	}
	if _, ok := p.VerificationKey(f.v.Serials["platform2"]); !ok {
		t.Fatal("valid certificate lost")
	}
	if got := p.Serials(); !slices.Equal(got, []string{f.v.Serials["platform2"]}) {
		t.Fatalf("Serials = %q", got)
	}
	if p.Newest() != f.v.Serials["platform2"] {
		t.Fatal("Newest")
	}
	// Before B is valid, the newest valid one is A.
	w.clock.Set(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	if p.Newest() != f.v.Serials["platform"] {
		t.Fatalf("Newest = %s", p.Newest())
	}
	if _, ok := p.VerificationKey(f.v.Serials["platform2"]); ok {
		t.Fatal("a certificate not yet valid verifies")
	}
	w.clock.Set(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	if p.Newest() != "" || len(p.Serials()) != 0 {
		t.Fatal("expired certificates served")
	}
	var empty PlatformCertificates
	if empty.Newest() != "" || empty.Serials() != nil {
		t.Fatal("empty")
	}
	empty.Stop() // not started: nothing to do
}

func TestPlatformCertificatesStartFailureKeepsRunning(t *testing.T) {
	w := newCertWeChat(t)
	f := w.f
	w.set(nil, "500")
	p := w.platform(&memStore{})
	p.MinRefreshGap = 10 * time.Millisecond
	p.RefreshEvery = time.Hour
	// Nothing is known yet to verify WeChat's error answer with.
	err := p.Start(context.Background())
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Code != "SYSTEM_ERROR" {
		t.Fatalf("Start: err = %v", err)
	}
	defer p.Stop()
	if p.Newest() != "" {
		t.Fatal("certificates without a download")
	}
	// WeChat recovers: the loop retries after MinRefreshGap, not RefreshEvery.
	w.set([]*x509.Certificate{f.platformCert}, "")
	deadline := time.Now().Add(5 * time.Second)
	for p.Newest() == "" {
		if time.Now().After(deadline) {
			t.Fatal("no retry after a failed start")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPlatformCertificatesLoop(t *testing.T) {
	w := newCertWeChat(t)
	p := w.platform(nil)
	p.RefreshEvery = 10 * time.Millisecond
	// A start-up deadline, as a caller may give: its end does not stop
	// the background refresh.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for w.served.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatal("the loop does not refresh after the start-up context ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Stop ends the loop and waits for it.
	p.Stop()
	n := w.served.Load()
	time.Sleep(50 * time.Millisecond)
	if w.served.Load() != n {
		t.Fatal("refreshes after Stop")
	}
	// It can start again.
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Stop()
}

// Verification goes on while refreshes replace the set: run with -race.
func TestPlatformCertificatesRace(t *testing.T) {
	w := newCertWeChat(t)
	f := w.f
	p := w.platform(nil)
	p.RefreshEvery = 2 * time.Millisecond
	p.MinRefreshGap = time.Millisecond
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	pub := NewKeySet(map[string]*rsa.PublicKey{f.v.PublicKeyID: f.wechatPub})
	ver := &Verifier{Keys: KeySources{pub, p}, Now: w.clock.Now} // the migration: both accepted
	bodyA, bodyPub := []byte(`{"a":1}`), []byte(`{"p":1}`)
	hA := signAnswer(t, f.platformKey, f.v.Serials["platform"], w.clock.Now().Unix(), "n1", bodyA)
	hPub := signAnswer(t, f.wechatKey, f.v.PublicKeyID, w.clock.Now().Unix(), "n2", bodyPub)
	hForged := signAnswer(t, f.rogueKey, "FORGED", w.clock.Now().Unix(), "n3", bodyA)
	stop := time.Now().Add(200 * time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := ver.Verify(hA, bodyA); err != nil {
					t.Errorf("platform certificate: %v", err)
					return
				}
				if err := ver.Verify(hPub, bodyPub); err != nil {
					t.Errorf("public key: %v", err)
					return
				}
				if err := ver.Verify(hForged, bodyA); err == nil {
					t.Error("forged serial verified")
					return
				}
				_ = p.Newest()
				_ = p.Serials()
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(stop) {
			if err := p.Refresh(context.Background()); err != nil {
				t.Errorf("refresh: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if w.served.Load() < 2 {
		t.Fatal("no refresh happened during the race")
	}
}

// Stop cuts a start-up download still under way.
func TestPlatformCertificatesStopDuringStart(t *testing.T) {
	w := newCertWeChat(t)
	gate := make(chan struct{}) // opened only at the end: the download hangs
	w.mu.Lock()
	w.gate = gate
	w.mu.Unlock()
	t.Cleanup(func() { close(gate) }) // before the server closes
	p := w.platform(nil)
	started := make(chan error, 1)
	go func() { started <- p.Start(context.Background()) }()
	for len(w.requests()) == 0 {
		time.Sleep(time.Millisecond)
	}
	p.Stop()
	select {
	case err := <-started:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not cut the start-up")
	}
}

// Gateways sharing one store: the one whose turn it is downloads, the
// others read what it stored, and never download on their periodic
// refresh.
func TestPlatformCertificatesRefreshTurn(t *testing.T) {
	w := newCertWeChat(t)
	store := &memStore{}
	f := w.f
	w.set([]*x509.Certificate{f.platformCert}, "")
	leader, follower := w.platform(store), w.platform(store)
	// The follower's own requests, counted on its client (the fake serves
	// both, and the leader's may land at any time).
	var followerCalls atomic.Int32
	follower.Client.HTTPClient = &http.Client{Transport: countingTransport{base: follower.Client.HTTPClient.Transport, n: &followerCalls}}
	leader.RefreshEvery, follower.RefreshEvery = 10*time.Millisecond, 10*time.Millisecond
	var asked atomic.Int32
	leader.RefreshTurn = func(context.Context) bool { return true }
	follower.RefreshTurn = func(context.Context) bool { asked.Add(1); return false }
	if err := leader.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer leader.Stop()
	if err := follower.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer follower.Stop()
	if n := followerCalls.Load(); n != 0 {
		t.Fatalf("the follower made %d calls at start, want none (it reads the store)", n)
	}
	// WeChat adds a certificate: the follower learns it from the store.
	w.set([]*x509.Certificate{f.platform2, f.platformCert}, "")
	want := f.v.Serials["platform2"]
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(follower.Serials(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the follower never read the new certificate from the store: %v", follower.Serials())
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for asked.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("RefreshTurn is not asked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := followerCalls.Load(); n != 0 {
		t.Fatalf("the follower made %d calls to WeChat, want none: it is not its turn", n)
	}
	if w.served.Load() < 2 {
		t.Fatalf("%d downloads: the leader did not refresh", w.served.Load())
	}
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	base http.RoundTripper
	n    *atomic.Int32
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if c.base == nil {
		return http.DefaultTransport.RoundTrip(r)
	}
	return c.base.RoundTrip(r)
}

// refreshWaiters counts the goroutines waiting in Refresh for another's
// download.
func refreshWaiters() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "(*PlatformCertificates).Refresh") && !strings.Contains(g, "(*PlatformCertificates).download") {
			count++
		}
	}
	return count
}

// WeChat answers a merchant in public key mode that it has no platform
// certificates (404 RESOURCE_NOT_EXISTS). With the public key configured
// too (Optional), that is normal: Start returns it (the caller logs it
// once), and the background neither logs it again nor asks again before a
// whole RefreshEvery. Without another key it is a failure: retried sooner,
// and logged each time.
func TestPlatformCertificatesAbsentInPublicKeyMode(t *testing.T) {
	for _, optional := range []bool{true, false} {
		t.Run(map[bool]string{true: "with a public key", false: "certificates only"}[optional], func(t *testing.T) {
			p := &PlatformCertificates{Optional: optional, MinRefreshGap: 10 * time.Millisecond, RefreshEvery: time.Hour}
			w, logged := startWithoutCertificates(t, p)
			// Retries after a failure: 10 ms, 20, 40, 80, 160: in public key
			// mode none in 300 ms; otherwise the first two (given 5 s).
			deadline := time.Now().Add(map[bool]time.Duration{true: 300 * time.Millisecond, false: 5 * time.Second}[optional])
			for time.Now().Before(deadline) && (optional || logged.count("RESOURCE_NOT_EXISTS") < 2) {
				time.Sleep(5 * time.Millisecond)
			}
			p.Stop()
			again, downloads := logged.count("RESOURCE_NOT_EXISTS"), w.count("/v3/certificates")
			if optional && (downloads != 1 || again != 0) {
				t.Fatalf("public key mode: %d downloads, the 404 logged %d times in the background:\n%s", downloads, again, logged)
			}
			if !optional && (downloads < 3 || again < 2) {
				t.Fatalf("certificates only: %d downloads, %d logged, want retries, each logged", downloads, again)
			}
		})
	}
}

// In a cluster, the gateways whose turn it is not to download read the
// certificates back from the store; in public key mode nothing is there
// (WeChat has none): with the public key configured (Optional), that is
// the normal absence too, not logged at each refresh.
func TestPlatformCertificatesAbsentOnAFollower(t *testing.T) {
	store := &memStore{}
	p := &PlatformCertificates{Optional: true, Store: store, RefreshTurn: func(context.Context) bool { return false },
		MinRefreshGap: 10 * time.Millisecond, RefreshEvery: 50 * time.Millisecond}
	_, logged := startWithoutCertificates(t, p)
	waitUntil(t, "the store read back at least twice", func() bool { store.mu.Lock(); defer store.mu.Unlock(); return store.loads >= 3 })
	p.Stop()
	if logged.count("reading back") != 0 {
		t.Fatalf("public key mode, not this gateway's turn, logged:\n%s", logged)
	}
}

// startWithoutCertificates starts p against a WeChat that has no platform
// certificates for the merchant (public key mode: 404
// RESOURCE_NOT_EXISTS), p's Logf recorded.
func startWithoutCertificates(t *testing.T, p *PlatformCertificates) (*fakeWeChat, *logLines) {
	t.Helper()
	w := newFakeWeChat(t)
	body := []byte(`{"code":"RESOURCE_NOT_EXISTS","message":"无可用的平台证书"}`)
	w.handle(func(*seenRequest) *reply { return &reply{status: http.StatusNotFound, body: body} })
	c := w.client()
	logged := &logLines{}
	p.Client, p.Key, p.Now, p.Logf = c, w.f.key, w.clock.Now, logged.logf
	c.Verifier = &Verifier{Keys: KeySources{c.Verifier.Keys, p}, Now: w.clock.Now}
	if err := p.Start(context.Background()); !IsNoPlatformCertificates(err) {
		t.Fatalf("Start: %v, want WeChat's 404 RESOURCE_NOT_EXISTS", err)
	}
	return w, logged
}

// logLines records what a Logf receives.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// count is how many lines contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
