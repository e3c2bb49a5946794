package caddymodule

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/gateway/apiv3"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// hasV3 reports whether any APIv3 option is set.
func (cfg *Merchant) hasV3() bool {
	return cfg.APIv3Key != "" || cfg.PrivateKey != "" || cfg.MchSerial != "" || cfg.MerchantCert != "" ||
		cfg.WechatpayPublicKeyID != "" || cfg.WechatpayPublicKey != "" || cfg.PlatformCertificates != ""
}

// PEMOrFile resolves a key or certificate option named field: a
// placeholder may give the PEM itself ({file.…} of a PEM file, {env.…});
// anything else is a file path. The error names the field, never the
// content: a value that is not a readable file is shown only when the
// configuration gave it as it is (no placeholder) and it is short and
// without spaces, as a path is (a key given some other way, base64 DER
// for instance, is not).
func PEMOrFile(field, raw string, repl *caddy.Replacer) ([]byte, error) {
	v := strings.TrimSpace(repl.ReplaceAll(raw, ""))
	if v == "" {
		return nil, fmt.Errorf("%s is empty once resolved%s", field, emptyFrom(raw))
	}
	if strings.HasPrefix(v, "-----BEGIN") {
		return []byte(v), nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		switch {
		case !strings.Contains(raw, "{") && len(v) <= maxShownPath && !strings.ContainsFunc(v, unicode.IsSpace):
			return nil, fmt.Errorf("%s: reading %s: %w", field, v, err)
		case strings.Contains(raw, "{"):
			return nil, fmt.Errorf("%s: %s resolves to neither PEM (-----BEGIN …) nor a file that can be read: %w (the value is not shown)", field, raw, err)
		}
		return nil, fmt.Errorf("%s: its value (%d characters, not shown) is neither PEM (-----BEGIN …) nor a file that can be read: %w", field, len(v), err)
	}
	return b, nil
}

// maxShownPath bounds a file name an error shows.
const maxShownPath = 256

// provisionV3 builds the merchant's APIv3 protocol: the request signer
// (private key and serial), the keys that verify WeChat (public key,
// platform certificates or both), and the platform certificates' manager,
// which rt starts and stops with the app.
func (cfg *Merchant) provisionV3(ctx caddy.Context, name, mchID string, repl *caddy.Replacer, endpoint, failover string,
	timeout time.Duration, logger *zap.Logger, rt *merchantRuntime) (gateway.Protocol, error) {
	if cfg.APIv3Key == "" {
		return nil, errors.New("api_v3_key is required with api_version v3")
	}
	v3Key := wxpayv3.APIv3Key(strings.TrimSpace(repl.ReplaceAll(cfg.APIv3Key, "")))
	if err := v3Key.Validate(); err != nil {
		return nil, fmt.Errorf("api_v3_key %s: %w", describeSecretSource(cfg.APIv3Key), err)
	}
	if cfg.PrivateKey == "" {
		return nil, errors.New("private_key is required with api_version v3 (apiclient_key.pem)")
	}
	keyPEM, err := PEMOrFile("private_key", cfg.PrivateKey, repl)
	if err != nil {
		return nil, err
	}
	key, err := wxpayv3.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("private_key %s: %w", describeSecretSource(cfg.PrivateKey), err)
	}
	serial, err := cfg.merchantSerial(repl, key)
	if err != nil {
		return nil, err
	}

	// The keys that verify WeChat.
	var sources wxpayv3.KeySources
	wechatpaySerial := ""
	pubID := strings.TrimSpace(repl.ReplaceAll(cfg.WechatpayPublicKeyID, ""))
	switch {
	case pubID != "" && cfg.WechatpayPublicKey == "":
		return nil, errors.New("wechatpay_public_key needs the key's PEM after its id")
	case pubID == "" && cfg.WechatpayPublicKey != "":
		return nil, errors.New("wechatpay_public_key needs its id (PUB_KEY_ID_…) before the PEM")
	case pubID != "":
		if err := wxpayv3.CheckPublicKeyID(pubID); err != nil {
			return nil, fmt.Errorf("wechatpay_public_key: %w", err)
		}
		pubPEM, err := PEMOrFile("wechatpay_public_key", cfg.WechatpayPublicKey, repl)
		if err != nil {
			return nil, err
		}
		pub, err := wxpayv3.ParsePublicKey(pubPEM)
		if err != nil {
			return nil, fmt.Errorf("wechatpay_public_key %s: %w", pubID, err)
		}
		sources = append(sources, wxpayv3.NewKeySet(map[string]*rsa.PublicKey{pubID: pub}))
		wechatpaySerial = pubID
	}
	certsMode := strings.ToLower(strings.TrimSpace(cfg.PlatformCertificates))
	switch certsMode {
	case "":
		certsMode = "auto"
		if pubID != "" {
			certsMode = "off"
		}
	case "auto", "off":
	default:
		return nil, fmt.Errorf("platform_certificates %q: want auto or off", cfg.PlatformCertificates)
	}
	if certsMode == "off" && pubID == "" {
		return nil, errors.New("api_version v3 needs a way to verify WeChat: wechatpay_public_key <PUB_KEY_ID_…> <pem>, or platform_certificates auto")
	}

	client := &wxpayv3.Client{
		MchID:    mchID,
		Signer:   &wxpayv3.Signer{MchID: mchID, Serial: serial, Key: key},
		Endpoint: endpoint, HTTPClient: wxpay.NewHTTPClient(256), Timeout: timeout,
		WechatpaySerial:  wechatpaySerial,
		FailoverEndpoint: failover,
		OnFailover: func(op string, err error) {
			logger.Warn("WeChat Pay call failed over to the disaster-recovery endpoint",
				zap.String("merchant", name), zap.String("op", op), zap.String("failover_endpoint", failover), zap.Error(err))
		},
	}
	rt.closers = append(rt.closers, client.HTTPClient.CloseIdleConnections)
	if certsMode == "auto" {
		certs := &wxpayv3.PlatformCertificates{
			Client: client, Key: v3Key, Store: &certificateStore{storage: ctx.Storage(), key: "wxpay/platform_certificates/" + mchID + ".pem"},
			Optional: pubID != "", // the public key verifies WeChat when it has no certificates
			Logf: func(format string, args ...any) {
				logger.Info(fmt.Sprintf(format, args...), zap.String("merchant", name))
			},
		}
		// Gateways sharing a ledger (and Caddy's storage) download in
		// turn: the lease outlives one refresh period, so its holder
		// renews it at each refresh, and another takes over when it
		// stops.
		certs.RefreshTurn = func(ctx context.Context) bool {
			return rt.takeTurn(ctx, "platform_certificates/"+mchID, wxpayv3.DefaultRefreshEvery*3/2)
		}
		sources = append(sources, certs)
		if wechatpaySerial == "" {
			client.WechatpaySerialFunc = certs.Newest
		}
		rt.starters = append(rt.starters, func() {
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
				defer cancel()
				if err := certs.Start(sctx); err != nil {
					if certs.Optional && wxpayv3.IsNoPlatformCertificates(err) {
						logger.Info("WeChat has no platform certificates for this merchant (public key mode): the public key verifies it",
							zap.String("merchant", name))
						return
					}
					logger.Warn("platform certificates not loaded yet; they are fetched again when WeChat names an unknown serial",
						zap.String("merchant", name), gateway.LogError(err))
				}
			}()
		})
		rt.stoppers = append(rt.stoppers, certs.Stop)
	}
	client.Verifier = &wxpayv3.Verifier{Keys: sources}
	return apiv3.New(apiv3.Config{Client: client, PrivateKey: key, APIv3Key: v3Key}), nil
}

