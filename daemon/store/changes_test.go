package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite/sqlitex"
)

// newChange builds a pending profile change of session id from its current
// profile to one with the given instructions.
func newChange(t testing.TB, s *Store, id wire.SessionID, instructions, reason string) Change {
	t.Helper()
	version, cur, err := s.CurrentProfile(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	p := cur
	p.Instructions = instructions
	cid, err := NewChangeID()
	if err != nil {
		t.Fatal(err)
	}
	base, proposed := cur.Canonical(), p.Canonical()
	return Change{
		ChangeSummary: ChangeSummary{
			ID: cid, Session: id, Kind: "instructions", Requester: "agent:" + id.String(),
			BaseVersion: version, Binding: ChangeBinding(cid, base, proposed),
			State: ChangePending, Outcome: "needs-human", Rule: "default",
		},
		Base: base, Proposed: proposed, Reason: reason, Reasons: []string{"no rule decided"},
	}
}

func TestChangeRoundTrip(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	ch := newChange(t, s, id, "be brief", "untrusted words")
	if err := s.InsertChange(ctx, ch); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetChange(ctx, ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Base, ch.Base) || !bytes.Equal(got.Proposed, ch.Proposed) || got.Reason != ch.Reason ||
		got.Binding != ch.Binding || got.State != ChangePending || got.Session != id || got.Reasons[0] != ch.Reasons[0] {
		t.Fatalf("round trip: %+v", got)
	}
	bad := newChange(t, s, id, "x", "")
	bad.Binding[0] ^= 1
	if err := s.InsertChange(ctx, bad); !errors.Is(err, ErrBindingMismatch) {
		t.Fatalf("insert with a wrong binding: %v", err)
	}
	dup := newChange(t, s, id, "be brief", "")
	dup.ID, dup.Binding = ch.ID, ch.Binding
	if err := s.InsertChange(ctx, dup); err == nil {
		t.Fatal("an id was reused")
	}
	if cs, ok, err := s.FindPendingChange(ctx, id, "instructions", 1, ch.Proposed); err != nil || !ok || cs.ID != ch.ID {
		t.Fatalf("FindPendingChange: %v %v %v", cs.ID, ok, err)
	}
	if n, err := s.CountPendingChanges(ctx, id, "agent:"); err != nil || n != 1 {
		t.Fatalf("CountPendingChanges = %d, %v", n, err)
	}
	if n, _ := s.CountPendingChanges(ctx, id, "channel:"); n != 0 {
		t.Fatalf("channel count %d", n)
	}
}

func TestChangeSealedToItsRow(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	a, b := newChange(t, s, id, "A", "ra"), newChange(t, s, id, "B", "rb")
	for _, ch := range []Change{a, b} {
		if err := s.InsertChange(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	c := rawConn(t, path)
	// B's proposed moved into A's row, A's base into its proposed column.
	if err := sqlitex.Execute(c, "UPDATE change_requests SET proposed = (SELECT proposed FROM change_requests WHERE id = ?) WHERE id = ?",
		&sqlitex.ExecOptions{Args: []any{b.ID.String(), a.ID.String()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetChange(ctx, a.ID); !errors.Is(err, ErrSealed) {
		t.Fatalf("moved value: %v, want ErrSealed", err)
	}
	if err := sqlitex.Execute(c, "UPDATE change_requests SET proposed = base WHERE id = ?",
		&sqlitex.ExecOptions{Args: []any{b.ID.String()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetChange(ctx, b.ID); !errors.Is(err, ErrSealed) {
		t.Fatalf("value moved between columns: %v, want ErrSealed", err)
	}
	if _, _, err := s.ApplyChange(ctx, a.ID, a.Binding, "operator:local:root"); !errors.Is(err, ErrSealed) {
		t.Fatalf("applying a tampered request: %v", err)
	}
	if v, _, _ := s.CurrentProfile(ctx, id); v != 1 {
		t.Fatal("tampered request applied")
	}
}

func TestApplyProfileChange(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	a, b := newChange(t, s, id, "A", ""), newChange(t, s, id, "B", "")
	for _, ch := range []Change{a, b} {
		if err := s.InsertChange(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.ApplyChange(ctx, a.ID, b.Binding, "operator:local:root"); !errors.Is(err, ErrBindingMismatch) {
		t.Fatalf("wrong hash: %v", err)
	}
	if v, _, _ := s.CurrentProfile(ctx, id); v != 1 {
		t.Fatal("applied with a wrong hash")
	}
	v, applied, err := s.ApplyChange(ctx, a.ID, a.Binding, "operator:local:root")
	if err != nil || v != 2 || !bytes.Equal(applied, a.Proposed) {
		t.Fatalf("apply: %d %v", v, err)
	}
	if _, cur, _ := s.CurrentProfile(ctx, id); !bytes.Equal(cur.Canonical(), a.Proposed) {
		t.Fatal("stored profile is not the proposed bytes")
	}
	cs, _ := s.GetChangeSummary(ctx, a.ID)
	if cs.State != ChangeApplied || cs.AppliedVersion != 2 || cs.DecidedBy != "operator:local:root" {
		t.Fatalf("after apply: %+v", cs)
	}
	if _, _, err := s.ApplyChange(ctx, a.ID, a.Binding, "operator:local:root"); !errors.Is(err, ErrNotPending) {
		t.Fatalf("applying twice: %v", err)
	}
	if _, _, err := s.ApplyChange(ctx, b.ID, b.Binding, "operator:local:root"); !errors.Is(err, ErrStale) {
		t.Fatalf("stale: %v", err)
	}
	if err := s.CloseChange(ctx, b.ID, ChangeStale, "gateway", "", "stale"); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseChange(ctx, b.ID, ChangeDenied, "gateway", "", ""); !errors.Is(err, ErrNotPending) {
		t.Fatalf("closing twice: %v", err)
	}
}

func TestRulesVersions(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	if v, text, err := s.CurrentRules(ctx); v != 0 || text != nil || err != nil {
		t.Fatalf("no rules: %d %q %v", v, text, err)
	}
	mk := func(base uint64, baseText, text string) Change {
		cid, _ := NewChangeID()
		return Change{
			ChangeSummary: ChangeSummary{ID: cid, Kind: KindRules, Requester: "operator:local:root", BaseVersion: base,
				Binding: ChangeBinding(cid, []byte(baseText), []byte(text)), State: ChangePending, Outcome: "needs-human", Rule: "human-only-kind"},
			Base: []byte(baseText), Proposed: []byte(text),
		}
	}
	a, b := mk(0, "empty\n", "one\n"), mk(0, "empty\n", "other\n")
	for _, ch := range []Change{a, b} {
		if err := s.InsertChange(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if v, _, err := s.ApplyChange(ctx, a.ID, a.Binding, "operator:local:root"); err != nil || v != 1 {
		t.Fatal(v, err)
	}
	if v, text, _ := s.CurrentRules(ctx); v != 1 || string(text) != "one\n" {
		t.Fatalf("rules now %d %q", v, text)
	}
	if _, _, err := s.ApplyChange(ctx, b.ID, b.Binding, "operator:local:root"); !errors.Is(err, ErrStale) {
		t.Fatalf("stale rules change: %v", err)
	}
	if l, _ := s.ListChanges(ctx, ChangeFilter{Rules: true}); len(l) != 2 {
		t.Fatalf("%d rules requests", len(l))
	}
}

func TestRefusedChangesPruned(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	other, _ := mustCreate(t, s, "console:b")
	keep := newChange(t, s, other, "other's", "")
	keep.State = ChangeRefused
	if err := s.InsertChange(ctx, keep); err != nil {
		t.Fatal(err)
	}
	pending := newChange(t, s, id, "pending", "")
	if err := s.InsertChange(ctx, pending); err != nil {
		t.Fatal(err)
	}
	for i := range MaxRefusedChangesKept + 10 {
		ch := newChange(t, s, id, fmt.Sprint("refused ", i), "")
		ch.State = ChangeRefused
		if err := s.InsertChange(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := s.ListChanges(ctx, ChangeFilter{Session: &id, States: []ChangeState{ChangeRefused}}); len(l) != MaxRefusedChangesKept {
		t.Fatalf("%d refused kept, want %d", len(l), MaxRefusedChangesKept)
	}
	if _, err := s.GetChangeSummary(ctx, pending.ID); err != nil {
		t.Fatal("pruning took a pending request")
	}
	if _, err := s.GetChangeSummary(ctx, keep.ID); err != nil {
		t.Fatal("pruning took another session's request")
	}
}

// TestEraseTakesChangeRequests: crypto-erasing a session deletes its change
// requests (their texts and the agent's words) in the same transaction.
func TestEraseTakesChangeRequests(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	other, _ := mustCreate(t, s, "console:b")
	ch := newChange(t, s, id, "secret plans", "reason")
	kept := newChange(t, s, other, "other plans", "reason")
	for _, c := range []Change{ch, kept} {
		if err := s.InsertChange(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EraseSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetChangeSummary(ctx, ch.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("request of an erased session: %v", err)
	}
	if _, err := s.GetChange(ctx, kept.ID); err != nil {
		t.Fatalf("another session's request: %v", err)
	}
	c := rawConn(t, path)
	if n := rawInt(t, c, "SELECT count(*) FROM change_requests WHERE session_id = '"+id.String()+"'"); n != 0 {
		t.Fatalf("%d rows left", n)
	}
}

// No exported method writes a profile version but ApplyChange (for an
// approved request) and CreateSession (the first version): a new writer
// added to the store's API fails here until it is justified.
func TestNoUnapprovedProfileWriter(t *testing.T) {
	// Every profile version is written by insertProfile (the one statement
	// that inserts into profiles). Walk the package's call graph by name
	// and list the exported Store methods that can reach it: only the
	// approved-change path and session creation (version 1) may.
	want := []string{"ApplyChange", "CreateSession"}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]map[string]bool{} // function or method name -> names it calls
	exported := map[string]bool{}         // exported methods of *Store
	inserts := 0
	for _, f := range pkgs["store"].Files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			name := fn.Name.Name
			if fn.Recv != nil && ast.IsExported(name) {
				if star, ok := fn.Recv.List[0].Type.(*ast.StarExpr); ok {
					if id, ok := star.X.(*ast.Ident); ok && id.Name == "Store" {
						exported[name] = true
					}
				}
			}
			if calls[name] == nil {
				calls[name] = map[string]bool{}
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					switch f := n.Fun.(type) {
					case *ast.Ident:
						calls[name][f.Name] = true
					case *ast.SelectorExpr:
						calls[name][f.Sel.Name] = true
					}
				case *ast.BasicLit:
					if n.Kind == token.STRING && strings.Contains(strings.ToUpper(n.Value), "INSERT INTO PROFILES") {
						inserts++
						if name != "insertProfile" {
							t.Errorf("%s writes the profiles table itself: go through insertProfile", name)
						}
					}
				}
				return true
			})
		}
	}
	if inserts != 1 {
		t.Fatalf("found %d statements inserting into profiles, want exactly 1 (in insertProfile)", inserts)
	}
	reaches := map[string]bool{"insertProfile": true}
	for changed := true; changed; {
		changed = false
		for fn, callees := range calls {
			if reaches[fn] {
				continue
			}
			for c := range callees {
				if reaches[c] {
					reaches[fn], changed = true, true
					break
				}
			}
		}
	}
	var got []string
	for m := range exported {
		if reaches[m] {
			got = append(got, m)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("exported store methods that can write a profile version: %v, want exactly %v (a new writer must go through the gateway's ApplyChange)", got, want)
	}
}

// The profile history names, for each version, the applied change that
// made it; the first version has none.
func TestProfileVersionsNameTheirChange(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:hist")
	a := newChange(t, s, id, "A", "")
	if err := s.InsertChange(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ApplyChange(ctx, a.ID, a.Binding, "operator:local:root"); err != nil {
		t.Fatal(err)
	}
	vs, err := s.ProfileVersions(ctx, id)
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions %+v %v", vs, err)
	}
	if vs[0].Version != 1 || vs[0].HasChange || vs[0].Created.IsZero() {
		t.Fatalf("first version %+v", vs[0])
	}
	if vs[1].Version != 2 || !vs[1].HasChange || vs[1].Change != a.ID || vs[1].Created.Before(vs[0].Created) {
		t.Fatalf("second version %+v, want change %s", vs[1], a.ID)
	}
	if err := s.EraseSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ProfileVersions(ctx, id); err == nil {
		t.Fatal("an erased session still lists its profile versions")
	}
}
