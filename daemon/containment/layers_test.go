package containment

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

// The tests here widen layer (a) of the read-only inbox from "agentd links nothing from
// daemon/" (TestAgentLinksNoInboxWriter) to "the agent's own code has no method that writes
// the inbox". Layer (b), the read-only connection, is agentd/inbox's TestOpenIsReadOnly;
// layer (c), the read-only mount, is TestContainment.

// TestInboxReaderMethodSet: the agent reaches its inbox only through *inbox.Reader, and that
// type can do exactly two things. The list is closed on purpose: a new method on the agent's
// only handle to its inbox is a change to a security boundary, so it fails here until a
// reviewer has read it, confirmed it cannot write (no write SQL, no read-write open, no
// access to the raw connection), and added it to the list. The same holds for the package's
// exported names. Unexported methods and functions are not in any method set;
// TestAgentSourceHasNoInboxWriter covers what they could do.
func TestInboxReaderMethodSet(t *testing.T) {
	want := []string{"Close", "Read"}
	typ := reflect.TypeFor[*inbox.Reader]()
	var got []string
	for i := range typ.NumMethod() {
		got = append(got, typ.Method(i).Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("*inbox.Reader has methods %v, want exactly %v: review the new method (it must not be able to write the inbox), then add it here", got, want)
	}

	// The package's exported names: a package-level Append(path, …) would not be a method.
	wantNames := []string{"Open", "Reader"}
	fset := token.NewFileSet()
	var names []string
	for _, f := range parseDir(t, fset, filepath.Join(repoRoot(), "agentd", "inbox")) {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					names = append(names, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							names = append(names, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								names = append(names, n.Name)
							}
						}
					}
				}
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, wantNames) {
		t.Errorf("package agentd/inbox exports %v, want exactly %v: review the new name (it must not be able to write the inbox), then add it here", names, wantNames)
	}
}

// writeSQL matches SQL that writes, anywhere in a string literal. VACUUM (INTO a file) and
// ATTACH (a second database) are here too: neither has a place in the agent's code.
// It matches statement shapes, not bare words, so that prose such as "a note
// delete carries no text" is not taken for SQL.
var writeSQL = regexp.MustCompile(`(?i)\b(INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|REPLACE\s+INTO|CREATE\s+(TEMP\w*\s+)?(TABLE|INDEX|TRIGGER|VIEW)|DROP\s+(TABLE|INDEX|TRIGGER|VIEW)|ALTER\s+TABLE|VACUUM\b|ATTACH\s+(DATABASE\b|['"?:@$]))`)

// writeFlags are the SQLite open flags that make a connection able to write (zombiezen's
// names and modernc's, in case someone reaches under the wrapper).
var writeFlags = []string{"OpenReadWrite", "OpenCreate", "SQLITE_OPEN_READWRITE", "SQLITE_OPEN_CREATE"}

// writerPkg is the one package of the agent that may write a database: its outbox.
const writerPkg = "agentd/outbox"

// TestAgentSourceHasNoInboxWriter scans the source of every package of ours that agentd
// links (`go list -deps ./cmd/agentd`), every non-test .go file whatever its build tags:
// SQL that writes may appear in a string literal only in agentd/outbox, and only
// agentd/outbox may name a read-write or create open flag. So no code the agent runs can
// open its inbox for writing or hold a statement that would write it, whichever method or
// function it hides in.
//
// It is a tripwire for honest mistakes and a pointer for reviewers, not a proof against
// an adversary writing agentd (SQL assembled from fragments, or a flag as a bare number,
// would pass): that adversary is met by layer (b), the read-only connection, and layer (c),
// the read-only mount.
func TestAgentSourceHasNoInboxWriter(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}\t{{.Dir}}", "./cmd/agentd")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/agentd: %v", err)
	}
	var pkgs, files int
	var sawOutboxSQL, sawOutboxFlag bool
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, dir, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("go list printed %q", line)
		}
		pkg, ours := strings.CutPrefix(path, module)
		if !ours {
			continue
		}
		pkgs++
		fset := token.NewFileSet()
		for name, f := range parseDir(t, fset, dir) {
			files++
			sqlite := sqliteImportName(f)
			if sqlite == "." && pkg != writerPkg {
				t.Errorf("%s/%s dot-imports the SQLite package: the open flags could not be checked", pkg, name)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					if n.Kind != token.STRING {
						return true
					}
					s, err := strconv.Unquote(n.Value)
					if err != nil {
						t.Fatalf("%s: unquoting %s: %v", fset.Position(n.Pos()), n.Value, err)
					}
					m := writeSQL.FindString(s)
					if m == "" {
						return true
					}
					switch {
					case pkg == writerPkg:
						sawOutboxSQL = true
					case pkg == "agentd/wire" && s == wire.RowsTable:
						// The schema text, compared with sqlite_schema by queuedb.CheckSchema;
						// only the daemon's queue.Create executes it.
					default:
						t.Errorf("%s: SQL that writes (%q) in %s, which agentd links: only %s may write a database\n\t%q", fset.Position(n.Pos()), m, pkg, writerPkg, s)
					}
				case *ast.SelectorExpr:
					if !slices.Contains(writeFlags, n.Sel.Name) {
						return true
					}
					if pkg == writerPkg {
						sawOutboxFlag = true
						return true
					}
					t.Errorf("%s: %s names the SQLite open flag %s: only %s may open a database for writing", fset.Position(n.Pos()), pkg, n.Sel.Name, writerPkg)
				}
				return true
			})
		}
	}
	if pkgs < 5 || files < 5 || !sawOutboxSQL || !sawOutboxFlag {
		t.Fatalf("scanned %d packages, %d files; saw the outbox's INSERT: %v, its read-write open: %v: the scan would prove nothing", pkgs, files, sawOutboxSQL, sawOutboxFlag)
	}
}

// parseDir parses every non-test .go file in dir (not recursively), whatever its build
// constraints, keyed by file name.
func parseDir(t *testing.T, fset *token.FileSet, dir string) map[string]*ast.File {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	return files
}

// sqliteImportName is the name under which f imports zombiezen's sqlite ("" if it does not).
func sqliteImportName(f *ast.File) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "zombiezen.com/go/sqlite" {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return "sqlite"
		}
	}
	return ""
}