// merchantSerial is the merchant certificate's serial: mch_serial, or
// read from merchant_cert (whose key must be private_key's); with both,
// they must agree.
func (cfg *Merchant) merchantSerial(repl *caddy.Replacer, key *rsa.PrivateKey) (string, error) {
	serial := strings.ToUpper(strings.TrimSpace(repl.ReplaceAll(cfg.MchSerial, "")))
	// As `openssl x509 -noout -serial` prints it: serial=5B65…
	serial = strings.TrimPrefix(serial, "SERIAL=")
	if strings.Trim(serial, "0123456789ABCDEF") != "" {
		return "", fmt.Errorf("mch_serial %q is not a certificate serial (hexadecimal digits, as the merchant platform or openssl x509 -noout -serial shows it)", serial)
	}
	if cfg.MerchantCert == "" {
		if serial == "" {
			return "", errors.New("mch_serial (the serial of apiclient_cert.pem) or merchant_cert is required with api_version v3")
		}
		return serial, nil
	}
	certPEM, err := PEMOrFile("merchant_cert", cfg.MerchantCert, repl)
	if err != nil {
		return "", err
	}
	cert, err := wxpayv3.ParseCertificate(certPEM)
	if err != nil {
		return "", fmt.Errorf("merchant_cert: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return "", errors.New("merchant_cert is not the certificate of private_key")
	}
	certSerial := wxpayv3.CertificateSerial(cert)
	if serial != "" {
		// As numbers: openssl pads a serial to whole bytes, WeChat does not.
		n, ok := new(big.Int).SetString(serial, 16)
		if !ok || n.Cmp(cert.SerialNumber) != 0 {
			return "", fmt.Errorf("mch_serial %s does not match merchant_cert, whose serial is %s", serial, certSerial)
		}
		certSerial = serial
	}
	if time.Now().After(cert.NotAfter) {
		return "", fmt.Errorf("merchant_cert %s expired on %s", certSerial, cert.NotAfter.Format(time.DateOnly))
	}
	return certSerial, nil
}

// certificateStore keeps a merchant's platform certificates in Caddy's
// storage, so that a restart, and every instance of a cluster sharing the
// storage, loads them without downloading them.
type certificateStore struct {
	storage certmagic.Storage
	key     string
}

func (s *certificateStore) Load(ctx context.Context) ([]byte, error) {
	b, err := s.storage.Load(ctx, s.key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("platform certificates: %w", fs.ErrNotExist)
	}
	return b, err
}

func (s *certificateStore) Store(ctx context.Context, pemBundle []byte) error {
	return s.storage.Store(ctx, s.key, pemBundle)
}

// Interface guard
var _ wxpayv3.CertificateStore = (*certificateStore)(nil)
