package wxpaysim

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/big"
	mathrand "math/rand/v2"
	"slices"
	"strings"
	"time"
)

// API versions of orders, refunds and notifications (Order.APIVersion,
// Refund.APIVersion, NotificationRecord.APIVersion).
const (
	APIVersion2 = 2 // XML, signed with the API v2 key
	APIVersion3 = 3 // JSON, signed with RSA (APIv3)
)

// PublicKeyIDPrefix starts every WeChat Pay public key id
// (PUB_KEY_ID_0114…). The id is matched as a whole string: its length is
// never validated (WeChat's docs say 32 digits, real ids have 34).
const PublicKeyIDPrefix = "PUB_KEY_ID_"

// SignatureTypeV3 is the only signature type of APIv3: the scheme of a
// request's Authorization and the Wechatpay-Signature-Type of answers and
// notifications.
const SignatureTypeV3 = "WECHATPAY2-SHA256-RSA2048"

// MaxPlatformCertificates bounds the platform certificates a merchant
// holds: RotatePlatformCertificate past it fails with ErrLimit. WeChat
// itself lists one or two.
const MaxPlatformCertificates = 16

// SignTestPrefix starts the Wechatpay-Signature of WeChat's probes that a
// merchant verifies signatures: such a signature must fail verification.
const SignTestPrefix = "WECHATPAY/SIGNTEST/"

// Signers of v3 notifications during the migration from platform
// certificates to the public key (SetV3NotificationSigner).
const (
	// SignerRandom chooses each attempt's key at random, the public key
	// with probability MerchantV3.PublicKeyShare.
	SignerRandom = ""
	// SignerPublicKey signs with the WeChat Pay public key.
	SignerPublicKey = "public_key"
	// SignerCertificate signs with the newest valid platform certificate.
	SignerCertificate = "certificate"
)

// Errors of the APIv3 controls. They are wrapped with context; test them
// with errors.Is.
var (
	// ErrUnknownMerchant means the simulator has no merchant with that
	// mch_id.
	ErrUnknownMerchant = errors.New("wxpaysim: unknown merchant")
	// ErrNoV3 means the merchant has no (valid) APIv3 configuration.
	ErrNoV3 = errors.New("wxpaysim: merchant has no APIv3")
	// ErrInvalidV3 means an APIv3 configuration or control cannot be used
	// as given.
	ErrInvalidV3 = errors.New("wxpaysim: invalid APIv3 configuration")
)

// MerchantV3 is a merchant's APIv3 configuration. The simulator holds the
// private halves of WeChat's signing material: it signs answers and
// notifications with them, and the merchant verifies with the public
// halves.
type MerchantV3 struct {
	// APIv3Key is the merchant's 32-byte APIv3 key (APIv3密钥): it
	// encrypts notification resources and platform certificates
	// (AEAD_AES_256_GCM). It is never logged.
	APIv3Key string
	// MerchantCertificate is the merchant's apiclient_cert.pem: a
	// request's Authorization must name its serial (uppercase hex) and be
	// signed by its RSA key.
	MerchantCertificate *x509.Certificate
	// PublicKeyID is the id of the WeChat Pay public key (PUB_KEY_ID_…),
	// set together with PublicKey.
	PublicKeyID string
	// PublicKey is the private half of the WeChat Pay public key (微信支付
	// 公钥): public key mode.
	PublicKey *rsa.PrivateKey
	// PlatformCertificates are WeChat's platform certificates (平台证书)
	// and their keys: certificate mode. The newest valid one signs.
	PlatformCertificates []PlatformCertificate
	// PublicKeyShare is, during the migration (both PublicKey and
	// PlatformCertificates set), the probability (0 to 1) that a
	// notification attempt is signed with the public key rather than a
	// platform certificate, unless SetV3NotificationSigner forces one.
	PublicKeyShare float64
}

// PlatformCertificate is a WeChat Pay platform certificate and its private
// key.
type PlatformCertificate struct {
	// Certificate is the platform certificate /v3/certificates lists.
	Certificate *x509.Certificate
	// Key is its RSA private key, which signs answers and notifications.
	Key *rsa.PrivateKey
}

// CertificateSerial returns a certificate's serial as WeChat writes it:
// uppercase hexadecimal without leading zeros.
func CertificateSerial(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.SerialNumber)
}

