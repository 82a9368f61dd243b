package audit

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// aggKey identifies "the same refusal". Fields are compared after
// sanitizing, i.e. as they would be written.
type aggKey struct{ actor, action, subject, reason string }

// aggState is an open aggregation window for one key.
type aggState struct {
	end     time.Time // window closes here
	pending uint64    // identical refusals since the entry that opened it
}

// Refuse logs that actor was refused action on subject for reason, as an
// entry with decision "deny" and result reason, folding floods of identical
// refusals (say, a compromised agent hammering a forbidden tool) into few
// entries. Exactly:
//
//   - A refusal that does not fall into an open window for the same
//     (actor, action, subject, reason) is written at once with count 1, and
//     Refuse returns only after it is fsynced, like Append. That entry opens a
//     window of the configured length (WithRefuseWindow, default 1 s).
//   - An identical refusal inside the window is only counted; Refuse returns
//     nil without writing (or the failed-state error if the log has failed).
//   - When the window ends (or at Close, whichever is first), if anything was
//     counted, one entry with count N = the number counted is written and the
//     window is gone; the next identical refusal opens a new window as above.
//     So under a steady flood each key costs at most two entries per window,
//     and the total refusals are the sum of the counts.
//
// The first refusal of a burst is therefore always durable before Refuse
// returns; a crash can lose at most one window's count, never the fact.
// At most 4096 windows are open at once; refusals beyond that are written
// individually rather than dropped. A window length of zero or less disables
// aggregation.
func (l *Log) Refuse(actor, action, subject, reason string) error {
	err := l.refuse(actor, action, subject, reason)
	l.count(err)
	return err
}

func (l *Log) refuse(actor, action, subject, reason string) error {
	r, err := prepare(Record{Actor: actor, Action: action, Subject: subject, Decision: DecisionDeny, Result: reason}, false)
	if err != nil {
		return err
	}
	k := aggKey{r.Actor, r.Action, r.Subject, r.Result}

	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	now := l.clock.Now()
	if l.window > 0 {
		if s, ok := l.agg[k]; ok {
			if now.Before(s.end) {
				s.pending++
				if s.pending == 1 {
					// The committer only sets timers for windows with
					// something to flush; tell it there is one now.
					l.kickLocked()
				}
				l.mu.Unlock()
				return nil
			}
			// Expired but the committer has not flushed it yet: flush it
			// here so the count lands before the new entry.
			l.flushOneLocked(k, s)
		}
	}
	_, b, err := l.stageLocked(r, 1)
	if err == nil && l.window > 0 {
		if len(l.agg) >= l.maxAgg {
			l.flushAggLocked(now, false) // prune expired windows
		}
		if len(l.agg) < l.maxAgg {
			l.agg[k] = &aggState{end: now.Add(l.window)}
		}
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	<-b.done
	return b.err
}

// flushOneLocked writes a window's count (if any) and forgets the window. A
// failed stage means the log has failed; the count is lost with it and Close
// reports the failure.
func (l *Log) flushOneLocked(k aggKey, s *aggState) {
	if s.pending > 0 {
		r := Record{Actor: k.actor, Action: k.action, Subject: k.subject, Decision: DecisionDeny, Result: k.reason}
		_, _, _ = l.stageLocked(r, s.pending)
	}
	delete(l.agg, k)
}

// flushAggLocked flushes every window that has ended by now, or all of them.
// Expired windows are flushed oldest first so the log reads in time order.
func (l *Log) flushAggLocked(now time.Time, all bool) {
	var due []aggKey
	for k, s := range l.agg {
		if all || !now.Before(s.end) {
			due = append(due, k)
		}
	}
	slices.SortFunc(due, func(a, b aggKey) int {
		if c := l.agg[a].end.Compare(l.agg[b].end); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.actor, b.actor), strings.Compare(a.action, b.action),
			strings.Compare(a.subject, b.subject), strings.Compare(a.reason, b.reason))
	})
	for _, k := range due {
		l.flushOneLocked(k, l.agg[k])
	}
}

// nextAggDeadlineLocked returns when the committer must next wake to flush a
// window with a pending count. Windows with nothing pending need no wakeup;
// they are pruned lazily.
func (l *Log) nextAggDeadlineLocked() (time.Time, bool) {
	var next time.Time
	found := false
	for _, s := range l.agg {
		if s.pending > 0 && (!found || s.end.Before(next)) {
			next, found = s.end, true
		}
	}
	return next, found
}
