// Package wxpayv3 implements the protocol of WeChat Pay's APIv3 (微信支付
// APIv3) for one merchant: request signing, the verification of answers
// and notifications, the decryption of notification resources and
// platform certificates, the client pay parameters of JSAPI and APP
// payments, RSA-OAEP of sensitive fields, and an HTTP client for the
// calls a shop needs (prepay, order query and close, refund and refund
// query, trade bills, platform certificates).
//
// It uses the standard library only: no Caddy, no logger. The Caddy module
// glues it to its configuration, storage and logs (see CertificateStore and
// PlatformCertificates.Logf).
//
// # Signatures
//
// A request carries an Authorization header (see Signer) signed with the
// merchant's API private key over METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n.
// WeChat signs its answers and notifications over TIMESTAMP\nNONCE\nBODY\n
// and names the signing key in Wechatpay-Serial. Verifier.Verify checks the
// raw bytes received, refuses WeChat's WECHATPAY/SIGNTEST/ probes and
// timestamps more than 5 minutes away, and only then the signature. The
// Client verifies every answer, error answers included, before it uses it.
//
// # Verification keys
//
// The key that Wechatpay-Serial names is looked up in a KeySource, the
// whole serial matched exactly:
//
//   - WeChat Pay public key mode (微信支付公钥, the default of merchants
//     opened since late 2024): one key, from a PEM file of the merchant
//     platform, under its id PUB_KEY_ID_…: NewKeySet(map[string]*rsa.PublicKey{id: key}).
//     Send the id as Client.WechatpaySerial.
//   - Platform certificate mode (平台证书): PlatformCertificates downloads
//     the certificates from GET /v3/certificates, decrypts them with the
//     APIv3 key, verifies that answer with the certificates it lists, keeps
//     them fresh and stored, and serves their keys by serial.
//   - During a migration from certificates to the public key, WeChat signs
//     with either: KeySources{publicKeySet, platformCertificates} accepts
//     both, the first source that knows a serial answering.
//
// # Errors
//
// Calls fail with a *TransportError (no answer), a *VerifyError (an answer
// that does not verify: its content is not trusted), an *APIError (a
// verified refusal of WeChat) or a *ResponseError (a verified answer
// without what the call needs). After a money-moving call, a
// TransportError, VerifyError or ResponseError leaves the outcome unknown:
// settle it with a query (see OutcomeUnknown).
//
// Secrets (the APIv3 key, private keys) never appear in errors or in what
// this package prints; APIv3Key redacts itself when formatted or encoded.
package wxpayv3
