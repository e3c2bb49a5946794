package ledger

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Feeder is implemented by a Store that hands the delivery worker the
// events it has just made due, so that the worker need not query for them:
//
//   - after a commit that stored new events: those of them that are due
//     (NextAttemptAt not after the commit) and first of their order (no
//     older event of their order is pending);
//   - after a recorded attempt that ended its event (delivered or dead):
//     the next pending event of the event's order, if it is due;
//   - after a replay: the replayed event, if it is first of its order.
//
// f is called after the commit, on the store's committer goroutine (or the
// replaying caller's): it must not block, must not modify the events, and
// must not keep the slice (the events it may keep).
// A store calls it with events that were true to the conditions above when
// its transaction committed; the worker still checks them against what it
// holds. Events a feed misses are found by DueEvents, as ever.
type Feeder interface {
	// SetFeed registers f (nil: none). One worker per store.
	SetFeed(f func([]Fed))
}

// Fed is one event a Feeder hands over.
type Fed struct {
	Event *Event
	// After is the ID of the event whose recorded attempt made this one
	// first of its order, "" otherwise. That event's outcome is committed,
	// though the worker that attempted it may not have heard yet.
	After string
}

// SetFeed implements Feeder.
func (s *sqlStore) SetFeed(f func([]Fed)) {
	if f == nil {
		s.feed.Store(nil)
		return
	}
	s.feed.Store(&f)
}

// feeding is a transaction's collection of events to feed.
type feeding struct {
	on  bool // a feed is registered: collect
	now time.Time
	fed []Fed
}

func (s *sqlStore) startFeeding(f *feeding) {
	f.on = s.feed.Load() != nil
	f.now = s.now()
	clear(f.fed)
	f.fed = f.fed[:0]
}

// deliverFed hands the collected events to the feed (after a commit).
func (s *sqlStore) deliverFed(f *feeding) {
	if len(f.fed) == 0 {
		return
	}
	if fp := s.feed.Load(); fp != nil {
		(*fp)(f.fed)
	}
	clear(f.fed)
	f.fed = f.fed[:0]
}

// feedIfFirst adds e (just stored, or replayed) if it is due and first of
// its order. st is qFirstOfOrder bound to the transaction.
func (f *feeding) feedIfFirst(ctx context.Context, st *sql.Stmt, e *Event) error {
	if !f.on || e.NextAttemptAt.After(f.now) {
		return nil
	}
	var first string
	err := st.QueryRowContext(ctx, e.MchID, e.OutTradeNo).Scan(&first)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	}
	if first == e.ID {
		f.fed = append(f.fed, Fed{Event: e})
	}
	return nil
}

// feedNext adds the next pending event of the order of the event id (whose
// attempt just ended it), if it is due. st is qNextOfOrder bound to the
// transaction.
func (f *feeding) feedNext(ctx context.Context, st *sql.Stmt, id string) error {
	if !f.on {
		return nil
	}
	rows, err := st.QueryContext(ctx, id)
	if err != nil {
		return err
	}
	evs, err := scanEvents(rows, 1)
	if err != nil {
		return err
	}
	if len(evs) == 1 && !evs[0].NextAttemptAt.After(f.now) {
		f.fed = append(f.fed, Fed{Event: evs[0], After: id})
	}
	return nil
}
