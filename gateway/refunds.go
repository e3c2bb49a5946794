package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// Refund asks WeChat to refund part or all of an order. The same
// out_refund_no is one refund: asked again with the same amounts it is
// sent again (WeChat refunds once); with other amounts it is refused
// before WeChat is asked. With a ledger, the refund is recorded (state
// UNKNOWN) before WeChat is asked, so that its notification is always
// checked against it; a refund that cannot be recorded is not asked for
// (503). WeChat's acceptance moves it to PROCESSING; a refusal removes the
// record; an answer that does not say (none in time, one that fails
// verification) leaves it UNKNOWN, for its notification to settle. The
// outcome arrives as a refund notification.
func (s *Service) Refund(ctx context.Context, m *Merchant, req *RefundRequest) (*RefundResponse, error) {
	r := *req
	var err error
	if r.AppID == "" {
		if r.AppID, err = s.appIDFor(ctx, m, "", r.OutTradeNo); err != nil {
			return nil, err
		}
	} else if !m.HasAppID(r.AppID) {
		return nil, BadRequest("app_id %q is not one of merchant %s's app ids", r.AppID, m.Name)
	}
	if r.NotifyURL == "" {
		r.NotifyURL = m.RefundNotifyURL
	} else if err := CheckNotifyURL("notify_url", r.NotifyURL, m.HTTPNotify); err != nil {
		return nil, BadRequest("%v", err)
	}
	if err := m.API.ValidateRefund(&r); err != nil {
		return nil, err
	}
	fresh := false // the refund was recorded by this call
	if s.ledger != nil {
		if fresh, err = s.recordRefundRequest(ctx, m, &r); err != nil {
			return nil, err
		}
	}
	resp, err := m.API.Refund(ctx, &r)
	if err != nil {
		if s.ledger != nil {
			// (ctx may be what ended: the record must still be right.)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			switch {
			case fresh && wechatRefused(err):
				// WeChat did not make it: the number is free again.
				if ferr := s.ledger.ForgetRefund(rctx, m.MchID, r.OutRefundNo); ferr != nil {
					s.logger.Error("removing the record of a refund WeChat refused", zap.String("out_refund_no", r.OutRefundNo), LogError(ferr))
				}
			case effectUnknown(err):
				s.logger.Warn("refund outcome unknown: WeChat's answer did not say whether it took it; its notification (checked with a query) settles it",
					zap.String("merchant", m.Name), zap.String("out_refund_no", r.OutRefundNo), LogError(err))
			}
		}
		return nil, err
	}
	if s.ledger != nil {
		// Forward only: a notification that came first stays.
		if err := s.ledger.SetRefundState(ctx, m.MchID, r.OutRefundNo, ledger.RefundProcessing, resp.RefundID, s.now()); err != nil {
			s.logger.Error("recording a refund WeChat accepted", zap.String("out_refund_no", r.OutRefundNo), zap.Error(err))
		}
	}
	s.logger.Info("refund accepted by WeChat", zap.String("merchant", m.Name), zap.String("out_refund_no", r.OutRefundNo),
		zap.String("refund_id", resp.RefundID), zap.Int64("refund_fee", r.RefundFee))
	out := *resp
	out.OutRefundNo, out.TotalFee, out.RefundFee, out.Status = r.OutRefundNo, r.TotalFee, r.RefundFee, RefundStatusProcessing
	return &out, nil
}

