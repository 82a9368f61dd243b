package supervisor

import (
	"context"
	"fmt"
	"net/http"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// modelProxyLocked returns the session's model proxy (nil when no upstream is
// configured). Callers hold s.mu.
func (s *Supervisor) modelProxyLocked(id wire.SessionID) (http.Handler, error) {
	if s.cfg.ModelUpstream == "" {
		return nil, nil
	}
	b := s.budgets[id]
	if b == nil {
		b = &proxy.Budget{Ledger: budgetLedger{store: s.cfg.Store, id: id}}
		s.budgets[id] = b
	}
	p, err := proxy.New(proxy.Config{
		Upstream: s.cfg.ModelUpstream,
		Session:  id.String(),
		Profile: func(ctx context.Context) (profile.Profile, error) {
			_, p, err := s.cfg.Store.CurrentProfile(ctx, id)
			return p, err
		},
		Budget: b,
		Audit:  s.cfg.Audit,
		Client: s.modelClient,
		Gate:   s.modelGate,
		Limits: s.cfg.ModelLimits,
		Log:    s.cfg.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	return p, nil
}

// budgetLedger keeps one session's model tokens per day in the store.
type budgetLedger struct {
	store *store.Store
	id    wire.SessionID
}

func (l budgetLedger) ModelTokens(ctx context.Context, day string) (int64, error) {
	return l.store.ModelTokens(ctx, l.id, day)
}

func (l budgetLedger) SetModelTokens(ctx context.Context, day string, tokens int64) error {
	return l.store.SetModelTokens(ctx, l.id, day, tokens)
}