// Validate reports what is wrong with the configuration, if anything. It
// never quotes the APIv3 key.
func (v *MerchantV3) Validate() error {
	if v == nil {
		return fmt.Errorf("%w: no configuration", ErrInvalidV3)
	}
	if len(v.APIv3Key) != 32 {
		return fmt.Errorf("%w: the APIv3 key is %d bytes, want 32", ErrInvalidV3, len(v.APIv3Key))
	}
	if err := validateMerchantCertificate(v.MerchantCertificate); err != nil {
		return err
	}
	hasPK := v.PublicKey != nil || v.PublicKeyID != ""
	switch {
	case hasPK && v.PublicKey == nil:
		return fmt.Errorf("%w: public key id %s without a public key", ErrInvalidV3, v.PublicKeyID)
	case hasPK && !strings.HasPrefix(v.PublicKeyID, PublicKeyIDPrefix):
		return fmt.Errorf("%w: public key id %q does not start with %s", ErrInvalidV3, v.PublicKeyID, PublicKeyIDPrefix)
	case !hasPK && len(v.PlatformCertificates) == 0:
		return fmt.Errorf("%w: neither a public key nor a platform certificate", ErrInvalidV3)
	case len(v.PlatformCertificates) > MaxPlatformCertificates:
		return fmt.Errorf("%w: %d platform certificates, at most %d", ErrInvalidV3, len(v.PlatformCertificates), MaxPlatformCertificates)
	case math.IsNaN(v.PublicKeyShare) || v.PublicKeyShare < 0 || v.PublicKeyShare > 1:
		return fmt.Errorf("%w: public key share %v is not between 0 and 1", ErrInvalidV3, v.PublicKeyShare)
	}
	seen := map[string]bool{}
	for i, pc := range v.PlatformCertificates {
		if err := validatePlatformCertificate(pc); err != nil {
			return fmt.Errorf("platform certificate %d: %w", i, err)
		}
		serial := CertificateSerial(pc.Certificate)
		if seen[serial] || serial == v.PublicKeyID {
			return fmt.Errorf("%w: platform certificate serial %s is used twice", ErrInvalidV3, serial)
		}
		seen[serial] = true
	}
	return nil
}

func validateMerchantCertificate(c *x509.Certificate) error {
	if c == nil {
		return fmt.Errorf("%w: no merchant certificate", ErrInvalidV3)
	}
	if _, ok := c.PublicKey.(*rsa.PublicKey); !ok {
		return fmt.Errorf("%w: the merchant certificate %s has no RSA key", ErrInvalidV3, CertificateSerial(c))
	}
	if c.SerialNumber == nil || c.SerialNumber.Sign() <= 0 {
		return fmt.Errorf("%w: the merchant certificate has no serial", ErrInvalidV3)
	}
	return nil
}

func validatePlatformCertificate(pc PlatformCertificate) error {
	if pc.Certificate == nil || pc.Key == nil {
		return fmt.Errorf("%w: a certificate and its key are both needed", ErrInvalidV3)
	}
	pub, ok := pc.Certificate.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: certificate %s has no RSA key", ErrInvalidV3, CertificateSerial(pc.Certificate))
	}
	if !pub.Equal(&pc.Key.PublicKey) {
		return fmt.Errorf("%w: certificate %s does not hold its key's public half", ErrInvalidV3, CertificateSerial(pc.Certificate))
	}
	if pc.Certificate.SerialNumber == nil || pc.Certificate.SerialNumber.Sign() <= 0 {
		return fmt.Errorf("%w: a platform certificate has no serial", ErrInvalidV3)
	}
	return nil
}

// GeneratePlatformCertificate makes a self-signed RSA-2048 platform
// certificate valid from notBefore to notAfter, with a random serial, for
// RotatePlatformCertificate and tests.
func GeneratePlatformCertificate(notBefore, notAfter time.Time) (PlatformCertificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return PlatformCertificate{}, fmt.Errorf("wxpaysim: generating a platform key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return PlatformCertificate{}, fmt.Errorf("wxpaysim: generating a serial: %w", err)
	}
	serial.SetBit(serial, 156, 1) // 40 hex digits, like WeChat's serials
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Tenpay.com Root CA (wxpaysim)", Organization: []string{"Tenpay.com (wxpaysim)"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return PlatformCertificate{}, fmt.Errorf("wxpaysim: creating a platform certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return PlatformCertificate{}, fmt.Errorf("wxpaysim: parsing the platform certificate: %w", err)
	}
	return PlatformCertificate{Certificate: cert, Key: key}, nil
}