// recordRefundRequest records the refund r asks for before WeChat is
// asked (state UNKNOWN), so that its notification, which may come before
// WeChat's answer, always finds it; fresh says this call recorded it. The
// same out_refund_no recorded already (by an earlier call, or by a
// concurrent one between this call's read and its write) must be for the
// same amounts, or the request is a 409 and WeChat is not asked.
func (s *Service) recordRefundRequest(ctx context.Context, m *Merchant, r *RefundRequest) (fresh bool, err error) {
	for range 2 {
		known, err := s.ledger.GetRefund(ctx, m.MchID, r.OutRefundNo)
		switch {
		case err == nil && (known.RefundFee != r.RefundFee || known.TotalFee != r.TotalFee):
			return false, &Error{Status: http.StatusConflict, Code: "OUT_REFUND_NO_USED",
				Message: fmt.Sprintf("out_refund_no %s was used for a refund of %d of %d fen", r.OutRefundNo, known.RefundFee, known.TotalFee)}
		case err == nil:
			return false, nil // the same refund: asked again, as WeChat allows
		case !errors.Is(err, ledger.ErrNotFound):
			return false, storageError("the refund ledger could not be read, so WeChat was not asked for the refund", err)
		}
		rf := &ledger.Refund{MchID: m.MchID, OutRefundNo: r.OutRefundNo, OutTradeNo: r.OutTradeNo,
			TransactionID: r.TransactionID, TotalFee: r.TotalFee, RefundFee: r.RefundFee, State: ledger.RefundUnknown, CreatedAt: s.now()}
		switch err := s.ledger.PutRefund(ctx, rf); {
		case err == nil:
			return true, nil
		case !errors.Is(err, ledger.ErrExists):
			return false, storageError("the refund could not be recorded, so WeChat was not asked for it; ask again", err)
		}
		// Recorded meanwhile by a concurrent request (or forgotten
		// between the two steps): read it again and compare.
	}
	return false, storageError("the refund's record changed while it was asked for; ask again", nil)
}

// QueryRefund asks WeChat for a refund's state (with app id appID, or the
// merchant's default when it is "").
func (s *Service) QueryRefund(ctx context.Context, m *Merchant, outRefundNo, appID string) (*RefundQueryResponse, error) {
	appID, err := s.appIDFor(ctx, m, appID, "")
	if err != nil {
		return nil, err
	}
	return m.API.QueryRefund(ctx, appID, outRefundNo)
}

// AcceptRefundNotification takes one of WeChat's refund notifications for
// merchant m as AcceptPaymentNotification takes a payment's: verify
// (decrypt), check the merchant, confirm it with WeChat's refund query,
// cross-check the amount against the refund placed (a disagreement with
// either is stored as refund.mismatch and changes nothing), store the event
// with the refund's new state, then reply.
//
// API v2's refund notification is encrypted but not signed (AES-ECB: blocks
// of observed notifications can be spliced) and its outer mch_id and appid
// are not authenticated: its facts are believed only once WeChat's answer
// to a signed query confirms them. A query that cannot be made, or that
// finds the refund still under way, is answered with a refusal so that
// WeChat notifies again; nothing is stored.
func (s *Service) AcceptRefundNotification(ctx context.Context, m *Merchant, n Notification) Reply {
	n.Kind = KindRefund
	api, ok := m.notificationAPI(n.Header, n.Body)
	if !ok {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "no API version of the merchant takes this notification", errNoNotificationAPI)
	}
	rn, err := api.ParseRefundNotification(n.Header, n.Body)
	if err != nil {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "invalid refund notification", err)
	}
	// (APIv3's refund notices carry no appid.)
	if rn.MchID != m.MchID || (rn.AppID != "" && !m.HasAppID(rn.AppID)) {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "mch_id or appid mismatch",
			fmt.Errorf("refund notification for mch_id %q appid %q reached merchant %s", rn.MchID, rn.AppID, m.Name))
	}
	if _, ok := rn.Data["appid"]; !ok { // APIv3's: events carry it all the same
		if id := s.eventAppID(ctx, m, rn.OutTradeNo); id != "" {
			rn.Data["appid"] = id
		}
	}
	now := s.now()
	ev, err := event.NewRefund(m.MchID, rn.RefundID, rn.Status, rn.Data, now)
	if err != nil {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "invalid refund notification", err)
	}
	queryAppID := rn.AppID
	if queryAppID == "" {
		queryAppID = m.AppIDs[0]
	}
	q, err := m.API.QueryRefund(ctx, queryAppID, rn.OutRefundNo)
	switch {
	case callErrorKind(err) == NotFound:
		// WeChat knows no such refund: a forged or spliced notification.
		return s.RefuseNotification(m, n, http.StatusBadRequest, "the refund is unknown to WeChat", err, refundIDs(rn)...)
	case err != nil:
		return s.RefuseNotification(m, n, http.StatusServiceUnavailable, "the refund could not be confirmed with WeChat", err, refundIDs(rn)...)
	}
	entry := q.Entry(rn.OutRefundNo)
	if entry != nil && entry.RefundStatus == RefundStatusProcessing {
		return s.RefuseNotification(m, n, http.StatusServiceUnavailable, "the refund is still under way at WeChat",
			fmt.Errorf("refund %s notified %s, WeChat's query says PROCESSING", rn.OutRefundNo, rn.Status), refundIDs(rn)...)
	}
	confirmed := true
	diff := RefundQueryDiscrepancies(q, entry, rn)
	if diff == nil && completeFromQuery(rn.Data, q, entry) {
		// The event as the query completed it (its id does not change).
		if ev, err = event.NewRefund(m.MchID, rn.RefundID, rn.Status, rn.Data, now); err != nil {
			return s.RefuseNotification(m, n, http.StatusBadRequest, "invalid refund notification", err)
		}
	}
	if diff != nil {
		confirmed = false
		if err := markRefundMismatch(ev, rn, diff); err != nil {
			return s.RefuseNotification(m, n, http.StatusBadRequest, "invalid refund notification", err)
		}
		s.logger.Error("refund notification disagrees with WeChat's refund query: forwarded as refund.mismatch",
			zap.String("merchant", m.Name), zap.String("event_id", ev.ID), zap.String("out_refund_no", rn.OutRefundNo),
			zap.String("out_trade_no", rn.OutTradeNo), zap.Any("mismatch", diff))
	}
	result := "delivered"
	if s.ledger == nil {
		if reply, ok := s.deliverBeforeReply(ctx, m, n, ev); !ok {
			return reply
		}
	} else {
		created, err := s.recordRefund(ctx, m, rn, ev, now, confirmed)
		if err != nil {
			return s.RefuseNotification(m, n, http.StatusServiceUnavailable, "storage failure", err, refundIDs(rn)...)
		}
		if created && s.outbox != nil {
			s.outbox.Notify()
		}
		switch {
		case !created:
			result = "duplicate"
		case ev.Type == event.RefundMismatch:
			result = "mismatch"
		default:
			result = "stored"
		}
	}
	s.obs.NotificationTaken(m.Name, KindRefund, result, "")
	s.logger.Info("refund notification received", zap.String("merchant", m.Name), zap.String("event_id", ev.ID),
		zap.String("type", ev.Type), zap.String("out_refund_no", rn.OutRefundNo))
	return api.NotifyReply(http.StatusOK, "")
}

