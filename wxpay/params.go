// Package wxpay implements the WeChat Pay (微信支付) merchant protocol as a
// plain Go library: API v2 signing and verification, the flat XML codec,
// an HTTP client for WeChat's endpoints, pay notifications and the client
// pay parameters handed to mini programs, official accounts and apps.
//
// The package has no dependency on Caddy or on the ledger: package
// gateway/apiv2 drives it for the gateway (as gateway.Protocol), and
// APIv3 will be a protocol package of its own beside it.
package wxpay

import "strings"

// Param is one field of a flat API v2 document.
type Param struct {
	Name  string
	Value string
}

// Params is a flat API v2 document: its fields in document order. Names are
// unique; WeChat's field names are case-sensitive.
//
// A slice rather than a map keeps the order a document arrived in, decodes
// without hashing, and lets signing run without allocating.
type Params []Param

// Get returns the value of the named field, or "" when it is absent.
func (p Params) Get(name string) string {
	for i := range p {
		if p[i].Name == name {
			return p[i].Value
		}
	}
	return ""
}

// Lookup returns the value of the named field and whether it is present.
func (p Params) Lookup(name string) (string, bool) {
	for i := range p {
		if p[i].Name == name {
			return p[i].Value, true
		}
	}
	return "", false
}

// Set replaces the value of the named field, or appends the field.
func (p *Params) Set(name, value string) {
	for i := range *p {
		if (*p)[i].Name == name {
			(*p)[i].Value = value
			return
		}
	}
	*p = append(*p, Param{Name: name, Value: value})
}

// SetNonEmpty sets the field only when value is not empty: WeChat treats an
// empty field as absent, and signing skips it.
func (p *Params) SetNonEmpty(name, value string) {
	if value != "" {
		p.Set(name, value)
	}
}

// Delete removes the named field if present.
func (p *Params) Delete(name string) {
	for i := range *p {
		if (*p)[i].Name == name {
			*p = append((*p)[:i], (*p)[i+1:]...)
			return
		}
	}
}

// Clone returns a copy that shares no backing array with p.
func (p Params) Clone() Params {
	return append(Params(nil), p...)
}

// Map returns the fields as a map.
func (p Params) Map() map[string]string {
	m := make(map[string]string, len(p))
	for _, f := range p {
		m[f.Name] = f.Value
	}
	return m
}

// String lists the field names, never the values: documents carry signatures
// and personal data that do not belong in logs.
func (p Params) String() string {
	names := make([]string, len(p))
	for i, f := range p {
		names[i] = f.Name
	}
	return "wxpay.Params{" + strings.Join(names, ",") + "}"
}