// platformCert is a platform certificate the simulator holds.
type platformCert struct {
	serial string
	cert   *x509.Certificate
	key    *rsa.PrivateKey
}

// v3Merchant is a merchant's APIv3 state, guarded by Simulator.mu. The
// keys and certificates it points to are never modified.
type v3Merchant struct {
	apiKey    []byte
	mchSerial string
	mchKey    *rsa.PublicKey
	pubKeyID  string
	pubKey    *rsa.PrivateKey
	certs     []platformCert // in the order added; the newest valid signs
	share     float64
	usePK     bool   // SetV3Signing
	useCerts  bool   // SetV3Signing
	signer    string // SetV3NotificationSigner
	downloads int    // GET /v3/certificates calls
}

func newV3Merchant(v *MerchantV3) *v3Merchant {
	m := &v3Merchant{
		apiKey:    []byte(v.APIv3Key),
		mchSerial: CertificateSerial(v.MerchantCertificate),
		mchKey:    v.MerchantCertificate.PublicKey.(*rsa.PublicKey), // validated
		pubKeyID:  v.PublicKeyID,
		pubKey:    v.PublicKey,
		share:     v.PublicKeyShare,
	}
	for _, pc := range v.PlatformCertificates {
		m.certs = append(m.certs, platformCert{serial: CertificateSerial(pc.Certificate), cert: pc.Certificate, key: pc.Key})
	}
	m.usePK, m.useCerts = m.pubKey != nil, len(m.certs) > 0
	return m
}

// pkEnabled reports whether the public key signs (public key mode or the
// migration).
func (m *v3Merchant) pkEnabled() bool { return m.pubKey != nil && m.usePK }

// certsEnabled reports whether platform certificates are in use
// (certificate mode or the migration): /v3/certificates lists them.
func (m *v3Merchant) certsEnabled() bool { return len(m.certs) > 0 && m.useCerts }

// mode names the merchant's signing mode for logs.
func (m *v3Merchant) mode() string {
	switch {
	case m.pkEnabled() && m.certsEnabled():
		return "migration (public key and platform certificates)"
	case m.pkEnabled():
		return "public key"
	default:
		return "platform certificates"
	}
}

// signingKey is a key that signs an answer or a notification, and the
// serial (public key id or certificate serial) that names it.
type signingKey struct {
	serial string
	key    *rsa.PrivateKey
}

func (m *v3Merchant) publicKeySigner() signingKey { return signingKey{m.pubKeyID, m.pubKey} }

// newestCert is the most recently added platform certificate valid at
// now, else the most recently added one.
func (m *v3Merchant) newestCert(now time.Time) platformCert {
	for i := len(m.certs) - 1; i >= 0; i-- {
		c := m.certs[i].cert
		if !now.Before(c.NotBefore) && !now.After(c.NotAfter) {
			return m.certs[i]
		}
	}
	return m.certs[len(m.certs)-1]
}

func (m *v3Merchant) certSigner(now time.Time) signingKey {
	c := m.newestCert(now)
	return signingKey{c.serial, c.key}
}

// certBySerial finds a platform certificate the merchant holds.
func (m *v3Merchant) certBySerial(serial string) (platformCert, bool) {
	i := slices.IndexFunc(m.certs, func(c platformCert) bool { return c.serial == serial })
	if i < 0 {
		return platformCert{}, false
	}
	return m.certs[i], true
}

// answerSigner is the key that signs an API answer. In public key mode it
// is the public key, in certificate mode the newest valid certificate.
// During the migration it is the key the request's Wechatpay-Serial names
// when the simulator has it, else the public key.
func (m *v3Merchant) answerSigner(requestSerial string, now time.Time) signingKey {
	switch {
	case m.pkEnabled() && m.certsEnabled():
		if c, ok := m.certBySerial(requestSerial); ok && requestSerial != "" {
			return signingKey{c.serial, c.key}
		}
		return m.publicKeySigner()
	case m.pkEnabled():
		return m.publicKeySigner()
	default:
		return m.certSigner(now)
	}
}

