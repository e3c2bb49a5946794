package wxpay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// API v2 speaks flat XML: one root element (<xml>, or <root> inside an
// encrypted refund notification) whose children are fields with text or
// CDATA values. This file holds a purpose-built codec for exactly that shape.
// The decoder refuses what it cannot parse safely (DOCTYPE, entities other
// than XML's five and character references, nesting, attributes,
// processing instructions, comments) instead of guessing, and decodes a
// typical document with two allocations.

// MaxFields bounds the fields of a decoded document.
const MaxFields = 256

// XMLError reports a document the decoder refuses and where.
type XMLError struct {
	Offset int    // byte offset in the document
	Msg    string // what is wrong
}

func (e *XMLError) Error() string {
	return fmt.Sprintf("wxpay: xml: %s at byte %d", e.Msg, e.Offset)
}

// ErrNotUTF8 means a document is not valid UTF-8 (WeChat's NOT_UTF8).
var ErrNotUTF8 = errors.New("wxpay: xml: document is not valid UTF-8")

// EncodeXML encodes p as a flat <xml> document with every value in CDATA.
func EncodeXML(p Params) ([]byte, error) {
	return AppendXML(make([]byte, 0, 64+32*len(p)), "xml", p)
}

// AppendXML appends p to dst as a flat document with the given root element.
// A value containing "]]>" is split across CDATA sections so that it cannot
// end the section early, and a carriage return is written as &#13; outside
// CDATA (a parser would read a raw one as "\n"); a name that is not a plain
// XML name, or a value with characters XML 1.0 cannot carry, is an error.
func AppendXML(dst []byte, root string, p Params) ([]byte, error) {
	if !validName(root) {
		return dst, fmt.Errorf("wxpay: xml: invalid root element name %q", root)
	}
	dst = append(dst, '<')
	dst = append(dst, root...)
	dst = append(dst, '>')
	for _, f := range p {
		if !validName(f.Name) {
			return dst, fmt.Errorf("wxpay: xml: invalid field name %q", f.Name)
		}
		if err := checkChars(f.Value); err != nil {
			return dst, fmt.Errorf("wxpay: xml: field %s: %w", f.Name, err)
		}
		dst = append(dst, '<')
		dst = append(dst, f.Name...)
		dst = append(dst, "><![CDATA["...)
		v := f.Value
		for {
			i := strings.Index(v, "]]>")
			j := strings.IndexByte(v, '\r')
			if j >= 0 && (i < 0 || j < i) {
				// A parser reads a raw CR as LF, even inside CDATA; only
				// a character reference carries it.
				dst = append(dst, v[:j]...)
				dst = append(dst, "]]>&#13;<![CDATA["...)
				v = v[j+1:]
				continue
			}
			if i < 0 {
				break
			}
			// "]]" closes this section, ">" opens the next one.
			dst = append(dst, v[:i+2]...)
			dst = append(dst, "]]><![CDATA["...)
			v = v[i+2:]
		}
		dst = append(dst, v...)
		dst = append(dst, "]]></"...)
		dst = append(dst, f.Name...)
		dst = append(dst, '>')
	}
	dst = append(dst, "</"...)
	dst = append(dst, root...)
	dst = append(dst, '>')
	return dst, nil
}

// DecodeXML decodes a flat <xml> document.
func DecodeXML(data []byte) (Params, error) {
	return DecodeFlatXML(data, "xml")
}

// DecodeFlatXML decodes a flat document whose root element is root.
func DecodeFlatXML(data []byte, root string) (Params, error) {
	if !utf8.Valid(data) {
		return nil, ErrNotUTF8
	}
	d := flatDecoder{s: string(data)}
	return d.document(root)
}

type flatDecoder struct {
	s string
	i int
}

func (d *flatDecoder) errorf(format string, args ...any) error {
	return &XMLError{Offset: d.i, Msg: fmt.Sprintf(format, args...)}
}

func (d *flatDecoder) rest() string { return d.s[d.i:] }

func (d *flatDecoder) skipSpace() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

