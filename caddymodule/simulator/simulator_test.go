package simulator

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

type nextHandler struct{ called bool }

func (n *nextHandler) ServeHTTP(http.ResponseWriter, *http.Request) error {
	n.called = true
	return nil
}

// Anyone who reaches the simulator can have it sign notifications: it
// serves loopback peers only, unless allow_remote; other paths go on.
func TestLoopbackOnly(t *testing.T) {
	sim := wxpaysim.New(wxpaysim.Config{Merchants: []wxpaysim.Merchant{{MchID: "10000100", Key: "192006250b4c09247ec02edce69f6a2d", AppIDs: []string{"wx1"}}}})
	defer sim.Close()
	for _, tc := range []struct {
		peer, path string
		remote     bool
		want       int
		next       bool
	}{
		{"127.0.0.1:5000", "/sim/notifications", false, 200, false},
		{"[::1]:5000", "/sim/notifications", false, 200, false},
		{"203.0.113.9:5000", "/sim/notifications", false, 403, false},
		{"203.0.113.9:5000", "/pay/unifiedorder", false, 403, false},
		{"203.0.113.9:5000", "/backend/events", false, 403, false},
		{"203.0.113.9:5000", "/sim/notifications", true, 200, false},
		{"203.0.113.9:5000", "/shop", false, 200, true},
		{"203.0.113.9:5000", "/shop/", false, 403, false},
		{"127.0.0.1:5000", "/shop/", false, 200, false},
	} {
		s := &Simulator{AllowRemote: tc.remote, sim: sim, backend: &demoBackend{}}
		if tc.path == "/shop/" {
			s.shop = newDemoShop(s.backend)
		}
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Forwarded-For", "127.0.0.1") // never trusted here
		w := httptest.NewRecorder()
		next := &nextHandler{}
		if err := s.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		if w.Code != tc.want || next.called != tc.next {
			t.Errorf("%s %s (allow_remote %v): %d, next %v; want %d, next %v", tc.peer, tc.path, tc.remote, w.Code, next.called, tc.want, tc.next)
		}
	}
}