// recordRefund cross-checks a refund notification against the refund the
// gateway placed, if it holds it, and stores the event with the refund's
// new state in one transaction; when the amounts disagree (the ledger
// compares them in the transaction and hands the refund back), the event
// is stored as refund.mismatch instead and the refund is left as it was.
// A notification WeChat's query did not confirm (confirmed false: ev is a
// refund.mismatch already) changes no refund.
func (s *Service) recordRefund(ctx context.Context, m *Merchant, rn *RefundNotice, ev *event.Event, now time.Time, confirmed bool) (bool, error) {
	record := func(change ledger.Change) (bool, error) {
		payload, err := ev.Marshal()
		if err != nil {
			return false, err
		}
		return s.ledger.RecordEvent(ctx, &ledger.Event{
			ID: ev.ID, MchID: m.MchID, Type: ev.Type, OutTradeNo: rn.OutTradeNo, TransactionID: rn.TransactionID,
			Payload: payload, CreatedAt: now, NextAttemptAt: now,
		}, change)
	}
	if !confirmed {
		return record(ledger.Change{})
	}
	created, err := record(ledger.Change{Refund: &ledger.RefundUpdate{
		OutRefundNo: rn.OutRefundNo, State: rn.Status, RefundID: rn.RefundID, RefundFee: rn.RefundFee}})
	var me *ledger.MismatchError
	if !errors.As(err, &me) || me.Refund == nil {
		return created, err
	}
	diff := RefundDiscrepancies(me.Refund, rn)
	if diff == nil {
		return false, fmt.Errorf("refund %s: the ledger saw a disagreement the gateway does not: %w", rn.OutRefundNo, err)
	}
	if err := markRefundMismatch(ev, rn, diff); err != nil {
		return false, err
	}
	s.logger.Error("refund notification disagrees with the refund placed: forwarded as refund.mismatch",
		zap.String("merchant", m.Name), zap.String("event_id", ev.ID), zap.String("out_refund_no", rn.OutRefundNo),
		zap.String("out_trade_no", rn.OutTradeNo), zap.Int64("refund_fee_placed", me.Refund.RefundFee), zap.Int64("refund_fee_notified", rn.RefundFee))
	return record(ledger.Change{})
}

