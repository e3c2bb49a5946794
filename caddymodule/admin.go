package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the gateway's operator endpoints on Caddy's admin
// endpoint (localhost:2019 by default):
//
//	GET  /wxpay/events[?state=pending|delivered|dead|held&mch_id=…&limit=…&before=<id>]
//	GET  /wxpay/events/<id>           the event, its attempts, the backend's last answer
//	POST /wxpay/events/<id>/replay    deliver it again (same id, same payload)
//	GET  /wxpay/delivery              paused or not, delivering or not (and why), events per state, in flight
//	POST /wxpay/delivery/pause
//	POST /wxpay/delivery/resume
//
// The POST routes require Content-Type: application/json (the body may be
// empty), as Caddy's /load does, so that a browser page cannot trigger them
// cross-site.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.wxpay",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/wxpay/events", Handler: caddy.AdminHandlerFunc(a.listEvents)},
		{Pattern: "/wxpay/events/", Handler: caddy.AdminHandlerFunc(a.event)},
		{Pattern: "/wxpay/delivery", Handler: caddy.AdminHandlerFunc(a.delivery)},
		{Pattern: "/wxpay/delivery/", Handler: caddy.AdminHandlerFunc(a.delivery)},
	}
}

// requireJSON refuses a state-changing request that is not
// Content-Type: application/json, as Caddy's own /load does: a page in a
// browser on the host cannot send that cross-site without a CORS
// preflight, which the admin endpoint does not grant.
func requireJSON(r *http.Request) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return adminError(http.StatusUnsupportedMediaType, "unacceptable content-type %q: 'application/json' required (the body may be empty)", r.Header.Get("Content-Type"))
	}
	return nil
}

// adminError is an admin API answer with status, in Caddy's admin error
// type.
func adminError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// eventLedger is what the admin API needs of the ledger: its events, and
// replaying one.
type eventLedger interface {
	ListEvents(ctx context.Context, f ledger.ListFilter) ([]*ledger.Event, error)
	GetEvent(ctx context.Context, id string) (*ledger.Event, []ledger.Attempt, error)
	CountEvents(ctx context.Context) (map[string]int, error)
	Replay(ctx context.Context, id string, now time.Time) error
}

// adminView is what the admin API operates: the running configuration's
// ledger and its delivery worker.
type adminView struct {
	app    *App
	events eventLedger
	worker *delivery.Worker
}

// current returns the running configuration's ledger.
func current() (*adminView, error) {
	app := active.Load()
	if app == nil {
		return nil, adminError(http.StatusServiceUnavailable, "the wxpay app is not running")
	}
	h := app.ledger
	if h == nil {
		return nil, adminError(http.StatusNotFound, "the wxpay app keeps no ledger (ack upstream)")
	}
	return &adminView{app: app, events: h.store, worker: h.worker}, nil
}

// eventView is an event as the admin API shows it.
type eventView struct {
	ID            string          `json:"id"`
	MchID         string          `json:"mch_id"`
	Type          string          `json:"type"`
	OutTradeNo    string          `json:"out_trade_no"`
	TransactionID string          `json:"transaction_id,omitempty"`
	State         string          `json:"state"`
	Created       time.Time       `json:"created"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	DeliveredAt   *time.Time      `json:"delivered_at,omitempty"`
	ReplayedAt    *time.Time      `json:"replayed_at,omitempty"`
	LastStatus    int             `json:"last_status,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	LastResponse  string          `json:"last_response,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	AttemptLog    []attemptView   `json:"attempt_log,omitempty"`
}

type attemptView struct {
	At         time.Time `json:"at"`
	DurationMS int64     `json:"duration_ms"`
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response,omitempty"`
}