func (d *flatDecoder) document(root string) (Params, error) {
	if strings.HasPrefix(d.s, "\ufeff") {
		d.i = len("\ufeff")
	}
	d.skipSpace()
	if strings.HasPrefix(d.rest(), "<?xml") {
		end := strings.Index(d.rest(), "?>")
		if end < 0 {
			return nil, d.errorf("unterminated XML declaration")
		}
		if err := checkDeclaration(d.rest()[len("<?xml"):end]); err != nil {
			return nil, d.errorf("%v", err)
		}
		d.i += end + 2
		d.skipSpace()
	}
	if err := d.refuseMarkup(); err != nil {
		return nil, err
	}
	name, selfClosing, err := d.openTag()
	if err != nil {
		return nil, err
	}
	if name != root {
		return nil, d.errorf("root element is <%s>, want <%s>", name, root)
	}
	// One allocation for the fields: a field needs at least "<a/>".
	p := make(Params, 0, min(strings.Count(d.rest(), "</")+1, MaxFields))
	for !selfClosing {
		d.skipSpace()
		if strings.HasPrefix(d.rest(), "</") {
			if err := d.closeTag(root); err != nil {
				return nil, err
			}
			break
		}
		if d.i >= len(d.s) {
			return nil, d.errorf("document ends inside <%s>", root)
		}
		if d.s[d.i] != '<' || strings.HasPrefix(d.rest(), "<![CDATA[") {
			return nil, d.errorf("text outside a field")
		}
		if err := d.refuseMarkup(); err != nil {
			return nil, err
		}
		f, err := d.field()
		if err != nil {
			return nil, err
		}
		if _, dup := p.Lookup(f.Name); dup {
			return nil, d.errorf("field <%s> appears twice", f.Name)
		}
		if len(p) == MaxFields {
			return nil, d.errorf("more than %d fields", MaxFields)
		}
		p = append(p, f)
	}
	d.skipSpace()
	if d.i != len(d.s) {
		return nil, d.errorf("content after the root element")
	}
	return p, nil
}

// refuseMarkup refuses the markup a flat document never needs and a parser
// must not interpret: DOCTYPE (and with it entity declarations), other
// declarations, comments and processing instructions.
func (d *flatDecoder) refuseMarkup() error {
	r := d.rest()
	switch {
	case strings.HasPrefix(r, "<!DOCTYPE"), strings.HasPrefix(r, "<!doctype"):
		return d.errorf("DOCTYPE is not allowed")
	case strings.HasPrefix(r, "<!ENTITY"):
		return d.errorf("entity declarations are not allowed")
	case strings.HasPrefix(r, "<!--"):
		return d.errorf("comments are not allowed")
	case strings.HasPrefix(r, "<![CDATA["):
		return nil
	case strings.HasPrefix(r, "<!"):
		return d.errorf("declarations are not allowed")
	case strings.HasPrefix(r, "<?"):
		return d.errorf("processing instructions are not allowed")
	}
	return nil
}

// openTag reads "<name>" or "<name/>".
func (d *flatDecoder) openTag() (name string, selfClosing bool, err error) {
	if d.i >= len(d.s) || d.s[d.i] != '<' {
		return "", false, d.errorf("expected an element")
	}
	d.i++
	start := d.i
	for d.i < len(d.s) && isNameByte(d.s[d.i]) {
		d.i++
	}
	name = d.s[start:d.i]
	if !validName(name) {
		return "", false, d.errorf("invalid element name")
	}
	d.skipSpace()
	switch {
	case strings.HasPrefix(d.rest(), "/>"):
		d.i += 2
		return name, true, nil
	case strings.HasPrefix(d.rest(), ">"):
		d.i++
		return name, false, nil
	case d.i < len(d.s):
		return "", false, d.errorf("attributes are not allowed on <%s>", name)
	}
	return "", false, d.errorf("document ends inside a tag")
}

// closeTag reads "</name>".
func (d *flatDecoder) closeTag(name string) error {
	start := d.i
	d.i += 2
	for d.i < len(d.s) && isNameByte(d.s[d.i]) {
		d.i++
	}
	if got := d.s[start+2 : d.i]; got != name {
		d.i = start
		return d.errorf("</%s> closes <%s>", got, name)
	}
	d.skipSpace()
	if d.i >= len(d.s) || d.s[d.i] != '>' {
		return d.errorf("malformed closing tag of <%s>", name)
	}
	d.i++
	return nil
}

// field reads one child element and its value.
func (d *flatDecoder) field() (Param, error) {
	name, selfClosing, err := d.openTag()
	if err != nil {
		return Param{}, err
	}
	if selfClosing {
		return Param{Name: name}, nil
	}
	var (
		single  string // the value while it is one contiguous run
		builder strings.Builder
		runs    int
	)
	add := func(s string) {
		runs++
		switch runs {
		case 1:
			single = s
		case 2:
			builder.WriteString(single)
			builder.WriteString(s)
		default:
			builder.WriteString(s)
		}
	}
	for {
		r := d.rest()
		switch {
		case r == "":
			return Param{}, d.errorf("document ends inside <%s>", name)
		case strings.HasPrefix(r, "<![CDATA["):
			end := strings.Index(r[9:], "]]>")
			if end < 0 {
				return Param{}, d.errorf("unterminated CDATA section in <%s>", name)
			}
			add(normalizeNewlines(r[9 : 9+end]))
			d.i += 9 + end + 3
		case strings.HasPrefix(r, "</"):
			if err := d.closeTag(name); err != nil {
				return Param{}, err
			}
			v := single
			if runs > 1 {
				v = builder.String()
			}
			if err := checkChars(v); err != nil {
				return Param{}, d.errorf("field <%s>: %v", name, err)
			}
			return Param{Name: name, Value: v}, nil
		case r[0] == '<':
			if err := d.refuseMarkup(); err != nil {
				return Param{}, err
			}
			return Param{}, d.errorf("nested element inside <%s>", name)
		case r[0] == '&':
			s, n, err := decodeReference(r)
			if err != nil {
				return Param{}, d.errorf("%v in <%s>", err, name)
			}
			add(s)
			d.i += n
		default:
			n := strings.IndexAny(r, "<&")
			if n < 0 {
				n = len(r)
			}
			if strings.Contains(r[:n], "]]>") {
				return Param{}, d.errorf("\"]]>\" in text of <%s>", name)
			}
			add(normalizeNewlines(r[:n]))
			d.i += n
		}
	}
}