// markRefundMismatch turns ev into the refund.mismatch of rn, under an id
// of its own (event.MismatchID): the genuine notification of the refund,
// if it comes, still makes its refund.* event.
func markRefundMismatch(ev *event.Event, rn *RefundNotice, diff map[string]event.Discrepancy) error {
	id, err := event.MismatchID(ev.ID, rn.Data)
	if err != nil {
		return err
	}
	ev.MarkMismatch(event.RefundMismatch, diff)
	ev.ID = id
	return nil
}

// RefundQueryDiscrepancies lists where a refund notification disagrees with
// WeChat's answer to the refund query (q, and entry, the refund of q named
// by the notification's out_refund_no, nil when q has none): the refund
// itself, its refund_id, order, amount and status. It is nil when they
// agree.
func RefundQueryDiscrepancies(q *RefundQueryResponse, entry *RefundEntry, n *RefundNotice) map[string]event.Discrepancy {
	if entry == nil {
		return map[string]event.Discrepancy{"out_refund_no": {Queried: "", Notification: n.OutRefundNo}}
	}
	var diff map[string]event.Discrepancy
	add := func(field string, queried, notified any) {
		if diff == nil {
			diff = map[string]event.Discrepancy{}
		}
		diff[field] = event.Discrepancy{Queried: queried, Notification: notified}
	}
	if entry.RefundID != n.RefundID {
		add("refund_id", entry.RefundID, n.RefundID)
	}
	if q.OutTradeNo != "" && q.OutTradeNo != n.OutTradeNo {
		add("out_trade_no", q.OutTradeNo, n.OutTradeNo)
	}
	if entry.RefundFee != n.RefundFee {
		add("refund_fee", entry.RefundFee, n.RefundFee)
	}
	if entry.RefundStatus != n.Status {
		add("refund_status", entry.RefundStatus, n.Status)
	}
	// The facts the event carries besides: a spliced v2 notification may
	// carry another refund's blocks for them. Each is compared when both
	// sides have it.
	if q.TransactionID != "" && n.TransactionID != "" && q.TransactionID != n.TransactionID {
		add("transaction_id", q.TransactionID, n.TransactionID)
	}
	if fee, ok := n.Data["total_fee"].(int64); ok && q.TotalFee != 0 && fee != q.TotalFee {
		add("total_fee", q.TotalFee, fee)
	}
	if at, ok := n.Data["success_time"].(string); ok && at != "" && entry.SuccessTime != "" && at != entry.SuccessTime {
		add("success_time", entry.SuccessTime, at)
	}
	// The settlement amounts are the amounts less non-cash coupons: API
	// v2's query names them only when coupons were used; without them
	// they can be no more than the amounts the query confirmed.
	if fee, ok := n.Data["settlement_total_fee"].(int64); ok {
		switch {
		case q.SettlementTotalFee != nil && fee != *q.SettlementTotalFee:
			add("settlement_total_fee", *q.SettlementTotalFee, fee)
		case q.SettlementTotalFee == nil && q.TotalFee != 0 && (fee < 0 || fee > q.TotalFee):
			add("settlement_total_fee", fmt.Sprintf("at most total_fee %d", q.TotalFee), fee)
		}
	}
	if fee, ok := n.Data["settlement_refund_fee"].(int64); ok {
		switch {
		case entry.SettlementRefundFee != nil && fee != *entry.SettlementRefundFee:
			add("settlement_refund_fee", *entry.SettlementRefundFee, fee)
		case entry.SettlementRefundFee == nil && (fee < 0 || fee > entry.RefundFee):
			add("settlement_refund_fee", fmt.Sprintf("at most refund_fee %d", entry.RefundFee), fee)
		}
	}
	if acct, ok := n.Data["refund_recv_accout"].(string); ok && acct != "" && entry.RecvAccount != "" && acct != entry.RecvAccount {
		add("refund_recv_accout", entry.RecvAccount, acct)
	}
	if acct, ok := n.Data["refund_account"].(string); ok && acct != "" && entry.RefundAccount != "" && acct != entry.RefundAccount {
		add("refund_account", entry.RefundAccount, acct)
	}
	return diff
}

// RefundDiscrepancies lists where a refund notification disagrees with the
// refund the gateway placed (its amount); nil when they agree.
func RefundDiscrepancies(r *ledger.Refund, n *RefundNotice) map[string]event.Discrepancy {
	if n.RefundFee == r.RefundFee {
		return nil
	}
	return map[string]event.Discrepancy{"refund_fee": {Order: r.RefundFee, Notification: n.RefundFee}}
}