// certificateListSigner signs the /v3/certificates answer: a certificate
// it lists, the one the request's Wechatpay-Serial names if any.
func (m *v3Merchant) certificateListSigner(requestSerial string, now time.Time) signingKey {
	if c, ok := m.certBySerial(requestSerial); ok && requestSerial != "" {
		return signingKey{c.serial, c.key}
	}
	return m.certSigner(now)
}

// notificationSigner chooses the key of one notification attempt.
func (m *v3Merchant) notificationSigner(now time.Time) signingKey {
	switch {
	case m.pkEnabled() && m.certsEnabled():
		switch m.signer {
		case SignerPublicKey:
			return m.publicKeySigner()
		case SignerCertificate:
			return m.certSigner(now)
		}
		if mathrand.Float64() < m.share {
			return m.publicKeySigner()
		}
		return m.certSigner(now)
	case m.pkEnabled():
		return m.publicKeySigner()
	default:
		return m.certSigner(now)
	}
}

// setV3Locked installs (or, when v is nil, removes) a merchant's APIv3
// state. The count of certificate downloads survives a replacement.
func (s *Simulator) setV3Locked(mchID string, v *v3Merchant) {
	old := s.v3[mchID]
	if v == nil {
		delete(s.v3, mchID)
		return
	}
	if old != nil {
		v.downloads = old.downloads
	}
	s.v3[mchID] = v
}

// v3MerchantLocked returns a merchant's APIv3 state, or why there is none.
func (s *Simulator) v3MerchantLocked(mchID string) (*v3Merchant, error) {
	if _, ok := s.merchants[mchID]; !ok {
		return nil, fmt.Errorf("mch_id %s: %w", mchID, ErrUnknownMerchant)
	}
	m, ok := s.v3[mchID]
	if !ok {
		return nil, fmt.Errorf("mch_id %s: %w", mchID, ErrNoV3)
	}
	return m, nil
}

// SetV3Signing switches a merchant's signing mode at run time: publicKey
// alone is public key mode (/v3/certificates answers 404), certificates
// alone certificate mode, both the migration. A mode needs its material
// (MerchantV3.PublicKey, a platform certificate); at least one must be
// on. It fails with ErrUnknownMerchant, ErrNoV3 or ErrInvalidV3, wrapped.
func (s *Simulator) SetV3Signing(mchID string, publicKey, certificates bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.v3MerchantLocked(mchID)
	if err != nil {
		return fmt.Errorf("wxpaysim: set v3 signing: %w", err)
	}
	switch {
	case !publicKey && !certificates:
		return fmt.Errorf("wxpaysim: set v3 signing of mch_id %s: %w: neither the public key nor certificates", mchID, ErrInvalidV3)
	case publicKey && m.pubKey == nil:
		return fmt.Errorf("wxpaysim: set v3 signing of mch_id %s: %w: the merchant has no public key", mchID, ErrInvalidV3)
	case certificates && len(m.certs) == 0:
		return fmt.Errorf("wxpaysim: set v3 signing of mch_id %s: %w: the merchant has no platform certificate", mchID, ErrInvalidV3)
	}
	m.usePK, m.useCerts = publicKey, certificates
	s.logf("wxpaysim: mch_id %s signs in %s mode", mchID, m.mode())
	return nil
}

