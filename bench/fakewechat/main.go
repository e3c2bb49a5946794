// Command fakewechat is the load test's stand-in for WeChat Pay and for the
// merchant's backend: a deliberately trivial HTTP server on a loopback
// address, so that what the load test measures is Caddy.
//
//   - every path but /upstream/… answers 200 with one fixed unifiedorder
//     reply, signed (MD5) with the test merchant's key and computed once at
//     start: return_code and result_code SUCCESS, appid, mch_id,
//     nonce_str, prepay_id, trade_type, sign. The gateway accepts it for
//     any JSAPI order of the test merchant; the plain reverse_proxy
//     baseline gets the same bytes.
//   - POST /v3/pay/transactions/jsapi answers APIv3's {"prepay_id"},
//     signed with the demo's WeChat Pay public key (demo/v3), signed
//     afresh once a second (APIv3 answers carry a timestamp the gateway
//     checks), so that the fake's own cost per order stays near nothing.
//   - /upstream/… answers 204 with no body: the merchant's backend taking
//     an event.
//
// It reads (and discards) every request body, never checks a signature and
// keeps no state.
package main

import (
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/bench"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "loopback address to listen on")
	root := flag.String("root", ".", "the repository, whose demo/v3 keys sign APIv3 answers")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("fakewechat: -listen %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("fakewechat: -listen %q is not a loopback address", *listen)
	}
	reply, err := bench.UnifiedOrderReply()
	if err != nil {
		log.Fatalf("fakewechat: %v", err)
	}
	keys, err := bench.LoadV3Keys(*root)
	if err != nil {
		log.Fatalf("fakewechat: %v", err)
	}
	v3 := &v3Answer{key: keys.WeChat}
	replyType := []string{"text/xml; charset=utf-8"}
	replyLen := []string{strconv.Itoa(len(reply))}

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.URL.Path, "/upstream/") {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.URL.Path == "/v3/pay/transactions/jsapi" {
			hdr, body, err := v3.get(time.Now())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			h := w.Header()
			maps.Copy(h, hdr)
			h["Content-Length"] = []string{strconv.Itoa(len(body))}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
			return
		}
		h := w.Header()
		h["Content-Type"] = replyType
		h["Content-Length"] = replyLen
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(reply)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("fakewechat: %v", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = srv.Close()
	}()
	fmt.Printf("fakewechat: listening on http://%s (reply %d bytes)\n", ln.Addr(), len(reply))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("fakewechat: %v", err)
	}
}

// v3Answer is the APIv3 prepay answer, signed afresh once a second.
type v3Answer struct {
	key  *rsa.PrivateKey
	mu   sync.Mutex
	sec  int64
	hdr  http.Header
	body []byte
}

func (a *v3Answer) get(now time.Time) (http.Header, []byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sec != now.Unix() {
		h, b, err := bench.V3PrepayAnswer(a.key, now)
		if err != nil {
			return nil, nil, err
		}
		a.sec, a.hdr, a.body = now.Unix(), h, b
	}
	return a.hdr, a.body, nil
}