// normalizeNewlines turns the line endings of a raw run of text or CDATA
// into "\n", as XML parsers do. A CR written as a character reference is
// not a line ending and stays.
func normalizeNewlines(s string) string {
	if strings.IndexByte(s, '\r') < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// checkDeclaration checks the inside of an XML declaration (between "<?xml"
// and "?>") against XML 1.0's grammar: version 1.0, and if an encoding is
// named, UTF-8. A document that declares another version or encoding
// cannot be read as the UTF-8 XML 1.0 this decoder reads, so it is refused
// rather than misread.
func checkDeclaration(s string) error {
	names := []string{"version", "encoding", "standalone"}
	for n := 0; ; n++ {
		rest := strings.TrimLeft(s, " \t\r\n")
		if rest == "" {
			if n == 0 {
				return errors.New("XML declaration has no version")
			}
			return nil
		}
		if len(rest) == len(s) {
			return errors.New("malformed XML declaration")
		}
		var name string
		for len(names) > 0 && name == "" {
			if strings.HasPrefix(rest, names[0]) {
				name = names[0]
			} else if n == 0 {
				return errors.New("XML declaration has no version")
			}
			names = names[1:]
		}
		if name == "" {
			return errors.New("malformed XML declaration")
		}
		rest = strings.TrimLeft(rest[len(name):], " \t\r\n")
		if !strings.HasPrefix(rest, "=") {
			return errors.New("malformed XML declaration")
		}
		rest = strings.TrimLeft(rest[1:], " \t\r\n")
		if rest == "" || rest[0] != '"' && rest[0] != '\'' {
			return errors.New("malformed XML declaration")
		}
		end := strings.IndexByte(rest[1:], rest[0])
		if end < 0 {
			return errors.New("malformed XML declaration")
		}
		value := rest[1 : 1+end]
		s = rest[2+end:]
		switch {
		case name == "version" && value != "1.0":
			return fmt.Errorf("XML version %q is not supported, only 1.0", value)
		case name == "encoding" && !strings.EqualFold(value, "UTF-8"):
			return fmt.Errorf("encoding %q is not UTF-8", value)
		case name == "standalone" && value != "yes" && value != "no":
			return errors.New("malformed XML declaration")
		}
	}
}

// decodeReference decodes one of XML's five predefined entities or a
// character reference at the start of r. Any other entity is refused: a
// flat document never needs one, and expanding them is how XML bombs work.
func decodeReference(r string) (string, int, error) {
	end := strings.IndexByte(r, ';')
	if end < 0 || end > 12 {
		return "", 0, errors.New("unterminated entity reference")
	}
	ref := r[1:end]
	switch ref {
	case "lt":
		return "<", end + 1, nil
	case "gt":
		return ">", end + 1, nil
	case "amp":
		return "&", end + 1, nil
	case "quot":
		return `"`, end + 1, nil
	case "apos":
		return "'", end + 1, nil
	}
	if strings.HasPrefix(ref, "#") {
		var (
			n   uint64
			err error
		)
		if strings.HasPrefix(ref, "#x") {
			n, err = strconv.ParseUint(ref[2:], 16, 32)
		} else {
			n, err = strconv.ParseUint(ref[1:], 10, 32)
		}
		if err != nil || !isXMLChar(rune(n)) {
			return "", 0, fmt.Errorf("invalid character reference &%s;", ref)
		}
		return string(rune(n)), end + 1, nil
	}
	return "", 0, fmt.Errorf("entity &%s; is not allowed", ref)
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.'
}

// validName accepts the names WeChat uses and a little more: a letter or
// underscore, then letters, digits, '_', '-' and '.'. No namespaces.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	if c := s[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	// XML reserves names starting with "xml" in any case, but WeChat's
	// root element is literally <xml>, so only the root may use it.
	return true
}

// checkChars refuses characters that XML 1.0 cannot carry.
func checkChars(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x80 {
			continue
		}
		if c < 0x20 {
			if c == '\t' || c == '\n' || c == '\r' {
				continue
			}
			return fmt.Errorf("control character 0x%02x is not allowed in XML", c)
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return errors.New("invalid UTF-8")
		}
		if !isXMLChar(r) {
			return fmt.Errorf("character %U is not allowed in XML", r)
		}
		i += size - 1
	}
	return nil
}

func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