// SetV3NotificationSigner forces the key that signs a merchant's v3
// notifications during the migration: SignerPublicKey, SignerCertificate,
// or SignerRandom (the default: MerchantV3.PublicKeyShare decides each
// attempt). Outside the migration the merchant's only kind of key signs
// whatever this says. It fails with ErrUnknownMerchant, ErrNoV3 or
// ErrInvalidV3, wrapped.
func (s *Simulator) SetV3NotificationSigner(mchID, signer string) error {
	switch signer {
	case SignerRandom, SignerPublicKey, SignerCertificate:
	default:
		return fmt.Errorf("wxpaysim: set v3 notification signer: %w: signer %q (want %q, %q or empty)", ErrInvalidV3, signer, SignerPublicKey, SignerCertificate)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.v3MerchantLocked(mchID)
	if err != nil {
		return fmt.Errorf("wxpaysim: set v3 notification signer: %w", err)
	}
	m.signer = signer
	return nil
}

// RotatePlatformCertificate adds a platform certificate to a merchant: it
// signs from then on (while valid), and /v3/certificates lists it with the
// older ones until RetirePlatformCertificate. Certificates are used from
// then on unless SetV3Signing turned them off before. It fails with
// ErrUnknownMerchant, ErrNoV3, ErrInvalidV3 or ErrLimit (past
// MaxPlatformCertificates), wrapped.
func (s *Simulator) RotatePlatformCertificate(mchID string, pc PlatformCertificate) error {
	if err := validatePlatformCertificate(pc); err != nil {
		return fmt.Errorf("wxpaysim: rotate platform certificate: %w", err)
	}
	serial := CertificateSerial(pc.Certificate)
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.v3MerchantLocked(mchID)
	if err != nil {
		return fmt.Errorf("wxpaysim: rotate platform certificate: %w", err)
	}
	if _, dup := m.certBySerial(serial); dup || serial == m.pubKeyID {
		return fmt.Errorf("wxpaysim: rotate platform certificate of mch_id %s: %w: serial %s is already used", mchID, ErrInvalidV3, serial)
	}
	if len(m.certs) >= MaxPlatformCertificates {
		return fmt.Errorf("wxpaysim: rotate platform certificate of mch_id %s: %d certificates: %w", mchID, len(m.certs), ErrLimit)
	}
	if len(m.certs) == 0 {
		m.useCerts = true
	}
	m.certs = append(m.certs, platformCert{serial: serial, cert: pc.Certificate, key: pc.Key})
	s.logf("wxpaysim: mch_id %s: platform certificate %s added, %d listed", mchID, serial, len(m.certs))
	return nil
}

// RetirePlatformCertificate removes a platform certificate from a
// merchant's list. The last certificate of a merchant without a public
// key cannot be retired; retiring the last one of a merchant with a public
// key leaves public key mode. It fails with ErrUnknownMerchant, ErrNoV3 or
// ErrInvalidV3, wrapped.
func (s *Simulator) RetirePlatformCertificate(mchID, serial string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.v3MerchantLocked(mchID)
	if err != nil {
		return fmt.Errorf("wxpaysim: retire platform certificate: %w", err)
	}
	i := slices.IndexFunc(m.certs, func(c platformCert) bool { return c.serial == serial })
	switch {
	case i < 0:
		return fmt.Errorf("wxpaysim: retire platform certificate of mch_id %s: %w: no certificate %s", mchID, ErrInvalidV3, serial)
	case len(m.certs) == 1 && m.pubKey == nil:
		return fmt.Errorf("wxpaysim: retire platform certificate of mch_id %s: %w: %s is its only key", mchID, ErrInvalidV3, serial)
	}
	m.certs = slices.Delete(m.certs, i, i+1)
	if len(m.certs) == 0 {
		m.useCerts, m.usePK = false, true
	}
	s.logf("wxpaysim: mch_id %s: platform certificate %s retired, %d listed, %s mode", mchID, serial, len(m.certs), m.mode())
	return nil
}

// CertificateDownloads returns how many GET /v3/certificates calls the
// merchant made that passed authentication (404s of public key mode
// included), since it was first added.
func (s *Simulator) CertificateDownloads(mchID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.v3[mchID]; ok {
		return m.downloads
	}
	return 0
}

// signV3 signs an answer or a notification: base64 of RSA PKCS#1 v1.5
// SHA-256 over "TIMESTAMP\nNONCE\nBODY\n".
func signV3(key *rsa.PrivateKey, timestamp, nonce string, body []byte) (string, error) {
	h := sha256.New()
	h.Write([]byte(timestamp + "\n" + nonce + "\n"))
	h.Write(body)
	h.Write([]byte("\n"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h.Sum(nil))
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// sealV3 encrypts plain as WeChat encrypts notification resources and
// certificates: AEAD_AES_256_GCM keyed by the APIv3 key, the 12-byte nonce
// and the associated data as given, the 16-byte tag appended, base64.
func sealV3(key []byte, nonce, associatedData string, plain []byte) (string, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("AES key: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", fmt.Errorf("GCM: %w", err)
	}
	if len(nonce) != gcm.NonceSize() {
		return "", fmt.Errorf("GCM nonce of %d bytes, want %d", len(nonce), gcm.NonceSize())
	}
	return base64.StdEncoding.EncodeToString(gcm.Seal(nil, []byte(nonce), plain, []byte(associatedData))), nil
}
