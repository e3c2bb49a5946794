package event

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Marshal writes what encoding/json writes for the event: the reference
// is encoding/json itself (json.Marshal of the same Event), on the kinds of
// data notifications carry and on strings built to hit every escape.
func TestMarshalIsEncodingJSON(t *testing.T) {
	yes := true
	cases := map[string]*Event{
		"payment": {ID: "evt_0123", Type: PaymentSucceeded, Created: "2026-12-07T14:00:00Z", OrderChecked: &yes, Data: map[string]any{
			"appid": "wxd930ea5d5a258f4f", "total_fee": int64(1234), "attach": `<a href="x">&'"</a>`, "body": "腾讯充值中心-QQ会员充值",
			"wechat": map[string]any{"amount": map[string]any{"total": float64(100), "payer_total": 99.5}, "promotion_detail": []any{map[string]any{"amount": float64(1)}}, "empty": []any{}, "nothing": nil},
		}},
		"no order_checked, nil data": {ID: "e", Type: "t", Created: "c"},
		"mismatch":                   {ID: "e", Type: PaymentMismatch, Data: map[string]any{"mismatch": map[string]Discrepancy{"total_fee": {Order: int64(100), Notification: int64(1)}}}},
		"floats":                     {Data: map[string]any{"a": 1e21, "b": 1e-7, "c": 123456789.125, "d": -0.000001, "e": 0.0, "f": 1e20, "g": 5e-324, "h": math.MaxFloat64}},
		"ints":                       {Data: map[string]any{"a": 0, "b": int64(math.MinInt64), "c": math.MaxInt, "d": false}},
		"other":                      {Data: map[string]any{"raw": json.RawMessage(`{ "x" : 1 }`), "u": uint8(7), "s": []string{"<"}}},
	}
	var weird strings.Builder
	for c := range 0x80 {
		weird.WriteByte(byte(c))
	}
	weird.WriteString("\u2028\u2029\xff\xfe\xc3(é€😀\x00")
	cases["every ASCII byte, U+2028, U+2029, invalid UTF-8"] = &Event{ID: weird.String(), Type: "t", Data: map[string]any{weird.String(): weird.String()}}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			compare(t, e)
		})
	}
}

// Random events: random keys and values, random bytes in strings.
func TestMarshalIsEncodingJSONRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "\n", "\t", "\x01", "\x1f", "\x7f", "é", "中", "\u2028", "\u2029", "\xff", "\xe4\xb8", "😀", "\ufffd"}
	str := func() string {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := r.IntN(8); {
		case k == 0:
			return nil
		case k == 1:
			return r.IntN(2) == 0
		case k == 2:
			return r.Int64() - r.Int64()
		case k == 3:
			return math.Float64frombits(r.Uint64()&^(0x7ff<<52) | uint64(r.IntN(0x7fe))<<52) // finite
		case k == 4 && depth < 3:
			m := map[string]any{}
			for range r.IntN(5) {
				m[str()] = value(depth + 1)
			}
			return m
		case k == 5 && depth < 3:
			var s []any
			for range r.IntN(4) {
				s = append(s, value(depth+1))
			}
			return s
		default:
			return str()
		}
	}
	for range 3000 {
		data := map[string]any{}
		for range r.IntN(8) {
			data[str()] = value(0)
		}
		compare(t, &Event{ID: str(), Type: str(), Created: str(), Data: data})
	}
}

func compare(t *testing.T, e *Event) {
	t.Helper()
	want, werr := json.Marshal(e)
	got, gerr := e.Marshal()
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("encoding/json: %v, Marshal: %v", werr, gerr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal:\n%s\nencoding/json:\n%s", got, want)
	}
}

// Values encoding/json refuses are refused.
func TestMarshalRefuses(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(1), map[string]any{"x": math.Inf(-1)}, make(chan int)} {
		if _, err := (&Event{ID: "e", Data: map[string]any{"v": v}}).Marshal(); err == nil {
			t.Errorf("%v: no error", v)
		}
	}
}

// An event's encoding allocates its buffer, and a key list per map, no
// more (encoding/json's map encoder allocated about 30 times).
func TestMarshalAllocations(t *testing.T) {
	e := &Event{ID: "evt_0123", Type: PaymentSucceeded, Created: "2026-12-07T14:00:00Z", Data: map[string]any{
		"appid": "wxd930ea5d5a258f4f", "bank_type": "CMC", "cash_fee": int64(100), "fee_type": "CNY", "is_subscribe": "N",
		"mch_id": "10000100", "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
		"out_trade_no": "bench1", "result_code": "SUCCESS", "return_code": "SUCCESS", "time_end": "20261127120000",
		"total_fee": int64(100), "trade_type": "JSAPI", "transaction_id": "4200000000000000000000000001",
	}}
	if n := testing.AllocsPerRun(100, func() { _, _ = e.Marshal() }); n > 2 {
		t.Errorf("%v allocations per event, want at most 2", n)
	}
}