// DownloadBill streams a day's bill (date yyyyMMdd; billType one of the
// BillType constants, ALL when ""), with app id appID or the merchant's
// default.
func (s *Service) DownloadBill(ctx context.Context, m *Merchant, date, billType string, gzipped bool, appID string) (io.ReadCloser, error) {
	if billType == "" {
		billType = BillTypeAll
	}
	switch billType {
	case BillTypeAll, BillTypeSuccess, BillTypeRefund, BillTypeRechargeRefund:
	default:
		return nil, BadRequest("type %q: want ALL, SUCCESS, REFUND or RECHARGE_REFUND", billType)
	}
	if _, err := time.Parse("20060102", date); err != nil {
		return nil, BadRequest("bill date %q: want yyyyMMdd", date)
	}
	appID, err := s.appIDFor(ctx, m, appID, "")
	if err != nil {
		return nil, err
	}
	return m.API.DownloadBill(ctx, BillRequest{AppID: appID, Date: date, Type: billType, Gzip: gzipped})
}

// completeFromQuery adds to a refund notification's data what WeChat's
// refund query confirmed and the notification did not carry (APIv3's has
// no settlement amounts), and reports whether it added anything.
func completeFromQuery(data map[string]any, q *RefundQueryResponse, e *RefundEntry) bool {
	added := false
	add := func(k string, v *int64) {
		if _, ok := data[k]; !ok && v != nil {
			data[k] = *v
			added = true
		}
	}
	add("settlement_total_fee", q.SettlementTotalFee)
	add("settlement_refund_fee", e.SettlementRefundFee)
	return added
}

// refundIDs name a verified refund notification in a log entry.
func refundIDs(rn *RefundNotice) []zap.Field {
	return []zap.Field{zap.String("out_refund_no", LogText(rn.OutRefundNo)), zap.String("refund_id", LogText(rn.RefundID)),
		zap.String("out_trade_no", LogText(rn.OutTradeNo))}
}

// eventAppID is the app id a refund's event names when WeChat's message
// names none (APIv3's refund notifications, refund queries): the recorded
// order's, or the merchant's only one; "" when neither says.
func (s *Service) eventAppID(ctx context.Context, m *Merchant, outTradeNo string) string {
	if id := s.recordedAppID(ctx, m, outTradeNo); id != "" {
		return id
	}
	if len(m.AppIDs) == 1 {
		return m.AppIDs[0]
	}
	return ""
}

// recordQueriedRefund records a refund in a final state that a query found
// (its notification never came, or its answer said nothing), as its
// notification would have: the event under the same id, the refund's
// state, the cross-check of its amount.
func (s *Service) recordQueriedRefund(ctx context.Context, m *Merchant, q *RefundQueryResponse, e *RefundEntry) error {
	now := s.now()
	data := map[string]any{
		"mch_id": m.MchID, "out_trade_no": q.OutTradeNo, "transaction_id": q.TransactionID, "out_refund_no": e.OutRefundNo,
		"refund_id": e.RefundID, "refund_fee": e.RefundFee, "total_fee": q.TotalFee, "refund_status": e.RefundStatus,
	}
	if e.SuccessTime != "" {
		data["success_time"] = e.SuccessTime
	}
	if e.RecvAccount != "" {
		data["refund_recv_accout"] = e.RecvAccount // sic: API v2's name
	}
	if e.RefundAccount != "" {
		data["refund_account"] = e.RefundAccount
	}
	completeFromQuery(data, q, e)
	if id := s.eventAppID(ctx, m, q.OutTradeNo); id != "" {
		data["appid"] = id
	}
	ev, err := event.NewRefund(m.MchID, e.RefundID, e.RefundStatus, data, now)
	if err != nil {
		return err
	}
	rn := &RefundNotice{MchID: m.MchID, OutRefundNo: e.OutRefundNo, RefundID: e.RefundID, OutTradeNo: q.OutTradeNo,
		TransactionID: q.TransactionID, Status: e.RefundStatus, RefundFee: e.RefundFee, Data: data}
	created, err := s.recordRefund(ctx, m, rn, ev, now, true)
	if err == nil && created && s.outbox != nil {
		s.outbox.Notify()
	}
	return err
}