func viewOf(e *ledger.Event, withPayload bool) eventView {
	v := eventView{
		ID: e.ID, MchID: e.MchID, Type: e.Type, OutTradeNo: e.OutTradeNo, TransactionID: e.TransactionID,
		State: e.State, Created: e.CreatedAt, Attempts: e.Attempts, LastStatus: e.LastStatus,
		LastError: e.LastError, LastResponse: e.LastResponse,
	}
	if e.State == ledger.EventPending && !e.NextAttemptAt.IsZero() {
		t := e.NextAttemptAt
		v.NextAttemptAt = &t
	}
	if !e.DeliveredAt.IsZero() {
		t := e.DeliveredAt
		v.DeliveredAt = &t
	}
	if !e.ReplayedAt.IsZero() {
		t := e.ReplayedAt
		v.ReplayedAt = &t
	}
	if withPayload && json.Valid(e.Payload) {
		v.Payload = e.Payload
	}
	return v
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (adminAPI) listEvents(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return adminError(http.StatusMethodNotAllowed, "use GET")
	}
	h, err := current()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := ledger.ListFilter{State: q.Get("state"), MchID: q.Get("mch_id"), Before: q.Get("before")}
	switch f.State {
	case "", ledger.EventPending, ledger.EventDelivered, ledger.EventDead, ledger.EventHeld:
	default:
		return adminError(http.StatusBadRequest, "state %q: want pending, delivered, dead or held", f.State)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return adminError(http.StatusBadRequest, "limit %q: want 1 to 1000", l)
		}
		f.Limit = n
	}
	events, err := h.events.ListEvents(r.Context(), f)
	if err != nil {
		return adminError(http.StatusInternalServerError, "listing events: %v", err)
	}
	out := make([]eventView, 0, len(events))
	for _, e := range events {
		out = append(out, viewOf(e, false))
	}
	return writeAdminJSON(w, out)
}

func (adminAPI) event(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/wxpay/events/")
	id, action, _ := strings.Cut(rest, "/")
	if id == "" {
		return adminError(http.StatusNotFound, "no event id")
	}
	h, err := current()
	if err != nil {
		return err
	}
	switch {
	case action == "" && r.Method == http.MethodGet:
		e, attempts, err := h.events.GetEvent(r.Context(), id)
		if errors.Is(err, ledger.ErrNotFound) {
			return adminError(http.StatusNotFound, "no event %s", id)
		}
		if err != nil {
			return adminError(http.StatusInternalServerError, "reading event %s: %v", id, err)
		}
		v := viewOf(e, true)
		for _, a := range attempts {
			v.AttemptLog = append(v.AttemptLog, attemptView{At: a.At, DurationMS: a.Duration.Milliseconds(), Status: a.Status, Error: a.Error, Response: a.Response})
		}
		return writeAdminJSON(w, v)
	case action == "replay" && r.Method == http.MethodPost:
		if err := requireJSON(r); err != nil {
			return err
		}
		err := h.events.Replay(r.Context(), id, h.app.now())
		if errors.Is(err, ledger.ErrNotFound) {
			return adminError(http.StatusNotFound, "no event %s", id)
		}
		if err != nil {
			return adminError(http.StatusInternalServerError, "replaying event %s: %v", id, err)
		}
		h.worker.Notify()
		return writeAdminJSON(w, map[string]string{"id": id, "state": ledger.EventPending})
	case action == "" || action == "replay":
		return adminError(http.StatusMethodNotAllowed, "use GET /wxpay/events/<id> or POST /wxpay/events/<id>/replay")
	}
	return adminError(http.StatusNotFound, "no such route")
}

func (adminAPI) delivery(w http.ResponseWriter, r *http.Request) error {
	h, err := current()
	if err != nil {
		return err
	}
	switch {
	case r.URL.Path == "/wxpay/delivery" && r.Method == http.MethodGet:
	case r.URL.Path == "/wxpay/delivery/pause" && r.Method == http.MethodPost:
		if err := requireJSON(r); err != nil {
			return err
		}
		h.worker.Pause()
	case r.URL.Path == "/wxpay/delivery/resume" && r.Method == http.MethodPost:
		if err := requireJSON(r); err != nil {
			return err
		}
		h.worker.Resume()
	default:
		return adminError(http.StatusNotFound, "use GET /wxpay/delivery, POST /wxpay/delivery/pause or /resume")
	}
	counts, err := h.events.CountEvents(r.Context())
	if err != nil {
		return adminError(http.StatusInternalServerError, "counting events: %v", err)
	}
	status := map[string]any{
		"paused":     h.worker.Paused(),
		"delivering": false,
		"in_flight":  h.worker.InFlight(),
		"events":     counts,
	}
	sending, why := h.worker.Sending()
	status["delivering"] = sending && !h.worker.Paused()
	switch {
	case !sending:
		status["not_delivering"] = why
	case h.worker.Paused():
		status["not_delivering"] = "paused (caddy wxpay resume, or POST /wxpay/delivery/resume, resumes)"
	}
	return writeAdminJSON(w, status)
}

// Interface guards
var (
	_ caddy.AdminRouter = adminAPI{}
	_ eventLedger       = ledger.Store(nil)
)
